// What client and server share once the handshake is done: the size plan, the START checks,
// and the two roles run to completion. Pure helpers first (table-tested), then the roles.
import { BlkError, ExitCode } from '../errors.js';
import { MAX_RECORD_LEN, type PatchHeader } from '../patch/format.js';
import { Msg } from '../proto/wire.js';
import { checkFields, type Conn, type Done, type Result, type Start } from '../proto/messages.js';
import type { Device } from '../io/device.js';
import { runSource, type RecordSink, type SourceOptions } from './source.js';
import type { SizePolicy } from './types.js';
import { rangesProblem, sampleProblem } from '../ranges.js';

export const MIN_BLOCK = 512;
export const MAX_BLOCK = MAX_RECORD_LEN;
const CHUNK = 1024 * 1024;

/** A block size is a power of two from 512 B to 16 MiB. */
export function checkBlockSize(bs: number): void {
  if (!Number.isInteger(bs) || bs < MIN_BLOCK || bs > MAX_BLOCK || (bs & (bs - 1)) !== 0) {
    throw new BlkError(ExitCode.USAGE, `--block-size ${bs} is invalid: it must be a power of two from 512 to ${MAX_BLOCK} (e.g. 4096, 64K)`);
  }
}

/** Bytes read and hashed per step: 1 MiB, or one block when blocks are larger. */
export function chunkSizeFor(bs: number): number {
  return Math.max(bs, CHUNK);
}

/**
 * How much to compare and how large the target ends up, per size policy.
 * strict: sizes must match; grow: a smaller file target is extended to the source's size;
 * min: only the common prefix is compared, the target keeps its size.
 */
export function planSizes(src: number, tgt: number, tgtKind: 'file' | 'block', policy: SizePolicy): { compareSize: number; resultSize: number } {
  if (src === tgt) return { compareSize: src, resultSize: tgt };
  const sizes = `source is ${src} bytes, target is ${tgt} bytes`;
  if (policy === 'min') return { compareSize: Math.min(src, tgt), resultSize: tgt };
  if (policy === 'grow') {
    if (src < tgt) throw new BlkError(ExitCode.SIZE_MISMATCH, `size mismatch: ${sizes}; grow never shrinks a target (use --size-policy min to compare the common prefix)`);
    if (tgtKind !== 'file') throw new BlkError(ExitCode.SIZE_MISMATCH, `size mismatch: ${sizes}; only a file target can grow (resize the block device, e.g. lvextend)`);
    return { compareSize: src, resultSize: src };
  }
  throw new BlkError(ExitCode.SIZE_MISMATCH, `size mismatch: ${sizes} (--size-policy grow extends a file target, min compares the common prefix)`);
}

/** The record geometry a START implies: what every incoming record is bounds-checked against. */
export function geometryOf(start: Start, targetSize: number, fingerprint = Buffer.alloc(16)): PatchHeader {
  return { blockSize: start.blockSize, targetSize, resultSize: start.resultSize, maxRecordLen: start.chunkSize, sourceFingerprint: fingerprint };
}

/**
 * Checks a START from the client against this side's device before anything is read or written:
 * every field of its type and range (REMOTE, naming the field). Sizes are whole numbers of bytes
 * below 2^53; chunkSize is a positive multiple of blockSize of at most MAX_RECORD_LEN; a source
 * has compareSize bytes; a target is never shrunk (resultSize >= its size).
 */
export function checkStart(start: Start, dev: Device, role: 'source' | 'target'): void {
  checkFields('START', start, { blockSize: 'number', seed: 'string', compareSize: 'number', resultSize: 'number', chunkSize: 'number', recordsToPeer: 'boolean', compress: 'boolean', verify: 'boolean' });
  const bad = (field: string, why: string) => new BlkError(ExitCode.REMOTE, `malformed START: field ${field} ${why}`);
  const { blockSize: bs, chunkSize, compareSize, resultSize } = start;
  if (bs < MIN_BLOCK || bs > MAX_BLOCK || (bs & (bs - 1)) !== 0) throw bad('blockSize', `${bs} is not a power of two from ${MIN_BLOCK} to ${MAX_BLOCK}`);
  if (chunkSize <= 0 || chunkSize % bs !== 0) throw bad('chunkSize', `${chunkSize} is not a positive multiple of the block size ${bs}`);
  if (chunkSize > MAX_RECORD_LEN) throw bad('chunkSize', `${chunkSize} exceeds the largest record, ${MAX_RECORD_LEN}`);
  if (!/^\d{1,20}$/.test(start.seed) || BigInt(start.seed) >= 2n ** 64n) throw bad('seed', 'is not a decimal u64');
  if (compareSize < 0) throw bad('compareSize', `${compareSize} is negative`);
  if (resultSize < 0) throw bad('resultSize', `${resultSize} is negative`);
  if (compareSize > resultSize) throw bad('compareSize', `${compareSize} exceeds resultSize ${resultSize}`);
  if (role === 'source' && compareSize > dev.size) throw bad('compareSize', `${compareSize} exceeds the source's ${dev.size} bytes`);
  if (role === 'target' && resultSize < dev.size) throw bad('resultSize', `${resultSize} is below the target's ${dev.size} bytes (a target is never shrunk)`);
  const ranged = start.ranges === undefined ? null : rangesProblem(start.ranges, Math.ceil(compareSize / bs));
  if (ranged) throw bad('ranges', ranged);
  const sampled = start.sample === undefined ? null : sampleProblem(start.sample, start.ranges, Math.ceil(compareSize / bs));
  if (sampled) throw bad('sample', sampled);
}

/** Source role to the end: compare and send, then DONE, then the target's RESULT. */
export async function runSourceSide(dev: Device, conn: Conn, start: Start, sink: RecordSink | null, opts: SourceOptions): Promise<{ done: Done; result: Result }> {
  const done = await runSource(dev, conn, start, sink, opts);
  await conn.writer.sendJson(Msg.DONE, done);
  const result = await conn.expectJson<Result>(Msg.RESULT);
  checkFields('RESULT', result, { blocksWritten: 'number', bytesWritten: 'number', bytesRead: 'number', verified: 'boolean' });
  return { done, result };
}
