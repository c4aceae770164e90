// A job's history on this host: the target LV's kept copies (lvm/copies.ts) and the live target,
// as `history list` shows them, and the one place that turns "JOB ID" into a copy.
// Local targets only: a remote target's history lives on its server's host (refused, USAGE).
// Reads lvs only; memory: the VG's rows.
import { BlkError, ExitCode } from '../errors.js';
import type { JobConfig } from '../jobs/config.js';
import { labelsOf, type CopyFingerprint } from '../lvm/copy-tags.js';
import { copiesOf, type Copy } from '../lvm/copies.js';
import type { LvRow } from '../lvm/report.js';
import { targetLv } from '../lvm/target-snapshot.js';

/** One line of `history list` (the JSON fields are documented in docs/history.md). */
export interface HistoryEntry {
  id: string;
  /** VG/LV of the copy (for the live target: the target LV). */
  lv: string;
  /** ISO time of the data it holds (the end of the run that made it), null when unknown. */
  dataTime: string | null;
  /** ISO time the copy was taken. */
  created: string | null;
  kind: 'thin' | 'cow';
  size: number | null;
  fingerprint: CopyFingerprint | null;
  /** good | pending (the last good copy of a torn target) | torn (overflowed) | live | dirty (live, being written or cut short). */
  state: 'good' | 'pending' | 'torn' | 'live' | 'dirty';
  live?: true;
}

export interface JobHistory { vg: string; lv: LvRow; copies: Copy[] }

/** The job's target LV and its copies; throws USAGE/CONFIG when the job keeps no local history. */
export async function jobHistory(job: JobConfig): Promise<JobHistory> {
  if (!job.targetSnapshot) throw new BlkError(ExitCode.CONFIG, `job ${job.name} keeps no history: set target_snapshot = true`);
  if (job.target.kind !== 'local') {
    throw new BlkError(ExitCode.USAGE, `job ${job.name}: the target ${job.targetText} is remote; run blkdelta history on that host (not yet supported through the server)`);
  }
  const { lv, rows } = await targetLv(job.target.path);
  return { vg: lv.vg, lv, copies: copiesOf(rows, lv, job.name) };
}

/** The copy named id (its LV name), or USAGE listing the ids there are. */
export function findCopy(h: JobHistory, id: string, job: string): Copy {
  const c = h.copies.find((x) => x.id === id || `${x.row.vg}/${x.id}` === id);
  if (!c) {
    const ids = h.copies.map((x) => x.id).join(', ') || 'none';
    throw new BlkError(ExitCode.USAGE, `job ${job} has no copy "${id}" (copies: ${ids}; see blkdelta history list ${job})`);
  }
  return c;
}

const iso = (ms: number | null): string | null => (ms === null || ms === 0 ? null : new Date(ms).toISOString());

/** The entries of `history list`: the live target first, then the copies, newest data first. */
export function entriesOf(h: JobHistory): HistoryEntry[] {
  const copies: HistoryEntry[] = h.copies.map((c) => ({
    id: c.id, lv: `${h.vg}/${c.id}`, dataTime: iso(c.dataTime), created: iso(c.created), kind: c.kind, size: c.size,
    fingerprint: c.fingerprint, state: c.torn ? 'torn' : c.pending ? 'pending' : 'good',
  }));
  copies.sort((a, b) => (b.dataTime ?? b.created ?? '').localeCompare(a.dataTime ?? a.created ?? ''));
  const l = labelsOf(h.lv.tags);
  const live: HistoryEntry = {
    id: h.lv.name, lv: `${h.vg}/${h.lv.name}`, dataTime: iso(l.dataTime), created: null,
    kind: h.lv.pool !== '' ? 'thin' : 'cow', size: h.lv.size, fingerprint: l.fingerprint, state: l.dataTime === null ? 'dirty' : 'live', live: true,
  };
  return [live, ...copies];
}
