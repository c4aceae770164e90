// Target side of a sync. Two loops run side by side:
//   hashes:  for each chunk of [0, compareSize) (or of START.ranges): read (past the end of a file:
//            zeros; O_DIRECT where it can: io/direct.ts; the next pieces read ahead meanwhile:
//            io/read-ahead.ts), hash;
//            the HASHES frames of BATCH_BYTES of chunks go out in one write (waits when the
//            channel is full)
//   records: take RECORD frames until DONE and hand each to the sink (the device or a patch)
// The source only sends records for chunks whose hashes it has received, so a record never
// overwrites a block this side has yet to hash. Then the sink finishes (fsync, re-read check,
// holes) and a RESULT goes back. The loops stop together: when one fails, the other is told
// (an AbortSignal checked every chunk and raced against its waits) and awaited before the error
// is thrown, so no read of the device goes on after a failure.
//
// Memory: readBuffers(chunkSize) chunk buffers (5 of 1 MiB; 2 when chunks are 4 MiB or more),
// one HASHES frame, the hashes of a chunk of zeros (2 KiB for 1 MiB of 4 KiB blocks), the writer's batch buffer (64 KiB), and one record frame at a time.
// Interrupted: the target holds a mix of old and new blocks (it is "dirty" until a later run completes).
import { setImmediate as turn } from 'node:timers/promises';
import { BlkError, ExitCode } from '../errors.js';
import { blockHasher, zeroBlockHash } from '../hash.js';
import { Msg, msgName, parseJson, type Placer } from '../proto/wire.js';
import { RECORD_HEADER_LEN, isAllZero } from '../patch/format.js';
import { checkFields, type Conn, type Done, type Result, type Start } from '../proto/messages.js';
import type { Device } from '../io/device.js';
import { DirectIo } from '../io/direct.js';
import { ReadAhead, readBuffers } from '../io/read-ahead.js';
import { pieces } from '../ranges.js';

/** Device bytes whose HASHES frames are sent in one write (at most 16 frames of 1 MiB chunks). */
const BATCH_BYTES = 16 * 1024 * 1024;

/** Takes the records that arrive at the target side. */
export interface TargetSink {
  /** A RECORD frame at stream offset `at`; placed: only its header, its data went where place() said. */
  record(frame: Buffer, at: number, placed?: boolean): Promise<void> | void;
  /** Where a record's data may be read to straight from the wire (FrameReader's Placer), given its header. */
  place?(head: Buffer, length: number, at: number): Promise<Buffer | undefined>;
  /** This side's block hashes of [offset, offset+length), as they are sent (valid during the call only). */
  hashes?(offset: number, length: number, hashes: Buffer): void;
  /** After DONE: make it durable; returns what was written. */
  finish(done?: Done): Promise<Omit<Result, 'bytesRead'>>;
  /** Releases what the sink holds (temp files); runTarget calls it on every exit path. */
  dispose?(): void;
  /** How it writes: "O_DIRECT" or "page cache (why)" (io/direct.ts). */
  readonly io?: string;
}

export async function runTarget(dev: Device, conn: Conn, start: Start, sink: TargetSink | null, signal?: AbortSignal, onChunk?: (bytesDone: number, bytesDiffering: number) => void): Promise<{ done: Done; result: Result }> {
  let bytesRead = 0;
  const io = DirectIo.open(dev);
  let ahead: ReadAhead<[number, number, boolean]> | undefined; // its reads in flight: awaited before io closes
  const hashes = async (stop: AbortSignal) => {
    const { blockSize: bs, chunkSize } = start;
    const bh = await blockHasher(chunkSize, bs, BigInt(start.seed), readBuffers(chunkSize));
    // HASHES frames are queued in the writer's batch and go out together every BATCH_BYTES of the device
    const perBatch = Math.max(1, Math.floor(BATCH_BYTES / chunkSize));
    const frame = Buffer.allocUnsafe(8 + (chunkSize / bs) * 8); // copied into the batch by sendBatched
    const zeros = await zeroHashes(chunkSize, bs, BigInt(start.seed));
    // read ahead: the next pieces are read into the other buffers while one is hashed and sent
    // (a piece's read completes before its hashes go out, so no record can have overwritten it)
    ahead = new ReadAhead(io, bh.chunks, pieces(start), true); // START.ranges: only those blocks (START.sample's first)
    let k = 0;
    let bytesDone = 0;
    for (;;) {
      signal?.throwIfAborted();
      stop.throwIfAborted();
      const got = await ahead.next();
      if (!got) break;
      const [pos, len] = got.piece;
      k++;
      bytesDone += len;
      bytesRead += Math.max(0, Math.min(len, dev.size - pos));
      frame.writeBigUInt64LE(BigInt(pos / bs), 0);
      // an all-zero chunk (a sparse or new target) is checked at memcmp speed, 3x faster than hashing it
      const zero = len % bs === 0 && isAllZero(bh.chunks[got.which]!.subarray(0, len));
      const n = zero ? zeros.copy(frame, 8, 0, (len / bs) * 8) / 8 : bh.hash(len, frame, 8, got.which);
      sink?.hashes?.(pos, len, frame.subarray(8, 8 + n * 8));
      await untilStopped(conn.writer.sendBatched(Msg.HASHES, frame.subarray(0, 8 + n * 8)), stop);
      if (k % perBatch === 0) await flushed(bytesDone, stop);
    }
    if (k % perBatch !== 0) await flushed(bytesDone, stop);
  };
  const flushed = async (bytesDone: number, stop: AbortSignal) => {
    await untilStopped(conn.writer.flush(), stop);
    onChunk?.(bytesDone, 0);
    await turn();
  };
  let at = 0;
  const placer: Placer | undefined = sink?.place && {
    headLen: RECORD_HEADER_LEN,
    place: (type, length, head) => (type === Msg.RECORD ? sink.place!(head, length, at) : undefined),
  };
  const records = async (stop: AbortSignal): Promise<Done> => {
    for (;;) {
      at = conn.reader.bytes;
      const f = await untilStopped(conn.reader.next(placer), stop);
      if (!f) throw await conn.closedAfterExit('before the end of the sync: the target is incomplete');
      if (f.type === Msg.DONE) return checkDone(parseJson<Done>(f));
      if (f.type === Msg.ERROR) throw conn.peerError(f);
      if (f.type !== Msg.RECORD || !sink) throw new BlkError(ExitCode.REMOTE, `protocol error: unexpected ${msgName(f.type)} during the sync`);
      await sink.record(f.payload, at, f.placed);
    }
  };
  try {
    const [, done] = await together(hashes, records);
    const w = sink ? await sink.finish(done) : { blocksWritten: 0, bytesWritten: 0, verified: false };
    const result: Result = { ...w, bytesRead, io: `reads ${io.mode}${sink?.io ? `, writes ${sink.io}` : ''}` };
    await conn.writer.sendJson(Msg.RESULT, result);
    return { done, result };
  } finally {
    sink?.dispose?.(); // first, synchronously: the process may be on its way out
    await ahead?.close(); // no read outlives the fd
    io.close();
  }
}

/** The block hashes of a chunk of zeros: what a BlockHasher gives each all-zero block, chunkSize / bs times. */
async function zeroHashes(chunkSize: number, bs: number, seed: bigint): Promise<Buffer> {
  const one = Buffer.allocUnsafe(8);
  one.writeBigUInt64LE(await zeroBlockHash(bs, seed));
  const all = Buffer.allocUnsafe((chunkSize / bs) * 8);
  for (let at = 0; at < all.length; at += 8) one.copy(all, at);
  return all;
}

/**
 * Runs two loops side by side. When one fails, the other's stop signal is aborted and it is
 * awaited (a loop checks stop between steps and races its waits against it with untilStopped),
 * then the first error is thrown: neither outlives the call.
 */
export async function together<A, B>(a: (stop: AbortSignal) => Promise<A>, b: (stop: AbortSignal) => Promise<B>): Promise<[A, B]> {
  const stop = new AbortController();
  let first: { err: unknown } | undefined;
  const run = <T>(f: (s: AbortSignal) => Promise<T>) => f(stop.signal).catch((err: unknown) => {
    first ??= { err };
    stop.abort(err);
    return undefined as T;
  });
  const both = await Promise.all([run(a), run(b)]);
  if (first) throw first.err;
  return both;
}

/** p, or a rejection with the stop reason as soon as stop aborts (p keeps a handler: no unhandled rejection). */
export function untilStopped<T>(p: Promise<T>, stop: AbortSignal): Promise<T> {
  if (stop.aborted) {
    p.catch(() => { /* given up on */ });
    return Promise.reject(stop.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(stop.reason);
    stop.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => stop.removeEventListener('abort', onAbort));
  });
}

function checkDone(d: Done): Done {
  checkFields('DONE', d, { blocksCompared: 'number', blocksDiffering: 'number', blocksZero: 'number', records: 'number', dataBytes: 'number', bytesRead: 'number', firstDiffs: 'object' });
  for (const k of ['fingerprint', 'baseFingerprint'] as const) {
    if (d[k] !== undefined && !(typeof d[k] === 'string' && /^[0-9a-f]{16}$/.test(d[k]))) {
      throw new BlkError(ExitCode.REMOTE, `malformed DONE: field ${k} must be 16 lower-case hex digits`);
    }
  }
  return d;
}
