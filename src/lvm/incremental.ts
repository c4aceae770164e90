// Incremental runs on a thin LV: read only what changed since the base the target was made equal
// to, and fall back to a full compare, saying why, whenever that cannot be trusted. This file is
// the target's side (the base record, the decisions, the passes); the LVM work next to the source
// is lvm/base-lvm.ts, done on this host (withIncremental) or by the server of a pull
// (server/incremental.ts, through engine/pull-incremental.ts): a SourceEnd.
//
//   before the snapshot (source end): remove base LVs of the job the record does not name (an
//     interrupted rotation); over pool_max_fill, drop the base too (full compare, recorded)
//   the source end's snapshot S, then:
//     full compare when: S is not thin, no/unusable record, record for another target, pending
//       "full", base LV missing or another LV (uuid), full_compare_every due, metadata tools fail,
//       the source end cannot read changes (a server without the incremental capability)
//     else ranges = thin_delta(base, S) (source end) ∪ pending ranges of an interrupted run, and
//       a random sample of blocks outside them
//     record pending = ranges | "full"; sync (write) those ranges or everything. The sample:
//       this host's source end compares it first in the write session (START.sample): any
//       differing block ends the session before anything is written (SampleDiffers); a server
//       compares it in a dry-run pass of the same session first. Either way a differing sample
//       block → record pending = "full", sync everything
//     rotate: the source end makes B' of S; record base = B' with pending cleared (atomic); then
//       the source end removes the old base
//
// Interrupted anywhere: the record still names the old base and carries what the run may have
// written (pending), so the next run is correct; a base made but not yet recorded, or recorded but
// its predecessor not yet removed, is removed by the next run: exactly one base remains.
// Memory: the changed ranges of one run and a few lvs rows.
import { BlkError, ExitCode } from '../errors.js';
import { SampleDiffers } from '../engine/source.js';
import { log } from '../log.js';
import { mergeRanges, rangeBlocks, sampleOutside, type BlockRange } from '../ranges.js';
import { readBaseRecord, writeBaseRecord, type BaseRecord, type IncrementalReport } from './base-record.js';
import { tooScattered, withBaseSnapshot, type BaseAsk, type Rotation, type SourceDelta } from './base-lvm.js';
import type { SnapshotReport } from './snapshot.js';
import { DEFAULT_SAMPLE_BLOCKS, fullCompareDue, toBlockRanges } from './thin-delta.js';

export { MAX_RANGES, TAG_BASE, parseThinIds, tooScattered } from './base-lvm.js';

export interface IncrementalSpec {
  vg: string;
  lv: string;
  job: string;
  /** Where the base record lives (the job's state dir). */
  stateDir: string;
  /** The target's name as the record keeps it. */
  target: string;
  blockSize: number;
  /** Blocks compared outside the changed ranges (default DEFAULT_SAMPLE_BLOCKS; 0: none). */
  sampleBlocks?: number;
  /** Seconds between forced full compares (0/undefined: never forced). */
  fullCompareEveryS?: number;
  poolMaxFillPct?: number;
  timeoutMs?: number;
}

/** What one pass of the sync reports (the engine's SyncSummary has these). */
export interface PassResult { blocksDiffering: number; bytesReadSource: number; bytesReadTarget: number; sourceSize: number; sampleDiffering?: number }
/**
 * One pass: ranges absent → everything. sample (write passes of an end with sampleInPass): blocks
 * compared first (SyncOptions.sample); the pass throws the engine's SampleDiffers when one
 * differs, before writing.
 */
export interface Pass { ranges?: BlockRange[]; sample?: BlockRange[]; mode: 'write' | 'dry-run' }

/**
 * Where the source and its bases are: body runs inside the source end's snapshot S, with what it
 * found (delta), a way to run a pass on S, and the rotation. Its value comes back with S's report.
 */
export interface SourceEnd<T> {
  /** The write pass compares the sample first (this host); else a dry-run pass does (a server). */
  sampleInPass?: boolean;
  within<R>(ask: BaseAsk, body: (delta: SourceDelta, run: (pass: Pass) => Promise<T>, rotation: Rotation) => Promise<R>): Promise<{ value: R; snapshot: SnapshotReport }>;
}

const reports = new WeakMap<object, IncrementalReport>();
/** The incremental report a failed run's error carries. */
export const incrementalReportOf = (err: unknown): IncrementalReport | undefined => (typeof err === 'object' && err ? reports.get(err) : undefined);

/** Runs the passes of one incremental sync of a thin LV on this host (see the header). */
export async function withIncremental<T extends PassResult>(spec: IncrementalSpec, signal: AbortSignal,
  run: (device: string, pass: Pass, signal: AbortSignal) => Promise<T>): Promise<{ value: T; report: IncrementalReport; snapshot: SnapshotReport }> {
  const lvm = { vg: spec.vg, lv: spec.lv, job: spec.job, poolMaxFillPct: spec.poolMaxFillPct, timeoutMs: spec.timeoutMs, markerDir: spec.stateDir };
  const local: SourceEnd<T> = {
    sampleInPass: true,
    within: (ask, body) => withBaseSnapshot(lvm, ask, signal, {}, (device, sig, _snap, delta, rotation) => body(delta, (pass) => run(device, pass, sig), rotation))
      .then(({ value, report }) => ({ value, snapshot: report })),
  };
  return runIncremental(spec, local);
}

/** The passes of one incremental sync against a source end (this host's LVM, or a server's). */
export async function runIncremental<T extends PassResult>(spec: IncrementalSpec, end: SourceEnd<T>): Promise<{ value: T; report: IncrementalReport; snapshot: SnapshotReport }> {
  const inc: IncrementalReport = { kind: 'full', removedBases: [] };
  try {
    const read = readBaseRecord(spec.stateDir, spec.job);
    const pre: Pre = { record: read.record, why: read.why };
    const ask: BaseAsk = {
      named: read.record?.base ?? null, delta: !recordReason(spec, pre), blockSize: spec.blockSize,
      onDropped: (dropped) => {
        pre.record = { ...pre.record!, base: null, dropped };
        writeBaseRecord(spec.stateDir, pre.record);
      },
    };
    const { value, snapshot } = await end.within(ask, (delta, run, rotation) => {
      inc.removedBases = delta.removedBases;
      return passes(spec, { run, rotation, inc, pre, delta, sampleInPass: !!end.sampleInPass });
    });
    return { value, report: inc, snapshot };
  } catch (err) {
    if (typeof err === 'object' && err) reports.set(err, inc);
    throw err;
  }
}

interface Pre { record: BaseRecord | null; why?: string }

interface Ctx<T> {
  run: (pass: Pass) => Promise<T>;
  rotation: Rotation;
  inc: IncrementalReport;
  pre: Pre;
  delta: SourceDelta;
  sampleInPass: boolean;
}

/** Decides the kind of run, runs the sample and the sync, then rotates the base. */
async function passes<T extends PassResult>(spec: IncrementalSpec, c: Ctx<T>): Promise<T> {
  const d = c.delta;
  let reason = !d.thin ? d.reason : recordReason(spec, c.pre) ?? d.reason;
  let ranges: BlockRange[] | undefined;
  if (!reason && !d.ranges) reason = 'the source end read no changed ranges'; // a server that answered without them
  if (!reason) {
    ranges = changedRanges(spec, d.ranges!, c.pre.record!, d.size);
    reason = tooScattered(ranges);
  }
  const picks = reason ? [] : samplePicks(spec, ranges!, d.size);
  let sampleBytes = { src: 0, tgt: 0 };
  if (!reason && !c.sampleInPass && picks.length) {
    const sampled = await dryRunSample(c, picks);
    sampleBytes = sampled.bytes;
    reason = sampled.reason;
  }
  if (reason) {
    const value = await fullPass(spec, c, reason, sampleBytes);
    return value;
  }
  const record = pendingRecord(spec, c.pre.record, ranges!);
  writeBaseRecord(spec.stateDir, record);
  Object.assign(c.inc, { kind: 'incremental', base: c.pre.record!.base!.name, changedBytes: rangeBlocks(ranges!) * spec.blockSize });
  const sample = c.sampleInPass ? picks : [];
  try {
    const value = await c.run(sample.length ? { mode: 'write', ranges, sample } : { mode: 'write', ranges });
    if (sample.length && value.sampleDiffering === undefined) throw new BlkError(ExitCode.INTERNAL, 'the sync pass did not compare the sample');
    if (sample.length) Object.assign(c.inc, { sampleBlocks: rangeBlocks(sample), sampleDiffering: value.sampleDiffering });
    value.bytesReadSource += sampleBytes.src;
    value.bytesReadTarget += sampleBytes.tgt;
    await rotate(spec, c, record, false);
    return value;
  } catch (err) {
    if (!(err instanceof SampleDiffers)) throw err;
    Object.assign(c.inc, { sampleBlocks: err.sampled, sampleDiffering: err.differing });
    return fullPass(spec, c, err.message, { src: err.bytesRead, tgt: err.bytesRead }); // nothing was written; the target read the same blocks
  }
}

/** A full compare with its reason recorded (pending "full" while it writes), then the rotation. */
async function fullPass<T extends PassResult>(spec: IncrementalSpec, c: Ctx<T>, reason: string, sampleBytes: { src: number; tgt: number }): Promise<T> {
  const record = pendingRecord(spec, c.pre.record, 'full');
  writeBaseRecord(spec.stateDir, record);
  Object.assign(c.inc, { kind: 'full', reason, base: undefined, changedBytes: undefined });
  log.info(`full compare: ${reason}`);
  const value = await c.run({ mode: 'write' });
  value.bytesReadSource += sampleBytes.src;
  value.bytesReadTarget += sampleBytes.tgt;
  await rotate(spec, c, record, true);
  return value;
}

/** Why the record alone makes this run a full compare, or undefined (the checks on this side). */
function recordReason(spec: IncrementalSpec, pre: Pre): string | undefined {
  const r = pre.record;
  if (!r) return pre.why;
  if (r.target !== spec.target) return `the base record names target ${r.target}, not ${spec.target}`;
  if (r.pending === 'full') return 'the previous full compare did not finish: the target may differ anywhere';
  if (!r.base) return r.dropped ?? 'no base recorded (the last run kept none)';
  if (fullCompareDue(r.lastFullAt ? Date.parse(r.lastFullAt) : undefined, spec.fullCompareEveryS, Date.now())) {
    return `full_compare_every ${spec.fullCompareEveryS} s has passed since the last full compare (${r.lastFullAt ?? 'never'})`;
  }
  return undefined;
}

/** The source end's changed ranges plus what an interrupted run may have written. */
function changedRanges(spec: IncrementalSpec, changed: BlockRange[], r: BaseRecord, size: number): BlockRange[] {
  const pending = Array.isArray(r.pending) ? toBlockRanges(r.pending, r.blockSize, spec.blockSize, Math.max(size, 1)) : [];
  if (pending.length) log.info(`adding ${rangeBlocks(pending)} blocks an interrupted run may have written`);
  return mergeRanges([...changed, ...pending]);
}

/** The sample: random blocks outside the ranges (none when sampleBlocks is 0). */
function samplePicks(spec: IncrementalSpec, ranges: BlockRange[], size: number): BlockRange[] {
  const k = spec.sampleBlocks ?? DEFAULT_SAMPLE_BLOCKS;
  return k > 0 ? mergeRanges(sampleOutside(Math.ceil(size / spec.blockSize), ranges, k)) : [];
}

/** A server's sample: compared in a dry-run pass; a differing block means the target was changed. */
async function dryRunSample<T extends PassResult>(c: Ctx<T>, picks: BlockRange[]): Promise<{ reason?: string; bytes: { src: number; tgt: number } }> {
  const s = await c.run({ mode: 'dry-run', ranges: picks });
  const n = rangeBlocks(picks);
  Object.assign(c.inc, { sampleBlocks: n, sampleDiffering: s.blocksDiffering });
  const bytes = { src: s.bytesReadSource, tgt: s.bytesReadTarget };
  if (!s.blocksDiffering) return { bytes };
  return { bytes, reason: `${s.blocksDiffering} of ${n} sampled blocks outside the changed ranges differ: the target was changed behind blkdelta's back` };
}

/** The record as it must be while the target is written: what this run may write is pending. */
function pendingRecord(spec: IncrementalSpec, r: BaseRecord | null, pending: 'full' | BlockRange[]): BaseRecord {
  const same = r && r.target === spec.target && r.blockSize === spec.blockSize;
  return {
    version: 1, job: spec.job, target: spec.target, base: same ? r.base : null, blockSize: spec.blockSize,
    madeAt: r?.madeAt ?? new Date(0).toISOString(), lastFullAt: same ? r.lastFullAt : undefined, pending, // pending ranges were merged into this run's
  };
}

/** After a good sync: B' = snapshot of S (source end), recorded; then the old base goes. */
async function rotate<T>(spec: IncrementalSpec, c: Ctx<T>, record: BaseRecord, full: boolean): Promise<void> {
  const now = new Date();
  const done: BaseRecord = { ...record, pending: undefined, dropped: undefined, madeAt: now.toISOString(), lastFullAt: full ? now.toISOString() : record.lastFullAt };
  if (!c.delta.thin) {
    writeBaseRecord(spec.stateDir, { ...done, base: null });
    return;
  }
  const made = await c.rotation.makeBase();
  const pinned = made.pinnedBytes;
  writeBaseRecord(spec.stateDir, { ...done, base: made.base, ...(pinned !== undefined ? { pinnedBytes: pinned } : {}) });
  Object.assign(c.inc, { newBase: made.base.name, ...(pinned !== undefined ? { pinnedBytes: pinned } : {}) });
  await c.rotation.dropOld();
}
