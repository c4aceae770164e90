// applyPatches: writes patches (docs/patch-format.md), in order, onto a target file or block device.
//   "-": stdin is spooled to a temp file first (patch/spool.ts), removed on every exit path
//   validatePatch every patch (pass 1: every byte checked; on any error nothing is opened or written)
//   open the target for writing; then for each patch:
//     its size must be target_size, or result_size (a second apply)
//     version 2: the state check (engine/patch-state.ts, one read of the target): another state is
//       refused (exit 7) before the first write; a target holding the result is left alone
//     a file target shorter than result_size is grown (ftruncate); a block device never grows
//     readRecords (pass 2): positional write of each record (zero records write zeros), then fsync
// Interrupted (signal, looked at between regions of a version 2 patch): the target is left
// partially patched and the error says so; applying the patch again finishes it.
// Memory: the reader's buffers (max_record_len + 1 MiB, two during the state check), one region of
// the target and its hashes, one decompressed record, 1 MiB of zeros.
import fs from 'node:fs';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { loadHasher, type Hasher } from '../hash.js';
import { log } from '../log.js';
import { readRecords, validatePatch } from '../patch/reader.js';
import { spoolStdin } from '../patch/spool.js';
import type { PatchHeader, Trailer } from '../patch/format.js';
import { grow, openTarget, writeFull, writeZeros, type Device } from '../io/device.js';
import { checkTargetState, WrongStateError } from './patch-state.js';

export interface ApplySummary {
  patch: string;
  target: string;
  targetKind: 'file' | 'block';
  /** Patch format version; version 1 patches carry no state and are applied unchecked. */
  version: 1 | 2;
  /**
   * What the state check found: base (as the patch was made from), partial (an earlier apply of it
   * stopped half-way), applied (already holds the result: nothing written), unchecked (version 1).
   */
  state: 'base' | 'partial' | 'applied' | 'unchecked';
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

export interface ChainSummary {
  target: string;
  /** One per patch, in the order applied. */
  links: ApplySummary[];
  durationMs: number;
}

interface Link { patch: string; label: string; header: PatchHeader; trailer: Trailer }
interface Run { target: string; signal?: AbortSignal; hasher: Hasher }

/** One patch onto one target (a chain of one). */
export async function applyPatch(opts: { patch: string; target: string; signal?: AbortSignal }): Promise<ApplySummary> {
  return (await applyPatches({ patches: [opts.patch], target: opts.target, signal: opts.signal })).links[0]!;
}

/**
 * Applies patches in order ("-" once: stdin, spooled first). Every patch is validated before the
 * target is opened; each link's state is checked before its first write.
 */
export async function applyPatches(opts: { patches: string[]; target: string; signal?: AbortSignal }): Promise<ChainSummary> {
  const started = Date.now();
  const hasher = await loadHasher();
  if (opts.patches.length === 0) throw new BlkError(ExitCode.USAGE, 'name at least one patch to apply');
  if (opts.patches.filter((p) => p === '-').length > 1) throw new BlkError(ExitCode.USAGE, 'stdin ("-") can be named only once');
  const spool = opts.patches.includes('-') ? await spoolStdin(hasher, opts.signal) : undefined;
  try {
    const links: Link[] = [];
    for (const p of opts.patches) {
      const path = p === '-' ? spool!.path : p;
      links.push({ patch: path, label: p === '-' ? 'stdin' : p, ...(await validatePatch(path, hasher, opts.signal)) });
    }
    checkAborted(opts.signal, 'before writing anything: the target is unchanged');
    const run: Run = { target: opts.target, signal: opts.signal, hasher };
    const dev = openTarget(opts.target, { write: true });
    try {
      return { target: opts.target, links: await applyChain(dev, links, run), durationMs: Date.now() - started };
    } finally {
      dev.close();
    }
  } finally {
    spool?.remove();
  }
}

async function applyChain(dev: Device, links: Link[], run: Run): Promise<ApplySummary[]> {
  const done: ApplySummary[] = [];
  for (const [i, link] of links.entries()) {
    try {
      done.push(await applyLink(dev, link, run));
    } catch (err) {
      if (err instanceof WrongStateError && i === 0 && links.length > 1 && await holdsResult(dev, links.at(-1)!, run)) {
        return links.map((l) => skipped(dev, l, run));
      }
      if (err instanceof WrongStateError) err.message = `${link.label}: ${err.message}; nothing of it written` + (i === 0 ? `, target ${run.target} unchanged` : '');
      if (i > 0 && err instanceof Error) {
        err.message += `; the ${i} patch(es) before it were applied` + (err instanceof WrongStateError ? `: target ${run.target} holds the result of ${links[i - 1]!.label}` : '');
      }
      throw err;
    }
  }
  return done;
}

/** Size check, state check (version 2), then every record; a target holding the result is left alone. */
async function applyLink(dev: Device, link: Link, run: Run): Promise<ApplySummary> {
  const started = Date.now();
  const { header, trailer } = link;
  checkSize(dev, header);
  const s = summaryOf(dev, link, run);
  if (header.state) {
    const report = await checkTargetState(dev, link.patch, header, trailer, run.hasher, () => checkAborted(run.signal, 'before writing anything of it'));
    if (report.state === 'result') return skipped(dev, link, run);
    s.state = report.state === 'base' ? 'base' : 'partial';
  } else {
    log.warn(`${link.label} is a version 1 patch: the target's state cannot be checked before it is written`);
  }
  try {
    if (s.grown) grow(dev, header.resultSize);
    await writeRecords(dev, link, run, trailer.recordCount, s);
    sync(dev);
  } catch (err) {
    if (err instanceof Error && exitCodeOf(err) !== ExitCode.INTERRUPTED) {
      err.message += `; target ${run.target} may be partially patched (${s.records} of ${trailer.recordCount} records): apply the patch again once the cause is fixed`;
    }
    throw err;
  }
  s.durationMs = Date.now() - started;
  return s;
}

/** True when the target already holds this (version 2) patch's result. */
async function holdsResult(dev: Device, link: Link, run: Run): Promise<boolean> {
  if (!link.header.state || (dev.size !== link.header.targetSize && dev.size !== link.header.resultSize)) return false;
  try {
    return (await checkTargetState(dev, link.patch, link.header, link.trailer, run.hasher)).state === 'result';
  } catch (err) {
    if (err instanceof WrongStateError) return false;
    throw err;
  }
}

function summaryOf(dev: Device, link: Link, run: Run): ApplySummary {
  const h = link.header;
  return {
    patch: link.label, target: run.target, targetKind: dev.kind, version: h.state ? 2 : 1, state: 'unchecked', blockSize: h.blockSize,
    sizeBefore: dev.size, sizeAfter: h.resultSize, grown: dev.size < h.resultSize, records: 0, bytesWritten: 0, zeroBytes: 0, durationMs: 0,
  };
}

/** A link whose result the target already holds: nothing written (a file is only extended to result_size). */
function skipped(dev: Device, link: Link, run: Run): ApplySummary {
  const s = { ...summaryOf(dev, link, run), state: 'applied' as const };
  if (s.grown && dev.kind === 'file') grow(dev, link.header.resultSize);
  return s;
}

/** Pass 2: every record at its offset; zero records write real zeros. A signal is looked at between records (v1) or regions (v2). */
async function writeRecords(dev: Device, link: Link, run: Run, total: number, s: ApplySummary): Promise<void> {
  const region = link.header.state?.regionSize;
  let current = -1;
  for await (const r of readRecords(link.patch, link.header, run.hasher)) {
    const at = region ? Math.floor(r.offset / region) : s.records;
    if (at !== current) checkAborted(run.signal, `after ${s.records} of ${total} records: target ${run.target} is partially patched; apply the patch again to finish`);
    current = at;
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

export function checkAborted(signal: AbortSignal | undefined, state: string): void {
  if (!signal?.aborted) return;
  const why = signal.reason instanceof Error ? signal.reason.message : 'interrupted';
  throw new BlkError(ExitCode.INTERRUPTED, `${why}: ${state}`, { cause: signal.reason });
}
