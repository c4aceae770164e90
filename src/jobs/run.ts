// `blkdelta run JOB`: one job end to end, every exit path leaving a result record.
//   lock the job (held: LOCKED, recorded in <job>.refused.json)
//   record "running" (phase waiting) -> metrics (running, start time) -> take a max_concurrent slot
//     (timeout: BUSY, recorded "refused"; stopped while waiting: "cancelled", nothing touched)
//   record "running" (started) -> pre_run hook (fails: "failed", exit HOOK) -> syncJob (snapshot,
//     transport, runSync; the record's progress rewritten at most every 5 s, tracker.ts)
//   -> post_run / on_failure hooks -> release the slot
//   record the outcome (success | warning | failed | interrupted | refused | cancelled) -> metrics
//   -> release the lock
// warning: the copy completed but may be torn (source mounted read-write, no snapshot) or
// post_run failed. Interrupted (SIGINT/SIGTERM abort `signal`): the sync stops, the snapshot is
// removed, the record says "interrupted". SIGKILL: the kernel drops lock and slot; the "running"
// record stays (its `updated` is the last sign of life) and `check` reports the run as killed.
// Memory: one job's history.
import { hostname } from 'node:os';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { log } from '../log.js';
import type { Progress, SyncSummary } from '../engine/types.js';
import type { Config, JobConfig } from './config.js';
import { lockJob, type Lock } from '../locks/lock.js';
import { writeMetrics } from './metrics.js';
import { selfId } from '../locks/proc.js';
import { acquireSlot, type Slot } from '../locks/slots.js';
import { incrementalReportOf } from '../lvm/incremental.js';
import { putRecord, putRefused, removeStaleTemps, type HookRecord, type Outcome, type Phase, type RunRecord } from './state.js';
import { RunTracker } from './tracker.js';
import { preRunError, runHook, type HookName } from './hooks.js';
import { snapshotOfError, syncJob, type JobSyncResult } from './sync-job.js';
import { formatBytes, formatAge } from '../units.js';

export interface RunJobOptions {
  signal: AbortSignal;
  /** Seconds to wait for a slot (default: the config's wait_timeout). */
  waitTimeout?: number;
  /** Prometheus textfile to rewrite at the start and the end of the run (default: the config's metrics_file). */
  metricsFile?: string;
  /** Every engine progress report, with the run's phase (the CLI's progress line or bar). */
  onProgress?: (p: Progress, phase: Phase) => void;
  /** Least milliseconds between two progress rewrites of the running record (default 5000). */
  progressEveryMs?: number;
  /** Where an incremental job's base record lives (runJob passes the config's state_dir). */
  stateDir?: string;
}

/** The final record, and the error when the run did not succeed. Throws only when no record could be written. */
export interface RunJobResult { record: RunRecord; error?: unknown }

/** How often a running job rewrites the metrics file (its progress and last sign of life). */
const METRICS_EVERY_MS = 60_000;

/** Codes that mean the target was not touched even though the sync step had begun. */
const UNTOUCHED = new Set<number>([ExitCode.SOURCE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH, ExitCode.HOST_KEY,
  ExitCode.AUTH, ExitCode.PERMISSION, ExitCode.SNAPSHOT, ExitCode.USAGE, ExitCode.CONFIG]);

export async function runJob(cfg: Config, job: JobConfig, o: RunJobOptions): Promise<RunJobResult> {
  const queued = new Date();
  const base: RunRecord = {
    job: job.name, outcome: 'running', queued: queued.toISOString(), start: queued.toISOString(), process: selfId(),
    host: hostname(), source: job.sourceText, target: job.targetText, targetState: 'unknown',
    thresholds: { warningAge: job.warningAge, criticalAge: job.criticalAge, maxDuration: job.maxDuration },
    progress: { phase: 'waiting', bytesDone: 0, bytesTotal: 0, rateBps: 0, etaS: null },
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
    writeMetricsSafely(cfg, o);
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
  let metricsAt = Date.now();
  const tracker = new RunTracker((r) => {
    putRecord(cfg.stateDir, r, job.history);
    if (Date.now() - metricsAt < METRICS_EVERY_MS) return;
    metricsAt = Date.now();
    writeMetricsSafely(cfg, o);
  }, base, o.progressEveryMs);
  let slot: Slot;
  try {
    slot = await acquireSlot({
      stateDir: cfg.stateDir, max: cfg.maxConcurrent, waitTimeout: o.waitTimeout ?? cfg.waitTimeout, job: job.name,
      signal: o.signal, onWait: (h) => log.info(`job ${job.name}: waiting for a free slot (max_concurrent ${cfg.maxConcurrent}, ${h})`),
    });
  } catch (err) {
    return { record: o.signal.aborted ? cancelled(base, o.signal) : failure(base, err, o.signal, { writing: false, written: false }), error: err };
  }
  // The record's start..end lies inside the time the slot is held (the concurrency test relies on it).
  try {
    tracker.update({ start: new Date().toISOString() });
    log.info(`job ${job.name}: started (${job.sourceText} -> ${job.targetText}, slot ${slot.index})`);
    const { record, error } = await syncWithHooks(job, tracker, { ...o, stateDir: cfg.stateDir });
    return { record: await afterHooks(job, record, tracker), error };
  } finally {
    slot.release();
  }
}

/** pre_run, then the sync; the record of either's outcome (hooks after it: afterHooks). */
async function syncWithHooks(job: JobConfig, tracker: RunTracker, o: RunJobOptions): Promise<RunJobResult> {
  const phase = { writing: false, written: false };
  const hooks: HookRecord[] = [];
  try {
    if (job.hooks.pre_run) {
      tracker.phase('hook');
      hooks.push(await runHook('pre_run', job.hooks.pre_run, tracker.record, { timeout: job.hooks.timeout, signal: o.signal }));
      if (hooks[0]!.error) throw o.signal.aborted ? o.signal.reason : preRunError(hooks[0]!);
    }
    tracker.phase(job.snapshot ? 'snapshot' : 'compare');
    const onProgress = (p: Progress) => {
      const ph: Phase = job.verify && p.bytesDone >= p.bytesTotal ? 'verify' : 'compare';
      tracker.bytes(p, ph);
      o.onProgress?.(p, ph);
    };
    const result = await syncJob(job, o.signal, {
      writing: () => { phase.writing = true; }, written: () => { phase.written = true; },
      compare: () => tracker.phase('compare'), cleanup: () => tracker.phase('cleanup'),
    }, onProgress, o.stateDir);
    const done = withSummary(finish(tracker.record, 'success', undefined, 'consistent'), result);
    return { record: withHooks(torn(done, result.summary.sourceMountedRw), hooks) };
  } catch (err) {
    return { record: withHooks(failure(tracker.record, err, o.signal, phase), hooks), error: err };
  }
}

/** post_run (always, once pre_run passed), then on_failure (after a failure); both may turn the outcome. */
async function afterHooks(job: JobConfig, rec: RunRecord, tracker: RunTracker): Promise<RunRecord> {
  const preFailed = rec.exitCode === ExitCode.HOOK;
  const todo: HookName[] = [];
  if (job.hooks.post_run && !preFailed) todo.push('post_run');
  if (job.hooks.on_failure && FAILED.has(rec.outcome)) todo.push('on_failure');
  if (todo.length) tracker.phase('hook');
  let out = rec;
  for (const name of todo) {
    const h = await runHook(name, job.hooks[name]!, out, { timeout: job.hooks.timeout });
    out = withHooks(out, [...(out.hooks ?? []), h]);
    if (h.error) log.error(`job ${job.name}: ${h.error}`);
    if (h.error && out.outcome === 'success') out = { ...out, outcome: 'warning', warnings: [...(out.warnings ?? []), h.error] };
  }
  return out;
}

const FAILED = new Set<Outcome>(['failed', 'interrupted', 'refused']);

function withHooks(rec: RunRecord, hooks: HookRecord[]): RunRecord {
  return hooks.length ? { ...rec, hooks } : rec;
}

/** A source read while mounted read-write without a snapshot: the copy may be torn, not a success. */
function torn(r: RunRecord, mountedRw: string[] | undefined): RunRecord {
  if (!mountedRw?.length) return r;
  const why = `copy may be torn: source ${r.source} was mounted read-write at ${mountedRw.join(', ')} while it was read, and the job takes no snapshot`;
  return { ...r, outcome: 'warning', warnings: [...(r.warnings ?? []), why] };
}

/** A run stopped while it waited for a slot: nothing was touched, nothing to clean up. */
function cancelled(rec: RunRecord, signal: AbortSignal): RunRecord {
  const why = signal.reason instanceof Error ? signal.reason.message : 'interrupted';
  const r = finish(rec, 'cancelled', signal.reason ?? new BlkError(ExitCode.INTERRUPTED, why), 'consistent');
  return { ...r, error: `${why} while waiting for a max_concurrent slot; the target was not touched` };
}

/** The record of a run that threw: interrupted, refused (BUSY) or failed; dirty when cut mid-write. */
function failure(rec: RunRecord, err: unknown, signal: AbortSignal, phase: { writing: boolean; written: boolean }): RunRecord {
  const code = exitCodeOf(err);
  const outcome: Outcome = code === ExitCode.INTERRUPTED || signal.aborted ? 'interrupted' : code === ExitCode.BUSY ? 'refused' : 'failed';
  const dirty = phase.writing && !phase.written && !UNTOUCHED.has(code);
  const record = finish(rec, outcome, err, dirty ? 'dirty' : 'consistent');
  const inc = incrementalReportOf(err);
  if (inc) record.incremental = inc;
  const snap = snapshotOfError(err);
  if (snap?.name) record.snapshot = { name: `${snap.vg}/${snap.name}`, removed: snap.removed, error: snap.removeError };
  return record;
}

function finish(rec: RunRecord, outcome: Outcome, err: unknown, targetState: RunRecord['targetState']): RunRecord {
  const end = new Date();
  const code = err === undefined ? ExitCode.OK : exitCodeOf(err);
  return {
    ...rec, outcome, end: end.toISOString(), durationS: (end.getTime() - Date.parse(rec.start)) / 1000,
    exitCode: code, error: err === undefined ? undefined : describe(err), targetState, progress: undefined,
  };
}

function withSummary(rec: RunRecord, r: JobSyncResult): RunRecord {
  const s: SyncSummary = r.summary;
  const changed = Math.min(s.blocksDiffering * s.blockSize, s.comparedBytes);
  const out: RunRecord = {
    ...rec,
    bytes: { compared: s.comparedBytes, changed, sent: s.bytesSent, written: s.bytesWritten, readSource: s.bytesReadSource, readTarget: s.bytesReadTarget },
    throughputBps: s.durationMs > 0 ? Math.round(s.comparedBytes / (s.durationMs / 1000)) : undefined,
    verified: s.verified,
    fingerprint: s.fingerprint,
    baseFingerprint: s.baseFingerprint,
  };
  const snap = r.snapshot;
  if (snap?.name) out.snapshot = { name: `${snap.vg}/${snap.name}`, removed: snap.removed, error: snap.removeError };
  if (r.targetSnapshot) out.targetSnapshot = r.targetSnapshot;
  if (s.incremental) out.incremental = s.incremental;
  return out;
}

function report(r: RunRecord): void {
  const took = formatAge(r.durationS ?? 0);
  if (r.outcome === 'success' || r.outcome === 'warning') {
    const b = r.bytes!;
    const say = r.outcome === 'success' ? log.info : log.warn;
    say(`job ${r.job}: ${r.outcome} in ${took}: ${formatBytes(b.changed)} changed of ${formatBytes(b.compared)}, ${formatBytes(b.sent)} sent, ${formatBytes(b.written)} written${r.warnings ? '; ' + r.warnings.join('; ') : ''}`);
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
