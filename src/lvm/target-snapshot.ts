// The target side: keep the last good copy of a target LV next to the one being written.
//
//   takeTargetSnapshot(dev, {job})   before the first write:
//     find the LV whose device is dev (lvs major:minor); if a snapshot of this job is still tagged
//     blkdelta-pending, an earlier run failed after taking it: the target is torn and that snapshot
//     is still the last good copy, so take none; else create <lv>-blkdelta-tgt-<job>-<stamp>, thin
//     (left inactive, activation skip) when the target is thin, else COW with a size;
//     tags blkdelta, blkdelta-target, blkdelta-job:<job>, blkdelta-pending
//   rotateTargetSnapshots(dev, {job, keep})   only after a successful, verified run:
//     clear blkdelta-pending, drop invalid (overflowed) COW copies, keep the newest `keep`
//
// Interruption: a run that dies leaves its snapshot tagged pending; nothing is pruned until a
// later run succeeds. Only LVs tagged blkdelta + blkdelta-target + the job are ever touched.
// Memory: the lvs rows of the host's LVs.
import { statSync } from 'node:fs';
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { devno as devnoOf } from '../io/sysfs.js';
import {
  TAG_OWNER, TAG_PENDING, TAG_TARGET, checkJobName, cowSnapshotArgv, delTagArgv, jobTag, snapshotName, thinSnapshotArgv,
} from './argv.js';
import { listLvs, removeOwned, runLvm } from './lvm.js';
import { ownSnapshots, snapshotFill, type LvRow } from './report.js';
import { DEFAULT_COW_SIZE } from './snapshot.js';

export interface TargetSnapshotOptions {
  job: string;
  /** COW size for a non-thin target ("10G", "50%ORIGIN"; default 20%ORIGIN). Ignored for thin. */
  size?: string;
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
}

/** "major:minor" of a block device; throws SNAPSHOT when the path is not one. */
function devno(devicePath: string): string {
  let st;
  try {
    st = statSync(devicePath);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `cannot snapshot target ${devicePath}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isBlockDevice()) throw new BlkError(ExitCode.SNAPSHOT, `--target-snapshot needs an LVM logical volume as target: ${devicePath} is not a block device`);
  return devnoOf(st.rdev);
}

/** The LV behind a device path and the rows of its VG. */
async function targetLv(devicePath: string, timeoutMs?: number): Promise<{ lv: LvRow; rows: LvRow[] }> {
  const dev = devno(devicePath);
  const all = await listLvs([], timeoutMs);
  const lv = all.find((r) => r.devno === dev);
  if (!lv) throw new BlkError(ExitCode.SNAPSHOT, `--target-snapshot needs an LVM logical volume as target: ${devicePath} (${dev}) is not an active LV`);
  return { lv, rows: all.filter((r) => r.vg === lv.vg) };
}

const mine = (rows: LvRow[], lv: LvRow, job: string) =>
  ownSnapshots(rows, { role: 'target', job, origin: lv.name }).sort((a, b) => (a.name < b.name ? 1 : -1)); // newest first

/** Snapshots a target LV before the first write; see the header. Throws SNAPSHOT. */
export async function takeTargetSnapshot(devicePath: string, o: TargetSnapshotOptions): Promise<TargetSnapshotInfo> {
  checkJobName(o.job);
  const { lv, rows } = await targetLv(devicePath, o.timeoutMs);
  const thin = lv.pool !== '' || (lv.attr.thin && lv.attr.volumeType !== 't');
  const pending = mine(rows, lv, o.job).find((r) => r.tags.includes(TAG_PENDING));
  if (pending) {
    log.warn(`target ${lv.vg}/${lv.name}: snapshot ${pending.name} from a run that did not succeed is still the last good copy; taking no new one`);
    return { vg: lv.vg, lv: lv.name, name: pending.name, kind: thin ? 'thin' : 'cow', reused: true };
  }
  const name = snapshotName(lv.vg, lv.name, o.job, new Date(), 'target');
  const tags = [TAG_OWNER, TAG_TARGET, jobTag(o.job), TAG_PENDING];
  const argv = thin
    ? thinSnapshotArgv({ vg: lv.vg, lv: lv.name, name, tags, active: false })
    : cowSnapshotArgv({ vg: lv.vg, lv: lv.name, name, tags, size: o.size ?? DEFAULT_COW_SIZE });
  try {
    await runLvm(argv, o.timeoutMs);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `cannot snapshot target ${lv.vg}/${lv.name}: ${(err as Error).message}`, { cause: err });
  }
  log.info(`took ${thin ? 'thin' : 'COW'} snapshot ${lv.vg}/${name} of target ${lv.vg}/${lv.name} (the last good copy)`);
  return { vg: lv.vg, lv: lv.name, name, kind: thin ? 'thin' : 'cow', reused: false };
}

/**
 * After a successful, verified run (never after a failure): confirms the pending snapshot and
 * keeps the newest `keep` valid snapshots of this job, removing older and overflowed ones.
 */
export async function rotateTargetSnapshots(devicePath: string, o: { job: string; keep: number; timeoutMs?: number }):
  Promise<{ kept: string[]; removed: string[] }> {
  checkJobName(o.job);
  if (!Number.isInteger(o.keep) || o.keep < 0) throw new BlkError(ExitCode.USAGE, `--keep must be a whole number >= 0, got ${o.keep}`);
  const { lv, rows } = await targetLv(devicePath, o.timeoutMs);
  const kept: string[] = [];
  const removed: string[] = [];
  for (const snap of mine(rows, lv, o.job)) {
    const torn = snapshotFill(snap) === 100 || snap.attr.invalid;
    if (!torn && kept.length < o.keep) {
      if (snap.tags.includes(TAG_PENDING)) await runLvm(delTagArgv(snap.vg, snap.name, TAG_PENDING), o.timeoutMs);
      kept.push(snap.name);
      continue;
    }
    if (torn) log.warn(`target snapshot ${snap.vg}/${snap.name} overflowed (it is not a usable copy): removing it`);
    await removeOwned(snap, o);
    removed.push(snap.name);
  }
  if (removed.length) log.info(`target ${lv.vg}/${lv.name}: kept ${kept.length} snapshot(s), removed ${removed.join(', ')}`);
  return { kept, removed };
}
