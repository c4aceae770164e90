// The source host's part of an incremental run (docs/lvm.md, "Incremental runs"): everything done
// with LVM next to the thin source LV, called by a local run (lvm/incremental.ts) and by the
// server of a pulled one (server/incremental.ts), so both ends follow one set of rules:
//   tidyBases: remove the job's base LVs other than the one the target's record names (an
//     interrupted rotation), and the named one too when the pool is over pool_max_fill
//   withBaseSnapshot: tidyBases, then the thin snapshot S (withSourceSnapshot), then sourceDelta
//     (is S thin, is the named base the LV the record names, thin_delta between them on a
//     reserved metadata snapshot, released in a finally) and the body on S with a Rotation:
//     makeBase (B' = thin snapshot of S, tags blkdelta, blkdelta-base, job) and dropOld
// Only LVs carrying blkdelta + blkdelta-base + the job's tag are ever removed here, and a base is
// chosen by matching the record's name against those rows: a name never reaches lvm argv.
// Interrupted anywhere: S is removed by withSourceSnapshot (after SIGKILL, by the next run); a B'
// not yet named by the target's record is removed by the next tidyBases. A metadata snapshot left
// reserved by a killed run is released by the next one (marker file with its PID).
// Memory: the changed ranges of one run and a few lvs rows.
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { MAX_RANGES, type BlockRange } from '../ranges.js';
import { TAG_BASE, TAG_OWNER, jobTag, lvsArgv, snapshotName, thinSnapshotArgv } from './argv.js';
import type { BaseRef } from './base-record.js';
import { selfId, stillRunning, type ProcId } from '../locks/proc.js';
import { LvmError, listLvs, removeOwned, runLvm } from './lvm.js';
import { DEFAULT_POOL_MAX_FILL, poolOf, poolProblem } from './pool.js';
import type { LvRow } from './report.js';
import { withSourceSnapshot, type SnapshotReport, type SourceSnapshotSpec } from './snapshot.js';
import { parseThinDelta, poolDevices, releaseArgv, reserveArgv, thinDeltaArgv, toBlockRanges, type ThinDelta } from './thin-delta.js';

export { TAG_BASE };

export interface BaseLvmSpec {
  vg: string;
  lv: string;
  job: string;
  poolMaxFillPct?: number;
  timeoutMs?: number;
  /** Where the metadata snapshot's marker file (the PID holding it) is kept. */
  markerDir: string;
}

/** What the target's side asks of the source's: the base its record names, and whether to read the delta. */
export interface BaseAsk {
  named: BaseRef | null;
  /** false: the target's side compares in full anyway (only S and the new base are needed). */
  delta: boolean;
  blockSize: number;
  /** Called as soon as the pool guard removed the named base (the record must say so at once). */
  onDropped?: (why: string) => void;
}

/** What the source's side found: S's kind and size, the changed ranges since the base or why not. */
export interface SourceDelta {
  thin: boolean;
  size: number;
  /** Why the ranges cannot be read (the base is missing, another LV, the tools failed...). */
  reason?: string;
  /** Changed blocks since the base, in the ask's block size (only without a reason and with ask.delta). */
  ranges?: BlockRange[];
  /** Base LVs removed before the snapshot, and why the named base was dropped (pool guard). */
  removedBases: string[];
  dropped?: string;
}

/** After a good write: B' from S, then (once the target's record names B') the old base goes. */
export interface Rotation {
  makeBase(): Promise<{ base: BaseRef; pinnedBytes?: number }>;
  dropOld(): Promise<string | undefined>;
}

export { MAX_RANGES };

/** A full compare's reason when the changes are too scattered to send as ranges. */
export function tooScattered(ranges: readonly BlockRange[]): string | undefined {
  return ranges.length > MAX_RANGES ? `the changes are scattered over ${ranges.length} ranges, more than the ${MAX_RANGES} a run carries` : undefined;
}

/**
 * tidyBases, S, sourceDelta, then body(device, signal, snapshot, delta, rotation) on S. S is
 * removed whatever happens; the returned report (or the thrown error's) describes it.
 */
export async function withBaseSnapshot<R>(spec: BaseLvmSpec, ask: BaseAsk, signal: AbortSignal, snapExtra: Partial<SourceSnapshotSpec>,
  body: (device: string, signal: AbortSignal, snap: Readonly<SnapshotReport>, delta: SourceDelta, rotation: Rotation) => Promise<R>): Promise<{ value: R; report: SnapshotReport }> {
  const removedBases: string[] = [];
  const tidy = await tidyBases(spec, ask.named?.name, removedBases);
  if (tidy.dropped) ask.onDropped?.(tidy.dropped);
  const snapSpec: SourceSnapshotSpec = { vg: spec.vg, lv: spec.lv, job: spec.job, poolMaxFillPct: spec.poolMaxFillPct, timeoutMs: spec.timeoutMs, ...(tidy.rows ? { rows: tidy.rows } : {}), ...snapExtra };
  return withSourceSnapshot(snapSpec, signal, async (device, sig, snap) => {
    const found = await sourceDelta(spec, ask, snap, tidy.base);
    const delta: SourceDelta = { ...found.delta, removedBases, ...(tidy.dropped ? { dropped: tidy.dropped } : {}) };
    const rotation: Rotation = {
      makeBase: () => makeBase(spec, snap.name, found.thin),
      dropOld: async () => {
        if (!tidy.base) return undefined;
        await removeOwned(tidy.base, spec);
        removedBases.push(tidy.base.name);
        return tidy.base.name;
      },
    };
    return body(device, sig, snap, delta, rotation);
  });
}

/** The job's base LVs: tagged blkdelta, blkdelta-base and the job's tag, in the source's VG. */
export function jobBases(rows: readonly LvRow[], job: string): LvRow[] {
  return rows.filter((r) => r.tags.includes(TAG_OWNER) && r.tags.includes(TAG_BASE) && r.tags.includes(jobTag(job)));
}

/** Removes the job's bases other than `named`, and `named` when the pool is over the guard. */
export async function tidyBases(spec: BaseLvmSpec, named: string | undefined, removed: string[]): Promise<{ base: LvRow | null; dropped?: string; rows?: LvRow[] }> {
  const rows = await listLvs([spec.vg], spec.timeoutMs);
  const before = removed.length;
  const bases = jobBases(rows, spec.job);
  const base = bases.find((b) => b.name === named) ?? null;
  for (const b of bases.filter((x) => x !== base)) {
    await removeOwned(b, spec);
    removed.push(b.name);
    log.warn(`removed base ${b.vg}/${b.name} of job ${spec.job}: the target's record does not name it (left by an interrupted run)`);
  }
  const origin = rows.find((r) => r.name === spec.lv);
  const pool = base && origin ? poolOf(rows, origin) : null;
  const full = pool ? poolProblem(pool, spec.poolMaxFillPct ?? DEFAULT_POOL_MAX_FILL) : null;
  if (!base || !full) return { base, ...(removed.length === before ? { rows } : {}) }; // unchanged: the snapshot step reuses the listing
  await removeOwned(base, spec);
  removed.push(base.name);
  log.warn(`removed base ${base.vg}/${base.name} of job ${spec.job}: ${full}`);
  return { base: null, dropped: `base ${base.name} was dropped: ${full}` };
}

/** S's kind and size, and the changed ranges since the named base (or why they cannot be read). */
async function sourceDelta(spec: BaseLvmSpec, ask: BaseAsk, snap: Readonly<SnapshotReport>, base: LvRow | null): Promise<{ delta: Omit<SourceDelta, 'removedBases'>; thin?: ThinDelta }> {
  const ids = await thinIds(spec);
  const size = ids.get(snap.name)?.size ?? 0;
  const thin = snap.kind === 'thin';
  if (!thin) return { delta: { thin, size, reason: `source ${spec.vg}/${spec.lv} is not a thin LV (an incremental run needs thin_delta between thin snapshots)` } };
  if (!ask.delta || !ask.named) return { delta: { thin, size } };
  const why = baseProblem(spec.vg, ask.named, base, ids);
  if (why) return { delta: { thin, size, reason: why } };
  let d: ThinDelta;
  try {
    d = await metadataDelta(spec, base!.pool, ask.named.thinId, ids.get(snap.name)!.thinId);
  } catch (err) {
    return { delta: { thin, size, reason: `cannot read the changed blocks from the pool's metadata: ${(err as Error).message}` } };
  }
  const ranges = toBlockRanges(d.changed, d.poolBlockBytes, ask.blockSize, Math.max(size, 1));
  const many = tooScattered(ranges);
  return { delta: many ? { thin, size, reason: many } : { thin, size, ranges }, thin: d };
}

/** Why the named base cannot be used (missing, another LV, not a thin snapshot), or undefined. */
function baseProblem(vg: string, named: BaseRef, base: LvRow | null, ids: Map<string, ThinIds>): string | undefined {
  if (!base) return `base ${vg}/${named.name} named by the target's record is missing (removed by hand?)`;
  const id = ids.get(named.name);
  if (!id || id.uuid !== named.uuid || id.thinId !== named.thinId) return `base ${vg}/${named.name} is not the LV the record names (uuid or thin id differ)`;
  if (base.origin === '' && base.pool === '') return `base ${vg}/${named.name} is not a thin snapshot`;
  return undefined;
}

/** B' = thin snapshot of S, tagged as the job's base; its ids, and what the replaced base pinned. */
async function makeBase(spec: BaseLvmSpec, snapName: string, delta?: ThinDelta): Promise<{ base: BaseRef; pinnedBytes?: number }> {
  const name = snapshotName(spec.vg, spec.lv, `base-${spec.job}`, new Date(), 'source');
  try {
    await runLvm(thinSnapshotArgv({ vg: spec.vg, lv: snapName, name, tags: [TAG_OWNER, TAG_BASE, jobTag(spec.job)], active: false }), spec.timeoutMs);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `the target is a good copy, but the new base could not be created (the next run adds this run's blocks to its own): ${(err as Error).message}`, { cause: err });
  }
  const id = (await thinIds(spec)).get(name);
  if (!id) throw new BlkError(ExitCode.SNAPSHOT, `base ${spec.vg}/${name} was created but lvs does not show it`);
  const pinned = delta ? delta.leftOnlyBlocks * delta.poolBlockBytes : undefined;
  log.info(`base of job ${spec.job} is now ${spec.vg}/${name}`);
  return { base: { name, uuid: id.uuid, thinId: id.thinId }, ...(pinned !== undefined ? { pinnedBytes: pinned } : {}) };
}

interface ThinIds { uuid: string; thinId: number; size: number }

/** lv_uuid and thin_id of the VG's LVs (a separate lvs: the shared columns stay as they are). */
async function thinIds(spec: BaseLvmSpec): Promise<Map<string, ThinIds>> {
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
async function metadataDelta(spec: BaseLvmSpec, pool: string, left: number, right: number): Promise<ThinDelta> {
  const { tmeta, tpool } = poolDevices(spec.vg, pool);
  const marker = join(spec.markerDir, `metasnap-${spec.vg}-${pool}.pid`);
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
 * killed run; a pid reused since, or a past boot, counts as gone), it is released first. Held by a
 * live process (another job, another tool): thrown.
 */
async function reserve(spec: BaseLvmSpec, tpool: string, marker: string): Promise<void> {
  const holder = existsSync(marker) ? markerHolder(readFileSync(marker, 'utf8')) : null;
  if (holder && holder.pid !== process.pid && stillRunning(holder)) {
    throw new BlkError(ExitCode.SNAPSHOT, `the metadata snapshot of ${tpool} is in use by process ${holder.pid} (another run on this pool)`);
  }
  mkdirSync(spec.markerDir, { recursive: true, mode: 0o755 });
  writeFileSync(marker, `${JSON.stringify(selfId())}\n`);
  try {
    await runLvm(reserveArgv(tpool), spec.timeoutMs);
  } catch (err) {
    if (!(err instanceof LvmError) || !holder) throw err;
    log.warn(`releasing the metadata snapshot of ${tpool} left reserved by an interrupted run (process ${holder.pid})`);
    await runLvm(releaseArgv(tpool), spec.timeoutMs);
    await runLvm(reserveArgv(tpool), spec.timeoutMs);
  }
}

/** Pure: the process a marker file names (JSON ProcId, or a bare pid as older versions wrote), or null. */
export function markerHolder(text: string): ProcId | null {
  const t = text.trim();
  if (/^\d{1,10}$/.test(t)) return { pid: Number(t) };
  try {
    const o = JSON.parse(t) as Partial<ProcId>;
    if (!Number.isSafeInteger(o.pid) || o.pid! <= 0) return null;
    return {
      pid: o.pid!, ...(Number.isSafeInteger(o.startTicks) ? { startTicks: o.startTicks } : {}), ...(typeof o.bootId === 'string' ? { bootId: o.bootId } : {}),
    };
  } catch {
    return null;
  }
}

function unlinkQuiet(path: string): void {
  try { unlinkSync(path); } catch { /* gone already */ }
}
