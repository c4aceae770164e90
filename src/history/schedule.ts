// history_verify_every: after a good run of a job, `history verify` runs when the last recorded
// verify is older than the job's interval (or there is none). The run's outcome and exit code stay
// as they were: a damaged copy is logged and recorded, and `check` reports it (CRITICAL).
import { describe } from '../errors.js';
import { log } from '../log.js';
import type { Config, JobConfig } from '../jobs/config.js';
import { readVerifyRecord } from '../jobs/history-record.js';
import { historyVerify } from './ops.js';

/** True when a verify is due at `now` (pure). */
export function verifyDue(everyS: number | undefined, lastAt: string | undefined, now: Date): boolean {
  if (everyS === undefined) return false;
  if (lastAt === undefined) return true;
  const age = now.getTime() - Date.parse(lastAt);
  return Number.isNaN(age) || age < 0 || age >= everyS * 1000; // a verify "in the future": the clock went back, verify now
}

/** Runs the scheduled verify of a job when due; never throws (the run already succeeded). */
export async function verifyIfDue(cfg: Config, job: JobConfig, signal: AbortSignal): Promise<void> {
  const every = job.targetSnapshot?.historyVerifyEvery;
  if (!verifyDue(every, readVerifyRecord(cfg.stateDir, job.name).rec?.at, new Date())) return;
  try {
    log.info(`job ${job.name}: history verify is due (history_verify_every)`);
    const checks = await historyVerify(cfg, job, undefined, signal);
    const bad = checks.filter((c) => c.result === 'damaged');
    if (bad.length) log.error(`job ${job.name}: history verify found damaged copies: ${bad.map((c) => `${c.id} (${c.lv}): ${c.detail}`).join('; ')}`);
    else log.info(`job ${job.name}: history verify: ${checks.length} cop${checks.length === 1 ? 'y' : 'ies'} checked, none damaged`);
  } catch (err) {
    log.error(`job ${job.name}: scheduled history verify failed: ${describe(err)}`);
  }
}
