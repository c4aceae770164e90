// The target side: keep labelled copies of a target LV next to the one being written.
//
//   takeTargetSnapshot(dev, {job, poolMaxFill})   before the first write:
//     find the LV whose device is dev (lvs major:minor); a thin target whose pool is at or above
//     pool_max_fill is refused (SNAPSHOT, naming the pool and `blkdelta history prune JOB`);
//     if a copy of this job is still tagged blkdelta-pending, an earlier run failed after taking
//     it: the target is torn and that copy is still the last good one, so take none; else create
//     <lv>-blkdelta-tgt-<job>-<stamp>, thin (left inactive, activation skip) when the target is
//     thin, else COW with a size; tags blkdelta, blkdelta-target, blkdelta-job:<job>,
//     blkdelta-of:<lv>, blkdelta-pending, and the live target's labels (copy-tags.ts: the data
//     time and fingerprint of the good run whose content it freezes); then the live target's
//     labels are removed (from now on it is being written)
//   rotateTargetSnapshots(dev, {job, retention, content})   only after a successful run:
//     label the live target with this run's data time and fingerprint; check the label of the copy
//     this run took against the run's base fingerprint (the sync ran with the label's seed): no
//     label or a wrong one (the target was changed outside blkdelta: a rollback) -> relabel with
//     the content it holds, data time unknown; clear blkdelta-pending, then prune
//     (copies.ts pruneCopies: the Retention rules, pool_max_fill)
//
// Interruption: a run that dies leaves its copy tagged pending and the live target unlabelled;
// nothing is pruned until a later run succeeds. Only LVs tagged blkdelta + blkdelta-target + the
// job are ever removed. Memory: the lvs rows of the host's LVs.
import { statSync } from 'node:fs';
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { devno as devnoOf } from '../io/sysfs.js';
import type { Retention } from './retention.js';
import {
  TAG_OWNER, TAG_PENDING, TAG_TARGET, checkJobName, cowSnapshotArgv, jobTag, snapshotName, thinSnapshotArgv,
} from './argv.js';
import { contentTags, dataTag, fpTag, labelsOf, ofTag, retagArgv, type CopyFingerprint } from './copy-tags.js';
import { copiesOf, pruneCopies, readCopies } from './copies.js';
import { listLvs, runLvm } from './lvm.js';
import { DEFAULT_POOL_MAX_FILL, poolOf, poolProblem } from './pool.js';
import type { LvRow } from './report.js';
import { retentionProblem } from './retention.js';
import { DEFAULT_COW_SIZE } from './snapshot.js';

export interface TargetSnapshotOptions {
  job: string;
  /** COW size for a non-thin target ("10G", "50%ORIGIN"; default 20%ORIGIN). Ignored for thin. */
  size?: string;
  /** Refuse a thin target whose pool's data or metadata fill is at or above this (default 90). */
  poolMaxFill?: number;
  timeoutMs?: number;
}

export interface TargetSnapshotInfo {
  vg: string;
  lv: string;
  /** The last good copy: the snapshot just taken, or the pending one an earlier failed run left. */
  name: string;
  kind: 'thin' | 'cow';
  /** True when no snapshot was taken because a failed run's snapshot is still the last good copy. */
  reused: boolean;
  /**
   * The fingerprint the new copy was labelled with (the live target's): run the sync with its
   * seed and block size, so that its baseFingerprint checks the label (rotateTargetSnapshots).
   */
  labelled?: CopyFingerprint;
}

/** "major:minor" of a block device; throws SNAPSHOT when the path is not one. */
function devno(devicePath: string): string {
  let st;
  try {
    st = statSync(devicePath);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `cannot snapshot target ${devicePath}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isBlockDevice()) throw new BlkError(ExitCode.SNAPSHOT, `target copies (target_snapshot, --target-snapshot, history) need an LVM logical volume as target: ${devicePath} is not a block device`);
  return devnoOf(st.rdev);
}

/** The LV behind a device path and the rows of its VG. */
export async function targetLv(devicePath: string, timeoutMs?: number): Promise<{ lv: LvRow; rows: LvRow[] }> {
  const dev = devno(devicePath);
  const all = await listLvs([], timeoutMs);
  const lv = all.find((r) => r.devno === dev);
  if (!lv) throw new BlkError(ExitCode.SNAPSHOT, `target copies (target_snapshot, --target-snapshot, history) need an LVM logical volume as target: ${devicePath} (${dev}) is not an active LV`);
  return { lv, rows: all.filter((r) => r.vg === lv.vg) };
}

/** Throws SNAPSHOT when a thin target's pool is too full to take a copy and be written. */
function guardPool(rows: LvRow[], lv: LvRow, job: string, maxFill: number): void {
  const pool = poolOf(rows, lv);
  const problem = pool && poolProblem(pool, maxFill);
  if (problem) {
    throw new BlkError(ExitCode.SNAPSHOT, `target ${lv.vg}/${lv.name} refused before the first write: ${problem}; ` +
      `free space with \`blkdelta history prune ${job}\` (or lower its keep_* settings, or extend the pool)`);
  }
}

/** Snapshots a target LV before the first write; see the header. Throws SNAPSHOT. */
export async function takeTargetSnapshot(devicePath: string, o: TargetSnapshotOptions): Promise<TargetSnapshotInfo> {
  checkJobName(o.job);
  const { lv, rows } = await targetLv(devicePath, o.timeoutMs);
  const thin = lv.pool !== '' || (lv.attr.thin && lv.attr.volumeType !== 't');
  if (thin) guardPool(rows, lv, o.job, o.poolMaxFill ?? DEFAULT_POOL_MAX_FILL);
  const kind = thin ? 'thin' : 'cow';
  const pending = copiesOf(rows, lv, o.job).find((c) => c.pending);
  if (pending) {
    log.warn(`target ${lv.vg}/${lv.name}: copy ${pending.id} from a run that did not succeed is still the last good copy; taking no new one`);
    await unlabelLive(lv, o.timeoutMs);
    return { vg: lv.vg, lv: lv.name, name: pending.id, kind, reused: true };
  }
  const name = snapshotName(lv.vg, lv.name, o.job, new Date(), 'target');
  const tags = [TAG_OWNER, TAG_TARGET, jobTag(o.job), ofTag(lv.name), TAG_PENDING, ...contentTags(lv.tags)];
  const argv = thin
    ? thinSnapshotArgv({ vg: lv.vg, lv: lv.name, name, tags, active: false })
    : cowSnapshotArgv({ vg: lv.vg, lv: lv.name, name, tags, size: o.size ?? DEFAULT_COW_SIZE });
  try {
    await runLvm(argv, o.timeoutMs);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `cannot snapshot target ${lv.vg}/${lv.name}: ${(err as Error).message}`, { cause: err });
  }
  await unlabelLive(lv, o.timeoutMs);
  log.info(`took ${thin ? 'thin' : 'COW'} snapshot ${lv.vg}/${name} of target ${lv.vg}/${lv.name} (the last good copy)`);
  return { vg: lv.vg, lv: lv.name, name, kind, reused: false, labelled: labelsOf(lv.tags).fingerprint ?? undefined };
}

/** The live target is about to be written: it no longer holds the labelled content. */
async function unlabelLive(lv: LvRow, timeoutMs?: number): Promise<void> {
  const argv = retagArgv(lv.vg, lv.name, [], contentTags(lv.tags));
  if (argv) await runLvm(argv, timeoutMs);
}

/** What a successful run left on the target (from its summary), for the labels. */
export interface RunContent {
  /** The end of the run (ms): the data time of the content it left. */
  dataTime: number;
  fingerprint?: CopyFingerprint;
  /** The target's content before the run: what a copy taken by this run holds. */
  baseFingerprint?: CopyFingerprint;
  /** The copy this run took (not reused), to label when the live target had no labels. */
  copy?: string;
}

export interface RotateOptions {
  job: string;
  retention: Retention;
  poolMaxFill?: number;
  content?: RunContent;
  timeoutMs?: number;
}

/**
 * After a successful, verified run (never after a failure): labels the live target, confirms the
 * pending copy and prunes by the retention rules. Throws USAGE for a bad Retention, SNAPSHOT.
 */
export async function rotateTargetSnapshots(devicePath: string, o: RotateOptions): Promise<RotateResult> {
  checkJobName(o.job);
  const bad = retentionProblem(o.retention);
  if (bad) throw new BlkError(ExitCode.USAGE, `retention: ${bad}`);
  const { lv, rows } = await targetLv(devicePath, o.timeoutMs);
  if (o.content) await labelAfterRun(lv, rows, o.job, o.content, o.timeoutMs);
  for (const c of copiesOf(rows, lv, o.job).filter((x) => x.pending)) {
    await runLvm(retagArgv(c.row.vg, c.id, [], [TAG_PENDING])!, o.timeoutMs);
  }
  const { kept, removed } = await pruneCopies(lv.vg, lv.name, o);
  const times = (await readCopies(lv.vg, lv.name, o)).copies.filter((c) => !c.torn).map((c) => c.dataTime ?? c.created).sort((a, b) => a - b);
  const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
  return { kept, removed, history: { copies: times.length, oldest: iso(times[0]), newest: iso(times[times.length - 1]) } };
}

export interface RotateResult {
  kept: string[];
  removed: string[];
  /** The good copies left and the data times of the oldest and newest (for records and check). */
  history: HistorySummary;
}

export interface HistorySummary { copies: number; oldest: string | null; newest: string | null }

async function labelAfterRun(lv: LvRow, rows: LvRow[], job: string, c: RunContent, timeoutMs?: number): Promise<void> {
  const live = [dataTag(c.dataTime), ...(c.fingerprint ? [fpTag(c.fingerprint)] : [])];
  await runLvm(retagArgv(lv.vg, lv.name, live, contentTags(lv.tags))!, timeoutMs);
  const copy = c.copy ? copiesOf(rows, lv, job).find((x) => x.id === c.copy) : undefined;
  if (copy && c.baseFingerprint) await checkCopyLabel(copy.row, c.baseFingerprint, timeoutMs);
}

/**
 * The run measured what the copy holds (its baseFingerprint, made with the label's seed): a copy
 * without a fingerprint gets it; a copy whose label disagrees (the target was changed outside
 * blkdelta since its last good run: a rollback, a manual write) is relabelled with it and its
 * data time dropped (unknown), instead of carrying another run's labels.
 */
async function checkCopyLabel(copy: LvRow, base: CopyFingerprint, timeoutMs?: number): Promise<void> {
  const label = labelsOf(copy.tags).fingerprint;
  if (label && sameFingerprint(label, base)) return;
  if (label) log.warn(`target copy ${copy.vg}/${copy.name}: the target was changed outside blkdelta since its last good run (a rollback?); relabelled with the content it holds, data time unknown`);
  await runLvm(retagArgv(copy.vg, copy.name, [fpTag(base)], label ? contentTags(copy.tags) : [])!, timeoutMs);
}

const sameFingerprint = (a: CopyFingerprint, b: CopyFingerprint): boolean =>
  a.algo === b.algo && a.seed === b.seed && a.blockSize === b.blockSize && a.size === b.size && a.digest === b.digest;
