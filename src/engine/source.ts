// Source side of a sync: read the source chunk by chunk, hash its blocks, compare with the
// target's hashes for the same chunk, and emit one record per run of differing blocks.
//
//   START.sample first (an incremental run): compare its pieces, send no record; any block
//     differing → SampleDiffers thrown before the first record (the target is not written)
//   for each chunk [pos, pos+chunkSize) of [0, compareSize) (or of START.ranges: ranges.ts pieces):
//     read it (one positional read, O_DIRECT where it can: io/direct.ts; the next pieces are
//     read ahead into the other buffers meanwhile: io/read-ahead.ts), hash each block
//     take the target's HASHES frame for this chunk (must name the same first block)
//     runs of differing blocks (all-zero and data runs kept apart) → makeRecord → sink
//       (lz4 tried while data compresses: compress-gate.ts)
//   send DONE with the counts and the fingerprints of the target's content before and after
//   (engine/fingerprint.ts)
//
// Memory: readBuffers(chunkSize) chunk buffers (5 of 1 MiB; 2 when chunks are 4 MiB or more),
// one chunk of hashes, and the record being built (≤ chunkSize, lz4 output included): a few MiB
// whatever the device size. The loop yields to the event loop each
// chunk so lz4-napi's buffers are freed and the channel can drain.
// Interrupted: nothing is left behind on this side.
import { setImmediate as turn } from 'node:timers/promises';
import { BlkError, ExitCode } from '../errors.js';
import { gcAfter } from '../gc.js';
import { blockHasher, zeroBlockHash } from '../hash.js';
import { Encoding, makeRecord, isAllZero } from '../patch/format.js';
import { CompressGate } from './compress-gate.js';
import { Msg } from '../proto/wire.js';
import type { Conn, Done, Start } from '../proto/messages.js';
import type { Device } from '../io/device.js';
import { DirectIo } from '../io/direct.js';
import { ReadAhead, readBuffers } from '../io/read-ahead.js';
import { FingerprintBuilder } from './fingerprint.js';
import { pieces, rangeBlocks } from '../ranges.js';

/** Where the source's records go: the target peer, a patch file, or nowhere (dry-run). */
export interface RecordSink {
  /** base: the target's block hashes under the record (valid during the call only). */
  record(offset: number, header: Buffer, payload: Buffer, base: Buffer): Promise<void>;
  /** After each chunk's records: the target's block hashes of [offset, offset+length) (a patch's region). */
  region?(offset: number, length: number, baseHashes: Buffer): Promise<void>;
}

export interface SourceOptions {
  signal?: AbortSignal;
  maxDiffs: number;
  onChunk?: (bytesDone: number, bytesDiffering: number) => void;
}

/**
 * START.sample had differing blocks: the target was changed outside the ranges. Thrown by the
 * source before any record of the session was sent; its caller compares in full instead.
 */
export class SampleDiffers extends BlkError {
  constructor(readonly differing: number, readonly sampled: number, readonly bytesRead: number) {
    super(ExitCode.DIFFERENT, `${differing} of ${sampled} sampled blocks outside the changed ranges differ: the target was changed behind blkdelta's back`);
    this.name = 'SampleDiffers';
  }
}

export async function runSource(dev: Device, conn: Conn, start: Start, sink: RecordSink | null, opts: SourceOptions): Promise<Done> {
  const { blockSize: bs, chunkSize } = start;
  const bh = await blockHasher(chunkSize, bs, BigInt(start.seed), readBuffers(chunkSize));
  const local = Buffer.allocUnsafe((chunkSize / bs) * 8);
  const done: Done = { blocksCompared: 0, blocksDiffering: 0, blocksZero: 0, records: 0, dataBytes: 0, bytesRead: 0, firstDiffs: [] };
  // the content the target holds after the run (the source's hashes), and before it (the target's)
  const after = await FingerprintBuilder.create(BigInt(start.seed));
  const before = await FingerprintBuilder.create(BigInt(start.seed));
  const io = DirectIo.open(dev);
  const gate = new CompressGate(start.compress);
  // a differing block is all zero only if its hash is a zero block's: the bytes of the others
  // (every block of a full copy) are never scanned (isAllZero per block was a quarter of its CPU)
  const zh = await zeroBlockHash(bs, BigInt(start.seed));
  const zeroLo = Number(zh & 0xffffffffn), zeroHi = Number(zh >> 32n);
  // a record's checksum, hashed where its data lies (the chunk, in WASM memory): no copy into xxhash-wasm's
  const inChunk = bh.chunks.map((c, which) => ({
    h64: (data: Buffer, seed: bigint) => bh.h64At(which, data.byteOffset - c.byteOffset, data.length, seed),
  }));

  // One chunk, read into chunks[which]: hash, compare with the target's hashes, send the differing runs.
  let sampleDiffering = 0;
  const chunk = async (pos: number, len: number, which: number, inSample: boolean) => {
    const buf = bh.chunks[which]!;
    done.bytesRead += len;
    const n = bh.hash(len, local, 0, which);
    const remote = await takeHashes(conn, pos / bs, n);
    done.blocksCompared += n;
    after.update(local.subarray(0, n * 8));
    before.update(remote);
    if (!local.subarray(0, n * 8).equals(remote)) {
      const isZero = (i: number) => {
        const end = Math.min((i + 1) * bs, len);
        if (end - i * bs === bs && (local.readUInt32LE(i * 8) !== zeroLo || local.readUInt32LE(i * 8 + 4) !== zeroHi)) return false;
        return isAllZero(buf.subarray(i * bs, end));
      };
      for (const [a, b, zero] of differingRuns(local, remote, n, isZero)) {
        const offset = pos + a * bs;
        if (inSample) {
          sampleDiffering += b - a;
          continue;
        }
        const plain = buf.subarray(a * bs, Math.min(b * bs, len));
        done.blocksDiffering += b - a;
        if (zero) done.blocksZero += b - a;
        for (let i = a; i < b && done.firstDiffs.length < opts.maxDiffs; i++) done.firstDiffs.push(pos + i * bs);
        if (!sink) continue;
        const compress = gate.tryOn(plain.length);
        const rec = makeRecord(offset, plain, compress, inChunk[which]!);
        if (compress && rec.encoding !== Encoding.ZERO) {
          gate.result(plain.length, rec.encoding === Encoding.LZ4);
          gcAfter(plain.length); // lz4-napi's output, kept or not, is garbage soon
        }
        await sink.record(offset, rec.header, rec.payload, remote.subarray(a * 8, b * 8));
        done.records++;
        done.dataBytes += plain.length;
      }
    }
    await sink?.region?.(pos, len, remote);
  };
  // read ahead: the next pieces are read into the other buffers while one is hashed and compared
  const ahead = new ReadAhead(io, bh.chunks, pieces(start)); // START.ranges: only those blocks (START.sample's first)
  const sampleBlocks = rangeBlocks(start.sample ?? []);
  let bytesDone = 0;
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      const got = await ahead.next();
      if (!got) break;
      const [pos, len, inSample] = got.piece;
      if (!inSample && sampleDiffering) throw new SampleDiffers(sampleDiffering, sampleBlocks, done.bytesRead);
      await chunk(pos, len, got.which, inSample);
      opts.onChunk?.(bytesDone += len, done.blocksDiffering * bs);
      await turn();
    }
    if (sampleDiffering) throw new SampleDiffers(sampleDiffering, sampleBlocks, done.bytesRead);
  } finally {
    await ahead.close(); // no read outlives the fd
    io.close();
  }
  const sampled = start.sample ? { sampleDiffering } : {};
  if (start.ranges) return { ...done, ...sampled, io: io.mode }; // fingerprints cover the whole device
  return { ...done, fingerprint: after.hex(), baseFingerprint: before.hex(), io: io.mode };
}

async function takeHashes(conn: Conn, firstBlock: number, n: number): Promise<Buffer> {
  const f = await conn.expect(Msg.HASHES);
  if (f.payload.length !== 8 + n * 8 || Number(f.payload.readBigUInt64LE(0)) !== firstBlock) {
    throw new BlkError(ExitCode.REMOTE, `protocol error: HASHES frame for block ${f.payload.length >= 8 ? f.payload.readBigUInt64LE(0) : '?'} with ${(f.payload.length - 8) / 8} hashes, expected block ${firstBlock} with ${n}`);
  }
  return f.payload.subarray(8);
}

/**
 * Runs [a, b) of block indexes whose hashes differ, split where the all-zero property changes,
 * so that zero runs become zero records.
 */
export function* differingRuns(local: Buffer, remote: Buffer, n: number, isZero: (i: number) => boolean): Generator<[number, number, boolean]> {
  let a = -1;
  let zero = false;
  for (let i = 0; i <= n; i++) {
    const o = i * 8; // two 32-bit reads: a Buffer.compare call per block cost more than the rest of the loop
    const differs = i < n && (local.readUInt32LE(o) !== remote.readUInt32LE(o) || local.readUInt32LE(o + 4) !== remote.readUInt32LE(o + 4));
    const z = differs && isZero(i);
    if (a >= 0 && (!differs || z !== zero)) {
      yield [a, i, zero];
      a = -1;
    }
    if (differs && a < 0) {
      a = i;
      zero = z;
    }
  }
}
