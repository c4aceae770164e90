// The four `blkdelta history` operations on one job, each one library call for cmd-history.ts.
// prune, verify and restore hold the job's lock (a run pruning copies cannot pull one away
// mid-read; held: LOCKED); list only reads lvs.
import { BlkError, ExitCode } from '../errors.js';
import type { Config, JobConfig } from '../jobs/config.js';
import { lockJob } from '../locks/lock.js';
import { pruneCopies, type PruneResult } from '../lvm/copies.js';
import { entriesOf, findCopy, jobHistory, type HistoryEntry } from './copies.js';
import { restoreCopy, type RestoreResult } from './restore.js';
import { putVerifyRecord, type CopyCheck } from '../jobs/history-record.js';
import { verifyCopies } from './verify.js';

export async function historyList(job: JobConfig): Promise<HistoryEntry[]> {
  return entriesOf(await jobHistory(job));
}

async function locked<T>(cfg: Config, job: JobConfig, fn: () => Promise<T>): Promise<T> {
  const lock = lockJob(cfg.stateDir, job.name, new Date());
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** Applies (or with dryRun shows) the job's retention now. */
export function historyPrune(cfg: Config, job: JobConfig, dryRun: boolean): Promise<PruneResult> {
  return locked(cfg, job, async () => {
    const h = await jobHistory(job);
    const ts = job.targetSnapshot!;
    return pruneCopies(h.vg, h.lv.name, { job: job.name, retention: ts.retention, poolMaxFill: ts.poolMaxFill, dryRun });
  });
}

/** Re-reads the copies (or the one named) and records the outcome; DIFFERENT names every damaged copy. */
export function historyVerify(cfg: Config, job: JobConfig, id: string | undefined, signal: AbortSignal): Promise<CopyCheck[]> {
  return locked(cfg, job, async () => {
    const h = await jobHistory(job);
    const copies = id === undefined ? h.copies : [findCopy(h, id, job.name)];
    const checks = await verifyCopies(copies, signal);
    if (id === undefined) putVerifyRecord(cfg.stateDir, { version: 1, job: job.name, at: new Date().toISOString(), copies: checks });
    return checks;
  });
}

/** Throws DIFFERENT naming the damaged copies, after they were printed. */
export function throwIfDamaged(job: string, checks: readonly CopyCheck[]): void {
  const bad = checks.filter((c) => c.result === 'damaged');
  if (bad.length) {
    throw new BlkError(ExitCode.DIFFERENT, `job ${job}: ${bad.length} damaged cop${bad.length === 1 ? 'y' : 'ies'}: ${bad.map((c) => `${c.id} (${c.lv})`).join(', ')}`);
  }
}

export function historyRestore(cfg: Config, job: JobConfig, id: string, dest: string, signal: AbortSignal): Promise<RestoreResult> {
  return locked(cfg, job, async () => {
    const h = await jobHistory(job);
    return restoreCopy(findCopy(h, id, job.name), dest, { blockSize: job.blockSize, signal });
  });
}
