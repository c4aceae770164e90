// `blkdelta run JOB`: one job end to end, every exit path leaving a result record.
//   lock the job (held: LOCKED, recorded in <job>.refused.json)
//   record "running" (queued) -> take a max_concurrent slot (timeout: BUSY, recorded "refused")
//   record "running" (started) -> syncJob (snapshot, transport, runSync) -> release the slot
//   record the outcome (success | failed | interrupted | refused) -> metrics -> release the lock
// Interrupted (SIGINT/SIGTERM abort `signal`): the sync stops, the snapshot is removed, the
// record says "interrupted". SIGKILL: the kernel drops lock and slot; the "running" record stays
// and `check` reports the run as killed. Memory: one job's history.
import { hostname } from 'node:os';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { log } from '../log.js';
import type { SyncSummary } from '../engine/types.js';
import type { Config, JobConfig } from './config.js';
import { lockJob, type Lock } from './lock.js';
import { writeMetrics } from './metrics.js';
import { selfId } from './proc.js';
import { acquireSlot, type Slot } from '../server/slots.js';
import { putRecord, putRefused, removeStaleTemps, type Outcome, type RunRecord } from './state.js';
import { snapshotOfError, syncJob, type JobSyncResult } from './sync-job.js';
import { formatBytes, formatAge } from '../units.js';

export interface RunJobOptions {
  signal: AbortSignal;
  /** Seconds to wait for a slot (default: the config's wait_timeout). */
  waitTimeout?: number;
  /** Prometheus textfile to rewrite after the run (default: the config's metrics_file). */
  metricsFile?: string;
}

/** The final record, and the error when the run did not succeed. Throws only when no record could be written. */
export interface RunJobResult { record: RunRecord; error?: unknown }

/** Codes that mean the target was not touched even though the sync step had begun. */
const UNTOUCHED = new Set<number>([ExitCode.SOURCE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH, ExitCode.HOST_KEY,
  ExitCode.AUTH, ExitCode.PERMISSION, ExitCode.SNAPSHOT, ExitCode.USAGE, ExitCode.CONFIG]);

export async function runJob(cfg: Config, job: JobConfig, o: RunJobOptions): Promise<RunJobResult> {
  const queued = new Date();
  const base: RunRecord = {
    job: job.name, outcome: 'running', queued: queued.toISOString(), start: queued.toISOString(), process: selfId(),
    host: hostname(), source: job.sourceText, target: job.targetText, targetState: 'unknown',
    thresholds: { warningAge: job.warningAge, criticalAge: job.criticalAge, maxDuration: job.maxDuration },
  };
  let lock: Lock;
  try {
    lock = stateIo(cfg, () => lockJob(cfg.stateDir, job.name, queued));
  } catch (err) {
    if (exitCodeOf(err) !== ExitCode.LOCKED) throw err;
    const record = finish(base, 'refused', err, 'unknown');
    stateIo(cfg, () => putRefused(cfg.stateDir, record));
    return { record, error: err };
  }
  try {
    removeStaleTemps(cfg.stateDir, job.name);
    stateIo(cfg, () => putRecord(cfg.stateDir, base, job.history));
    const { record, error } = await runLocked(cfg, job, base, o);
    report(record);
    stateIo(cfg, () => putRecord(cfg.stateDir, record, job.history));
    writeMetricsSafely(cfg, o);
    return { record, error };
  } finally {
    lock.release();
  }
}

async function runLocked(cfg: Config, job: JobConfig, base: RunRecord, o: RunJobOptions): Promise<RunJobResult> {
  let slot: Slot;
  try {
    slot = await acquireSlot({
      stateDir: cfg.stateDir, max: cfg.maxConcurrent, waitTimeout: o.waitTimeout ?? cfg.waitTimeout, job: job.name,
      signal: o.signal, onWait: (h) => log.info(`job ${job.name}: waiting for a free slot (max_concurrent ${cfg.maxConcurrent}, ${h})`),
    });
  } catch (err) {
    return { record: failure(base, err, o.signal, { writing: false, written: false }), error: err };
  }
  const phase = { writing: false, written: false };
  const rec = { ...base, start: new Date().toISOString() };
  // The record's start..end lies inside the time the slot is held (the concurrency test relies on it).
  try {
    putRecord(cfg.stateDir, rec, job.history);
    log.info(`job ${job.name}: started (${job.sourceText} -> ${job.targetText}, slot ${slot.index})`);
    const result = await syncJob(job, o.signal, { writing: () => { phase.writing = true; }, written: () => { phase.written = true; } });
    return { record: withSummary(finish(rec, 'success', undefined, 'consistent'), result) };
  } catch (err) {
    return { record: failure(rec, err, o.signal, phase), error: err };
  } finally {
    slot.release();
  }
}

/** The record of a run that threw: interrupted, refused (BUSY) or failed; dirty when cut mid-write. */
function failure(rec: RunRecord, err: unknown, signal: AbortSignal, phase: { writing: boolean; written: boolean }): RunRecord {
  const code = exitCodeOf(err);
  const outcome: Outcome = code === ExitCode.INTERRUPTED || signal.aborted ? 'interrupted' : code === ExitCode.BUSY ? 'refused' : 'failed';
  const dirty = phase.writing && !phase.written && !UNTOUCHED.has(code);
  const record = finish(rec, outcome, err, dirty ? 'dirty' : 'consistent');
  const snap = snapshotOfError(err);
  if (snap?.name) record.snapshot = { name: `${snap.vg}/${snap.name}`, removed: snap.removed, error: snap.removeError };
  return record;
}

function finish(rec: RunRecord, outcome: Outcome, err: unknown, targetState: RunRecord['targetState']): RunRecord {
  const end = new Date();
  const code = err === undefined ? ExitCode.OK : exitCodeOf(err);
  return {
    ...rec, outcome, end: end.toISOString(), durationS: (end.getTime() - Date.parse(rec.start)) / 1000,
    exitCode: code, error: err === undefined ? undefined : describe(err), targetState,
  };
}

function withSummary(rec: RunRecord, r: JobSyncResult): RunRecord {
  const s: SyncSummary = r.summary;
  const changed = Math.min(s.blocksDiffering * s.blockSize, s.comparedBytes);
  const out: RunRecord = {
    ...rec,
    bytes: { compared: s.comparedBytes, changed, sent: s.bytesSent, written: s.bytesWritten },
    throughputBps: s.durationMs > 0 ? Math.round(s.comparedBytes / (s.durationMs / 1000)) : undefined,
    verified: s.verified,
    fingerprint: s.fingerprint,
    baseFingerprint: s.baseFingerprint,
  };
  const snap = r.snapshot;
  if (snap?.name) out.snapshot = { name: `${snap.vg}/${snap.name}`, removed: snap.removed, error: snap.removeError };
  if (r.targetSnapshot) out.targetSnapshot = r.targetSnapshot;
  return out;
}

function report(r: RunRecord): void {
  const took = formatAge(r.durationS ?? 0);
  if (r.outcome === 'success') {
    const b = r.bytes!;
    log.info(`job ${r.job}: success in ${took}: ${formatBytes(b.changed)} changed of ${formatBytes(b.compared)}, ${formatBytes(b.sent)} sent, ${formatBytes(b.written)} written`);
  } else {
    log.error(`job ${r.job}: ${r.outcome} after ${took} (exit ${r.exitCode}); target ${r.targetState}: ${r.error}`);
  }
}

function writeMetricsSafely(cfg: Config, o: RunJobOptions): void {
  const file = o.metricsFile ?? cfg.metricsFile;
  if (!file) return;
  try {
    writeMetrics(cfg.stateDir, file);
  } catch (err) {
    log.error(`cannot write metrics file ${file}: ${describe(err)}`);
  }
}

/** Runs a state dir operation; a system error becomes IO naming the state dir. */
function stateIo<T>(cfg: Config, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BlkError) throw err;
    throw new BlkError(ExitCode.IO, `state dir ${cfg.stateDir}: ${describe(err)}`, { cause: err });
  }
}

/** Throws the run's error (for a single job): main() prints it and exits with its code. */
export function throwIfFailed(r: RunJobResult): void {
  if (r.error !== undefined) throw r.error;
}
