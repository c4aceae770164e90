// Fingerprints of a device's content, made from the block hashes a sync computes anyway.
//
//   digest = XXH64 streamed with the run's block seed over the 8-byte little-endian block hashes
//            of [0, size), in order (block size bs; the last block may be short)
//
// A sync gets two for free: the target's state before the run (from the HASHES it receives) and
// the content it leaves (from the source's own hashes). A fingerprint is only comparable with one
// made with the same seed, block size and size, so it carries all three; fingerprintDevice()
// re-reads a device to recompute one (history verify, patch base checks).
// Memory: one chunk buffer and the hasher's state. Interrupted: nothing is left behind.
import { setImmediate as turn } from 'node:timers/promises';
import { blockHasher, loadHasher, type StreamHasher } from '../hash.js';
import { readFull, type Device } from '../io/device.js';

export const FINGERPRINT_ALGO = 'xxh64-blocks';

export interface Fingerprint {
  algo: typeof FINGERPRINT_ALGO;
  /** The block-hash seed, a u64 as a decimal string. */
  seed: string;
  blockSize: number;
  /** Bytes covered: [0, size). */
  size: number;
  /** 16 lower-case hex digits. */
  digest: string;
}

/** Accumulates block hashes, in device order, into a digest. */
export class FingerprintBuilder {
  private constructor(private readonly s: StreamHasher) {}

  static async create(seed: bigint): Promise<FingerprintBuilder> {
    return new FingerprintBuilder((await loadHasher()).create64(seed));
  }

  /** hashes: n block hashes of 8 bytes each, the blocks right after the previous call's. */
  update(hashes: Uint8Array): void {
    this.s.update(hashes);
  }

  hex(): string {
    return hexDigest(this.s.digest());
  }
}

export function hexDigest(d: bigint): string {
  return d.toString(16).padStart(16, '0');
}

export function makeFingerprint(seed: string, blockSize: number, size: number, digest: string): Fingerprint {
  return { algo: FINGERPRINT_ALGO, seed, blockSize, size, digest };
}

/** Re-reads [0, fp.size) of dev with fp's seed and block size; returns the fingerprint found. */
export async function fingerprintDevice(dev: Device, fp: Pick<Fingerprint, 'seed' | 'blockSize' | 'size'>, signal?: AbortSignal,
  onChunk?: (bytesDone: number) => void): Promise<Fingerprint> {
  const chunkSize = Math.max(fp.blockSize, 1024 * 1024);
  const bh = await blockHasher(chunkSize, fp.blockSize, BigInt(fp.seed));
  const out = Buffer.allocUnsafe((chunkSize / fp.blockSize) * 8);
  const b = await FingerprintBuilder.create(BigInt(fp.seed));
  for (let pos = 0; pos < fp.size; pos += chunkSize) {
    signal?.throwIfAborted();
    const len = Math.min(chunkSize, fp.size - pos);
    readFull(dev, bh.chunk, len, pos, true);
    const n = bh.hash(len, out);
    b.update(out.subarray(0, n * 8));
    onChunk?.(pos + len);
    if ((pos / chunkSize) % 64 === 63) await turn();
  }
  return makeFingerprint(fp.seed, fp.blockSize, fp.size, b.hex());
}
