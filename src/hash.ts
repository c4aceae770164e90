// xxh64 through xxhash-wasm, loaded once per process. Block hashes use a random per-run seed (so
// nobody can craft colliding blocks in advance); record and stream checksums use fixed seeds.
// xxhash-wasm copies each input into WASM memory, which grows to the largest input ever hashed:
// callers hash at most one chunk (a few MiB) at a time, which bounds that memory.
import xxhash from 'xxhash-wasm';
import { randomBytes } from 'node:crypto';

export interface StreamHasher {
  update(data: Uint8Array): StreamHasher;
  digest(): bigint;
}

export interface Hasher {
  h64(data: Uint8Array, seed: bigint): bigint;
  create64(seed: bigint): StreamHasher;
}

let loaded: Promise<Hasher> | undefined;

export function loadHasher(): Promise<Hasher> {
  loaded ??= xxhash().then((x) => ({
    h64: (data, seed) => x.h64Raw(data, seed),
    create64: (seed) => x.create64(seed) as StreamHasher,
  }));
  return loaded;
}

/** A fresh random 64-bit seed for one run's block hashes. */
export function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE(0);
}

/**
 * Hashes `count` consecutive blocks of `buf` into `out` (8 bytes each, little-endian), starting
 * at out[outAt]. The last block may be short (device size not a multiple of the block size).
 */
export function hashBlocks(h: Hasher, buf: Buffer, len: number, blockSize: number, seed: bigint, out: Buffer, outAt = 0): number {
  let n = 0;
  for (let off = 0; off < len; off += blockSize, n++) {
    const end = Math.min(off + blockSize, len);
    out.writeBigUInt64LE(h.h64(buf.subarray(off, end), seed), outAt + n * 8);
  }
  return n;
}
