// The kept copies of one target LV for one job, found by their tags (blkdelta + blkdelta-target +
// blkdelta-job:<job> + blkdelta-of:<lv>; a copy from before blkdelta-of existed is matched by its
// origin), and the retention loop that prunes them:
//   loop: read lvs -> copies and pool fill -> selectRetention -> remove what it prunes;
//         again only when a copy went for pool pressure (how much it freed shows in the next lvs)
// Interrupted: the copies removed so far are gone, the others stay; a rerun continues.
// Memory: the lvs rows of the VG.
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { labelsOf, type CopyFingerprint } from './copy-tags.js';
import { TAG_PENDING } from './argv.js';
import { listLvs, removeOwned } from './lvm.js';
import { poolOf } from './pool.js';
import { ownSnapshots, snapshotFill, snapshotKind, type LvRow } from './report.js';
import { selectRetention, type CopyPoint, type Retention, type Verdict } from './retention.js';

export interface Copy {
  row: LvRow;
  /** The LV name: a copy's id everywhere (history list, restore, verify). */
  id: string;
  kind: 'thin' | 'cow';
  /** Bytes of data it holds (the origin's size when it was taken). */
  size: number | null;
  dataTime: number | null;
  created: number;
  fingerprint: CopyFingerprint | null;
  pending: boolean;
  /** An overflowed COW snapshot: not a copy of anything any more. */
  torn: boolean;
}

/** The job's copies of target lv (rows of its VG), newest first by creation. */
export function copiesOf(rows: readonly LvRow[], lv: LvRow, job: string): Copy[] {
  return ownSnapshots(rows, { role: 'target', job })
    .filter((r) => { const of = labelsOf(r.tags).of; return of === lv.name || (of === null && r.origin === lv.name); })
    .map(toCopy)
    .sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : -1));
}

function toCopy(r: LvRow): Copy {
  const l = labelsOf(r.tags);
  const kind = snapshotKind(r) ?? 'thin';
  return {
    row: r, id: r.name, kind, size: kind === 'cow' ? r.originSize ?? r.size : r.size,
    dataTime: l.dataTime, created: lvTime(r.time), fingerprint: l.fingerprint,
    pending: r.tags.includes(TAG_PENDING), torn: snapshotFill(r) === 100 || r.attr.invalid,
  };
}

/** lvs lv_time ("2026-11-27 13:22:17 +0000") in ms; 0 when unreadable. */
export function lvTime(s: string): number {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) ([+-]\d{2})(\d{2})$/.exec(s.trim());
  const t = m ? Date.parse(`${m[1]}T${m[2]}${m[3]}:${m[4]}`) : Number.NaN;
  return Number.isNaN(t) ? 0 : t;
}

/** The live target as a point when it holds a good run's data (its blkdelta-data tag). */
export function livePoint(lv: LvRow): CopyPoint | null {
  const t = labelsOf(lv.tags).dataTime;
  return t === null ? null : { id: lv.name, dataTime: t, created: t, live: true };
}

export interface PruneOptions {
  job: string;
  retention: Retention;
  /** Set: copies no rule keeps stay while the thin pool is below it (COW targets: ignored). */
  poolMaxFill?: number;
  dryRun?: boolean;
  timeoutMs?: number;
}

export interface PruneResult {
  kept: string[];
  removed: string[];
  /** The verdicts of the last selection (dry run: what would go, pool pressure one copy at a time). */
  verdicts: Verdict[];
}

/** Applies the retention to the copies of the target LV named vg/lvName; see the header. */
export async function pruneCopies(vg: string, lvName: string, o: PruneOptions): Promise<PruneResult> {
  const removed: string[] = [];
  for (;;) {
    const { lv, copies, rows } = await readCopies(vg, lvName, o);
    const pool = o.poolMaxFill !== undefined ? poolOf(rows, lv) : null;
    const live = livePoint(lv);
    const points = live ? [...copies.map(pointOf), live] : copies.map(pointOf);
    const verdicts = selectRetention(points, o.retention, pool ? { fillPct: maxFill(pool), maxFillPct: o.poolMaxFill! } : undefined)
      .filter((v) => v.id !== live?.id);
    const gone = verdicts.filter((v) => !v.keep);
    if (o.dryRun || gone.length === 0) return { kept: verdicts.filter((v) => v.keep).map((v) => v.id), removed, verdicts };
    for (const v of gone) {
      const c = copies.find((x) => x.id === v.id)!;
      if (c.torn) log.warn(`target copy ${vg}/${c.id} overflowed (it is not a usable copy): removing it`);
      await removeOwned(c.row, o);
      removed.push(c.id);
    }
    const kept = verdicts.filter((v) => v.keep).length;
    log.info(`target ${vg}/${lvName}: kept ${kept} snapshot(s), removed ${gone.map((v) => `${v.id} (${v.reasons.join(',')})`).join(', ')}`);
    if (!gone.some((v) => v.reasons.includes('pool'))) {
      const after = await readCopies(vg, lvName, o);
      return { kept: after.copies.map((c) => c.id), removed, verdicts };
    }
  }
}

const pointOf = (c: Copy): CopyPoint => ({ id: c.id, dataTime: c.dataTime, created: c.created, pending: c.pending, torn: c.torn });
const maxFill = (p: { data: number | null; metadata: number | null }): number | null =>
  p.data === null || p.metadata === null ? null : Math.max(p.data, p.metadata);

/** The target LV's row, its copies for the job, and the VG's rows; throws SNAPSHOT when it is gone. */
export async function readCopies(vg: string, lvName: string, o: { job: string; timeoutMs?: number }): Promise<{ lv: LvRow; copies: Copy[]; rows: LvRow[] }> {
  const rows = await listLvs([vg], o.timeoutMs);
  const lv = rows.find((r) => r.name === lvName);
  if (!lv) throw new BlkError(ExitCode.SNAPSHOT, `target LV ${vg}/${lvName} not found`);
  return { lv, copies: copiesOf(rows, lv, o.job), rows };
}
