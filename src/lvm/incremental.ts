// Incremental runs on a thin LV: read only what changed since the base the target was made equal
// to, and fall back to a full compare, saying why, whenever that cannot be trusted.
//
//   before the snapshot: remove base LVs of the job the record does not name (an interrupted
//     rotation); over pool_max_fill, drop the base too (the pool gets its space back; full compare);
//     when nothing was removed, the snapshot step reuses this lvs listing
//   withSourceSnapshot (stale removal, pool guard, poller, removal on every exit path) → S:
//     full compare when: S is not thin, no/unusable record, record for another target, pending
//       "full", base LV missing or another LV (uuid), full_compare_every due, metadata tools fail
//     else ranges = thin_delta(base, S) (on a reserved metadata snapshot, released in a finally)
//       ∪ pending ranges of an interrupted run, and a random sample of blocks outside them
//     record pending = ranges | "full"; sync (write) those ranges or everything, in ONE session:
//       the sample is compared first (START.sample); any differing block there ends the session
//       before anything is written (SampleDiffers) → record pending = "full", sync everything
//     rotate: thin snapshot B' of S (tags blkdelta, blkdelta-base, job), record base = B' with
//       pending cleared (atomic), remove the old base
//
// Interrupted anywhere: the record still names the old base and carries what the run may have
// written (pending), so the next run is correct; a base made but not yet recorded, or recorded but
// its predecessor not yet removed, is removed by the next run: exactly one base remains. A metadata
// snapshot left reserved by a killed run is released by the next one (marker file with its PID).
// Memory: the changed ranges of one run and a few lvs rows.
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import { SampleDiffers } from '../engine/source.js';
import { log } from '../log.js';
import { mergeRanges, rangeBlocks, sampleOutside, type BlockRange } from '../ranges.js';
import { TAG_BASE, TAG_OWNER, jobTag, lvsArgv, snapshotName, thinSnapshotArgv } from './argv.js';
import { readBaseRecord, writeBaseRecord, type BaseRecord, type IncrementalReport } from './base-record.js';
import { LvmError, listLvs, removeOwned, runLvm } from './lvm.js';
import { DEFAULT_POOL_MAX_FILL, poolOf, poolProblem } from './pool.js';
import type { LvRow } from './report.js';
import { withSourceSnapshot, type SnapshotReport } from './snapshot.js';
import {
  DEFAULT_SAMPLE_BLOCKS, fullCompareDue, parseThinDelta, poolDevices, releaseArgv, reserveArgv, thinDeltaArgv, toBlockRanges, type ThinDelta,
} from './thin-delta.js';

export { TAG_BASE };

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
 * One write pass: ranges absent → everything. sample: blocks compared first (SyncOptions.sample);
 * the pass must throw the engine's SampleDiffers when one differs, before writing.
 */
export interface Pass { ranges?: BlockRange[]; sample?: BlockRange[]; mode: 'write' }

const reports = new WeakMap<object, IncrementalReport>();
/** The incremental report a failed run's error carries. */
export const incrementalReportOf = (err: unknown): IncrementalReport | undefined => (typeof err === 'object' && err ? reports.get(err) : undefined);

/** Runs the passes of one incremental sync inside a source snapshot (see the header). */
export async function withIncremental<T extends PassResult>(spec: IncrementalSpec, signal: AbortSignal,
  run: (device: string, pass: Pass, signal: AbortSignal) => Promise<T>): Promise<{ value: T; report: IncrementalReport; snapshot: SnapshotReport }> {
  const inc: IncrementalReport = { kind: 'full', removedBases: [] };
  try {
    const pre = await tidyBases(spec, inc);
    const snapSpec = { vg: spec.vg, lv: spec.lv, job: spec.job, poolMaxFillPct: spec.poolMaxFillPct, timeoutMs: spec.timeoutMs, rows: pre.rows };
    const { value, report } = await withSourceSnapshot(snapSpec, signal, (device, sig, snap) => passes(spec, { device, snap, signal: sig, run, inc, pre }));
    return { value, report: inc, snapshot: report };
  } catch (err) {
    if (typeof err === 'object' && err) reports.set(err, inc);
    throw err;
  }
}

/** The record, the base LV it names (if still there), and the VG's listing when tidying removed nothing. */
interface Pre { record: BaseRecord | null; why?: string; base: LvRow | null; rows?: LvRow[] }

/** Removes the job's bases the record does not name, and the named one when the pool is over the guard. */
async function tidyBases(spec: IncrementalSpec, inc: IncrementalReport): Promise<Pre> {
  const { record, why } = readBaseRecord(spec.stateDir, spec.job);
  const rows = await listLvs([spec.vg], spec.timeoutMs);
  const bases = rows.filter((r) => r.tags.includes(TAG_OWNER) && r.tags.includes(TAG_BASE) && r.tags.includes(jobTag(spec.job)));
  let base = bases.find((b) => b.name === record?.base?.name) ?? null;
  for (const b of bases.filter((x) => x !== base)) {
    await removeOwned(b, spec);
    inc.removedBases.push(b.name);
    log.warn(`removed base ${b.vg}/${b.name} of job ${spec.job}: the target's record does not name it (left by an interrupted run)`);
  }
  const origin = rows.find((r) => r.name === spec.lv);
  const pool = base && origin ? poolOf(rows, origin) : null;
  const full = pool ? poolProblem(pool, spec.poolMaxFillPct ?? DEFAULT_POOL_MAX_FILL) : null;
  if (base && full) {
    await removeOwned(base, spec);
    inc.removedBases.push(base.name);
    log.warn(`removed base ${base.vg}/${base.name} of job ${spec.job}: ${full}`);
    writeBaseRecord(spec.stateDir, { ...record!, base: null, dropped: `base ${base.name} was dropped: ${full}` });
    base = null;
  }
  const unchanged = inc.removedBases.length === 0 ? { rows } : {};
  return { record: base || !record ? record : readBaseRecord(spec.stateDir, spec.job).record, why, base, ...unchanged };
}

interface Ctx<T> {
  device: string;
  snap: Readonly<SnapshotReport>;
  signal: AbortSignal;
  run: (device: string, pass: Pass, signal: AbortSignal) => Promise<T>;
  inc: IncrementalReport;
  pre: Pre;
}

/**
 * The most ranges one run carries: START.ranges is one JSON frame (MAX_FRAME, 16 MiB) and the
 * base record keeps them as pending; 200000 ranges are at most about 6 MB of JSON.
 */
export const MAX_RANGES = 200_000;

/** A full compare's reason when the changes are too scattered to send as ranges. */
export function tooScattered(ranges: readonly BlockRange[]): string | undefined {
  return ranges.length > MAX_RANGES ? `the changes are scattered over ${ranges.length} ranges, more than the ${MAX_RANGES} a run carries` : undefined;
}

/** Decides the kind of run, runs the sample and the sync, then rotates the base. */
async function passes<T extends PassResult>(spec: IncrementalSpec, c: Ctx<T>): Promise<T> {
  const ids = await thinIds(spec);
  const size = ids.get(c.snap.name)?.size ?? 0;
  let reason = fullReason(spec, c.snap, c.pre, ids);
  let ranges: BlockRange[] | undefined;
  let delta: ThinDelta | undefined;
  if (!reason) {
    try {
      delta = await metadataDelta(spec, c.pre.base!.pool, c.pre.record!.base!.thinId, ids.get(c.snap.name)!.thinId);
    } catch (err) {
      reason = `cannot read the changed blocks from the pool's metadata: ${(err as Error).message}`;
    }
  }
  if (!reason) {
    ranges = changedRanges(spec, delta!, c.pre.record!, c.snap, size);
    reason = tooScattered(ranges);
  }
  if (reason) {
    const record = startFull(spec, c, reason);
    const value = await c.run(c.device, { mode: 'write' }, c.signal);
    await rotate(spec, c, record, true, delta);
    return value;
  }
  const sample = samplePicks(spec, ranges!, size);
  const record = pendingRecord(spec, c.pre.record, ranges!);
  writeBaseRecord(spec.stateDir, record);
  Object.assign(c.inc, { kind: 'incremental', base: c.pre.base!.name, changedBytes: rangeBlocks(ranges!) * spec.blockSize });
  const ran = await incrementalPass(spec, c, ranges!, sample);
  await rotate(spec, c, ran.full ?? record, !!ran.full, delta);
  return ran.value;
}

/** A full compare from here: the reason reported and logged, the record's pending "full" (returned). */
function startFull<T>(spec: IncrementalSpec, c: Ctx<T>, reason: string): BaseRecord {
  const record = pendingRecord(spec, c.pre.record, 'full');
  writeBaseRecord(spec.stateDir, record);
  Object.assign(c.inc, { kind: 'full', reason, base: undefined, changedBytes: undefined });
  log.info(`full compare: ${reason}`);
  return record;
}

/**
 * The ranges with the sample compared first, in one session; a differing sample (nothing was
 * written) turns the run into a full compare, the sample's reads counted in the run's.
 */
async function incrementalPass<T extends PassResult>(spec: IncrementalSpec, c: Ctx<T>, ranges: BlockRange[], sample: BlockRange[]): Promise<{ value: T; full?: BaseRecord }> {
  try {
    const value = await c.run(c.device, sample.length ? { mode: 'write', ranges, sample } : { mode: 'write', ranges }, c.signal);
    if (sample.length && value.sampleDiffering === undefined) throw new BlkError(ExitCode.INTERNAL, 'the sync pass did not compare the sample');
    if (sample.length) Object.assign(c.inc, { sampleBlocks: rangeBlocks(sample), sampleDiffering: value.sampleDiffering });
    return { value };
  } catch (err) {
    if (!(err instanceof SampleDiffers)) throw err;
    const full = startFull(spec, c, err.message);
    Object.assign(c.inc, { sampleBlocks: err.sampled, sampleDiffering: err.differing });
    const value = await c.run(c.device, { mode: 'write' }, c.signal);
    value.bytesReadSource += err.bytesRead;
    value.bytesReadTarget += err.bytesRead; // the target read the same sample blocks
    return { value, full };
  }
}

/** Why this run must compare in full, or undefined (the checks before the metadata query). */
function fullReason(spec: IncrementalSpec, snap: Readonly<SnapshotReport>, pre: Pre, ids: Map<string, ThinIds>): string | undefined {
  const r = pre.record;
  if (snap.kind !== 'thin') return `source ${spec.vg}/${spec.lv} is not a thin LV (an incremental run needs thin_delta between thin snapshots)`;
  if (!r) return pre.why;
  if (r.target !== spec.target) return `the base record names target ${r.target}, not ${spec.target}`;
  if (r.pending === 'full') return 'the previous full compare did not finish: the target may differ anywhere';
  if (!r.base) return r.dropped ?? 'no base recorded (the last run kept none)';
  if (!pre.base) return `base ${spec.vg}/${r.base.name} named by the target's record is missing (removed by hand?)`;
  const id = ids.get(r.base.name);
  if (!id || id.uuid !== r.base.uuid || id.thinId !== r.base.thinId) return `base ${spec.vg}/${r.base.name} is not the LV the record names (uuid or thin id differ)`;
  if (pre.base.origin === '' && pre.base.pool === '') return `base ${spec.vg}/${r.base.name} is not a thin snapshot`;
  if (fullCompareDue(r.lastFullAt ? Date.parse(r.lastFullAt) : undefined, spec.fullCompareEveryS, Date.now())) {
    return `full_compare_every ${spec.fullCompareEveryS} s has passed since the last full compare (${r.lastFullAt ?? 'never'})`;
  }
  return undefined;
}


/** thin_delta's extents in the sync's blocks, plus what an interrupted run may have written. */
function changedRanges(spec: IncrementalSpec, d: ThinDelta, r: BaseRecord, snap: Readonly<SnapshotReport>, size: number): BlockRange[] {
  const device = Math.max(size, 1);
  const changed = toBlockRanges(d.changed, d.poolBlockBytes, spec.blockSize, device);
  const pending = Array.isArray(r.pending) ? toBlockRanges(r.pending, r.blockSize, spec.blockSize, device) : [];
  if (pending.length) log.info(`adding ${rangeBlocks(pending)} blocks an interrupted run may have written (${snap.name})`);
  return mergeRanges([...changed, ...pending]);
}

/** The sample: random blocks outside the ranges (none when sampleBlocks is 0). */
function samplePicks(spec: IncrementalSpec, ranges: BlockRange[], size: number): BlockRange[] {
  const k = spec.sampleBlocks ?? DEFAULT_SAMPLE_BLOCKS;
  return k > 0 ? mergeRanges(sampleOutside(Math.ceil(size / spec.blockSize), ranges, k)) : [];
}

/** The record as it must be while the target is written: what this run may write is pending. */
function pendingRecord(spec: IncrementalSpec, r: BaseRecord | null, pending: 'full' | BlockRange[]): BaseRecord {
  const same = r && r.target === spec.target && r.blockSize === spec.blockSize;
  return {
    version: 1, job: spec.job, target: spec.target, base: same ? r.base : null, blockSize: spec.blockSize,
    madeAt: r?.madeAt ?? new Date(0).toISOString(), lastFullAt: same ? r.lastFullAt : undefined, pending, // pending ranges were merged into this run's
  };
}

/** After a good sync: B' = snapshot of S, recorded; then the old base goes. */
async function rotate<T>(spec: IncrementalSpec, c: Ctx<T>, record: BaseRecord, full: boolean, delta?: ThinDelta): Promise<void> {
  const now = new Date();
  const done: BaseRecord = { ...record, pending: undefined, dropped: undefined, madeAt: now.toISOString(), lastFullAt: full ? now.toISOString() : record.lastFullAt };
  if (c.snap.kind !== 'thin') {
    writeBaseRecord(spec.stateDir, { ...done, base: null });
    return;
  }
  const name = snapshotName(spec.vg, spec.lv, `base-${spec.job}`, now, 'source');
  try {
    await runLvm(thinSnapshotArgv({ vg: spec.vg, lv: c.snap.name, name, tags: [TAG_OWNER, TAG_BASE, jobTag(spec.job)], active: false }), spec.timeoutMs);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `the target is a good copy, but the new base could not be created (the next run adds this run's blocks to its own): ${(err as Error).message}`, { cause: err });
  }
  const id = (await thinIds(spec)).get(name);
  if (!id) throw new BlkError(ExitCode.SNAPSHOT, `base ${spec.vg}/${name} was created but lvs does not show it`);
  const pinned = delta ? delta.leftOnlyBlocks * delta.poolBlockBytes : undefined;
  writeBaseRecord(spec.stateDir, { ...done, base: { name, uuid: id.uuid, thinId: id.thinId }, ...(pinned !== undefined ? { pinnedBytes: pinned } : {}) });
  Object.assign(c.inc, { newBase: name, ...(pinned !== undefined ? { pinnedBytes: pinned } : {}) });
  if (c.pre.base) {
    await removeOwned(c.pre.base, spec);
    c.inc.removedBases.push(c.pre.base.name);
  }
  log.info(`base of job ${spec.job} is now ${spec.vg}/${name}`);
}

interface ThinIds { uuid: string; thinId: number; size: number }

/** lv_uuid and thin_id of the VG's LVs (a separate lvs: the shared columns stay as they are). */
async function thinIds(spec: IncrementalSpec): Promise<Map<string, ThinIds>> {
  const { stdout } = await runLvm(lvsArgv([spec.vg], ['lv_name', 'lv_uuid', 'thin_id', 'lv_size']), spec.timeoutMs);
  return parseThinIds(stdout);
}

/** Pure: lvs JSON (--units b --nosuffix) with lv_name, lv_uuid, thin_id, lv_size → name → ids (thin LVs only). */
export function parseThinIds(stdout: string): Map<string, ThinIds> {
  const out = new Map<string, ThinIds>();
  const doc = JSON.parse(stdout) as { report?: { lv?: Record<string, string>[] }[] };
  for (const r of doc.report ?? []) {
    for (const o of r.lv ?? []) if (/^\d+$/.test(o.thin_id ?? '')) out.set(o.lv_name!, { uuid: o.lv_uuid ?? '', thinId: Number(o.thin_id), size: Number(o.lv_size ?? 0) });
  }
  return out;
}

/** thin_delta between two thin ids on a reserved metadata snapshot, released on every exit path. */
async function metadataDelta(spec: IncrementalSpec, pool: string, left: number, right: number): Promise<ThinDelta> {
  const { tmeta, tpool } = poolDevices(spec.vg, pool);
  const marker = join(spec.stateDir, `metasnap-${spec.vg}-${pool}.pid`);
  await reserve(spec, tpool, marker);
  try {
    const { stdout } = await runLvm(thinDeltaArgv(tmeta, left, right), Math.max(spec.timeoutMs ?? 0, 600_000));
    return parseThinDelta(stdout);
  } finally {
    await runLvm(releaseArgv(tpool), spec.timeoutMs).then(() => unlinkQuiet(marker), (err: Error) =>
      log.error(`cannot release the metadata snapshot of ${tpool}: ${err.message}; release it by hand: dmsetup message ${tpool} 0 release_metadata_snap`));
  }
}

/**
 * reserve_metadata_snap; when one is already held and the marker names a process that is gone (a
 * killed run), it is released first. Held by a live process (another job, another tool): thrown.
 */
async function reserve(spec: IncrementalSpec, tpool: string, marker: string): Promise<void> {
  const holder = existsSync(marker) ? Number(readFileSync(marker, 'utf8').trim()) : NaN;
  if (Number.isInteger(holder) && holder !== process.pid && alive(holder)) {
    throw new BlkError(ExitCode.SNAPSHOT, `the metadata snapshot of ${tpool} is in use by process ${holder} (another run on this pool)`);
  }
  writeFileSync(marker, `${process.pid}\n`);
  try {
    await runLvm(reserveArgv(tpool), spec.timeoutMs);
  } catch (err) {
    if (!(err instanceof LvmError) || !Number.isInteger(holder)) throw err;
    log.warn(`releasing the metadata snapshot of ${tpool} left reserved by an interrupted run (process ${holder})`);
    await runLvm(releaseArgv(tpool), spec.timeoutMs);
    await runLvm(reserveArgv(tpool), spec.timeoutMs);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unlinkQuiet(path: string): void {
  try { unlinkSync(path); } catch { /* gone already */ }
}
