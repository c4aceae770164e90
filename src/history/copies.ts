// A job's history on this host: the target LV's kept copies (lvm/copies.ts) and the live target,
// as `history list` shows them, and the one place that turns "JOB ID" into a copy.
// A remote target's history lives on its server's host: server/history.ts calls historyOf there.
// Reads lvs only; memory: the VG's rows.
import { BlkError, ExitCode } from '../errors.js';
import type { JobConfig } from '../jobs/config.js';
import { labelsOf } from '../lvm/copy-tags.js';
import { copiesOf, type Copy } from '../lvm/copies.js';
import type { LvRow } from '../lvm/report.js';
import type { HistoryEntry } from '../proto/messages.js';
import { targetLv } from '../lvm/target-snapshot.js';

export type { HistoryEntry } from '../proto/messages.js';

export interface JobHistory { vg: string; lv: LvRow; copies: Copy[] }

/** The job's target LV and its copies; throws CONFIG when the job keeps no history, USAGE for a remote target (ask its server). */
export async function jobHistory(job: JobConfig): Promise<JobHistory> {
  if (!job.targetSnapshot) throw new BlkError(ExitCode.CONFIG, `job ${job.name} keeps no history: set target_snapshot = true`);
  if (job.target.kind !== 'local') throw new BlkError(ExitCode.INTERNAL, `job ${job.name}: the history of a remote target is asked of its server`);
  return historyOf(job.target.path, job.name);
}

/** The LV behind devicePath and the copies of it that job made (here, or on a server for its clients). */
export async function historyOf(devicePath: string, job: string): Promise<JobHistory> {
  const { lv, rows } = await targetLv(devicePath);
  return { vg: lv.vg, lv, copies: copiesOf(rows, lv, job) };
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
