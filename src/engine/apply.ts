// applyPatch: writes a patch file (docs/patch-format.md) onto a target file or block device.
//   validatePatch (pass 1: every byte checked; on any error nothing is opened or written)
//   open the target for writing; its size must be target_size, or result_size (a second apply)
//   a file target shorter than result_size is grown (ftruncate); a block device never grows
//   readRecords (pass 2): positional write of each record (zero records write zeros), then fsync
// Applying the same patch twice gives the same result. Interrupted (signal) between records: the
// target is left partially patched and the error says so; applying the patch again finishes it.
// Memory: the reader's buffer (max_record_len + 1 MiB), one decompressed record, 1 MiB of zeros.
import fs from 'node:fs';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { loadHasher } from '../hash.js';
import { readRecords, validatePatch } from '../patch/reader.js';
import type { PatchHeader } from '../patch/format.js';
import { grow, openTarget, writeFull, writeZeros, type Device } from '../io/device.js';

export interface ApplySummary {
  patch: string;
  target: string;
  targetKind: 'file' | 'block';
  blockSize: number;
  /** The target's size before and after the apply. */
  sizeBefore: number;
  sizeAfter: number;
  grown: boolean;
  records: number;
  /** Bytes written to the target, zero records included. */
  bytesWritten: number;
  /** Of those, bytes written from zero records. */
  zeroBytes: number;
  durationMs: number;
}

export async function applyPatch(opts: { patch: string; target: string; signal?: AbortSignal }): Promise<ApplySummary> {
  const started = Date.now();
  const hasher = await loadHasher();
  const { header, trailer } = await validatePatch(opts.patch, hasher, opts.signal);
  checkAborted(opts.signal, 'before writing anything: the target is unchanged');
  const dev = openTarget(opts.target, { write: true });
  try {
    const sizeBefore = dev.size;
    checkSize(dev, header);
    const grown = sizeBefore < header.resultSize;
    const s: ApplySummary = { patch: opts.patch, target: opts.target, targetKind: dev.kind, blockSize: header.blockSize, sizeBefore, sizeAfter: header.resultSize, grown, records: 0, bytesWritten: 0, zeroBytes: 0, durationMs: 0 };
    try {
      if (grown) grow(dev, header.resultSize);
      await writeRecords(dev, opts, header, trailer.recordCount, s);
      sync(dev);
    } catch (err) {
      if (err instanceof Error && exitCodeOf(err) !== ExitCode.INTERRUPTED) {
        err.message += `; target ${opts.target} may be partially patched (${s.records} of ${trailer.recordCount} records): apply the patch again once the cause is fixed`;
      }
      throw err;
    }
    s.durationMs = Date.now() - started;
    return s;
  } finally {
    dev.close();
  }
}

/** Pass 2: every record at its offset; zero records write real zeros. */
async function writeRecords(dev: Device, opts: { patch: string; target: string; signal?: AbortSignal }, header: PatchHeader, total: number, s: ApplySummary): Promise<void> {
  for await (const r of readRecords(opts.patch, header, await loadHasher())) {
    checkAborted(opts.signal, `after ${s.records} of ${total} records: target ${opts.target} is partially patched; apply the patch again to finish`);
    if (r.data) writeFull(dev, r.data, r.offset);
    else writeZeros(dev, r.offset, r.length);
    s.records++;
    s.bytesWritten += r.length;
    if (!r.data) s.zeroBytes += r.length;
  }
}

/** The target must be as the patch expects: target_size, or result_size after an earlier apply. */
function checkSize(dev: Device, h: PatchHeader): void {
  const ok = dev.size === h.targetSize || dev.size === h.resultSize;
  if (!ok) {
    const want = h.resultSize === h.targetSize ? `${h.targetSize}` : `${h.targetSize} (or ${h.resultSize} after an earlier apply)`;
    throw new BlkError(ExitCode.SIZE_MISMATCH, `target ${dev.path} is ${dev.size} bytes, the patch was made for ${want}; nothing written`);
  }
  if (dev.kind === 'block' && dev.size < h.resultSize) {
    throw new BlkError(ExitCode.SIZE_MISMATCH, `target ${dev.path} is a ${dev.size}-byte block device and the patch needs ${h.resultSize} bytes; a block device cannot grow; nothing written`);
  }
}

function sync(dev: Device): void {
  try {
    fs.fsyncSync(dev.fd);
  } catch (err) {
    throw new BlkError(ExitCode.IO, `fsync of target ${dev.path} failed: ${describe(err)}`, { cause: err });
  }
}

function checkAborted(signal: AbortSignal | undefined, state: string): void {
  if (!signal?.aborted) return;
  const why = signal.reason instanceof Error ? signal.reason.message : 'interrupted';
  throw new BlkError(ExitCode.INTERRUPTED, `${why}: ${state}`, { cause: signal.reason });
}
