// Result records: one JSON file per job, <stateDir>/<job>.json = { version, job, lastSuccess, runs }
// with the newest run first (runs[0] may be a "running" record) and at most `history` runs kept.
// Written atomically: temp file in the same dir, fsync, rename over the old file, fsync the dir;
// a reader sees the old file or the new one, never half of one. A run killed mid-write leaves at
// most a <job>.json.tmp-* file, which readers ignore and the next run of that job removes.
// A lock-refused run does not own the job's file (the holder does): it writes <job>.refused.json.
// Readers report a corrupt or unreadable file instead of throwing. Memory: one job's history.
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe } from '../errors.js';
import type { Fingerprint } from '../engine/fingerprint.js';
import type { HistorySummary } from '../lvm/target-snapshot.js';
import type { ProcId } from '../locks/proc.js';
import type { IncrementalReport } from '../lvm/base-record.js';
import type { Thresholds } from './config.js';

/**
 * warning: the run completed but its copy is suspect (source mounted read-write without a
 * snapshot: "copy may be torn"; or a post_run hook failed). cancelled: stopped while it waited for
 * a max_concurrent slot, before touching anything.
 */
export type Outcome = 'success' | 'warning' | 'failed' | 'interrupted' | 'refused' | 'cancelled' | 'running';

/** What a running run is doing (record.progress.phase). */
export type Phase = 'waiting' | 'hook' | 'snapshot' | 'compare' | 'verify' | 'cleanup';

/** A running run's progress: bytes compared of the total, rate since the sync began, ETA (null: unknown). */
export interface RunProgress { phase: Phase; bytesDone: number; bytesTotal: number; rateBps: number; etaS: number | null }

/** One hook that ran (hooks.ts). */
export interface HookRecord {
  name: 'pre_run' | 'post_run' | 'on_failure';
  argv: string[];
  exitCode?: number;
  signal?: string;
  timedOut: boolean;
  durationS: number;
  /** Why it counts as failed (absent when it exited 0). */
  error?: string;
}

/** Counted per job across runs (Prometheus _total counters): runs begun, and runs that failed. */
export interface Counters { runs: number; failures: number }

export interface RunRecord {
  job: string;
  outcome: Outcome;
  /** ISO times: queued = job lock taken, start = slot taken and work begun, end = finished. */
  queued?: string;
  start: string;
  end?: string;
  durationS?: number;
  process: ProcId;
  host: string;
  source: string;
  target: string;
  exitCode?: number;
  error?: string;
  /** readSource/readTarget: bytes each side read (an incremental run reads only what changed). */
  bytes?: { compared: number; changed: number; sent: number; written: number; readSource?: number; readTarget?: number };
  /** incremental = true: which kind of run, why a full compare, the base (lvm/base-record.ts). */
  incremental?: IncrementalReport;
  throughputBps?: number;
  /** The snapshot the source was read from; removed false means it is still there. */
  snapshot?: { name: string; removed: boolean; error?: string };
  /** target_snapshot: the target's last good copy taken before writing, and those kept after. */
  targetSnapshot?: { name: string; reused: boolean; kept: string[]; history?: HistorySummary };
  /** dirty: a write may have been cut short, the target is not a copy of anything. */
  targetState: 'consistent' | 'dirty' | 'unknown';
  verified?: boolean;
  /**
   * A good run: the content it left on [0, size) of the target (engine/fingerprint.ts), the one
   * a copy of the target taken before the next run holds; baseFingerprint: the content before.
   */
  fingerprint?: Fingerprint;
  baseFingerprint?: Fingerprint;
  /** The job's check thresholds when it ran, so `check` works without the config. */
  thresholds?: Thresholds;
  /** While running: phase and bytes (tracker.ts), and when the record was last rewritten. */
  progress?: RunProgress;
  updated?: string;
  /** Why the outcome is "warning" ("copy may be torn: ..."). */
  warnings?: string[];
  hooks?: HookRecord[];
}

export interface JobState {
  version: 1;
  job: string;
  /** The last run that completed its copy (outcome success, or warning). */
  lastSuccess?: RunRecord;
  runs: RunRecord[];
  counters?: Counters;
}

export type ReadResult =
  | { kind: 'ok'; state: JobState; refused?: RunRecord }
  | { kind: 'missing'; path: string }
  | { kind: 'corrupt'; path: string; reason: string }
  | { kind: 'unreadable'; path: string; reason: string };

export const statePath = (dir: string, job: string) => join(dir, `${job}.json`);
const refusedPath = (dir: string, job: string) => join(dir, `${job}.refused.json`);

/** Writes `data` to `path` so that readers see either the old or the whole new content. */
export function writeFileAtomic(path: string, data: string): void {
  const dir = dirname(path);
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    fchmodSync(fd, 0o644); // readable by the monitoring user and node_exporter even under UMask=0077
    writeSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dir, 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}

/** Reads a job's records; never throws. */
export function readJobState(dir: string, job: string): ReadResult {
  const path = statePath(dir, job);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing', path };
    return { kind: 'unreadable', path, reason: describe(err) };
  }
  const reason = validate(text, job);
  if (typeof reason === 'string') return { kind: 'corrupt', path, reason };
  return { kind: 'ok', state: reason, refused: readRefused(dir, job) };
}

function validate(text: string, job: string): JobState | string {
  let v: JobState;
  try {
    v = JSON.parse(text) as JobState;
  } catch (err) {
    return `not valid JSON (${(err as Error).message})`;
  }
  if (typeof v !== 'object' || v === null || v.version !== 1) return 'not a version 1 record file';
  if (v.job !== job) return `it is the record of job ${JSON.stringify(v.job)}`;
  if (!Array.isArray(v.runs) || !v.runs.every(isRecord)) return 'runs is not a list of records';
  if (v.lastSuccess !== undefined && !isRecord(v.lastSuccess)) return 'lastSuccess is not a record';
  return v;
}

function isRecord(r: unknown): r is RunRecord {
  const x = r as RunRecord;
  return typeof x === 'object' && x !== null && typeof x.outcome === 'string' && typeof x.start === 'string'
    && !Number.isNaN(Date.parse(x.start)) && typeof x.process?.pid === 'number';
}

function readRefused(dir: string, job: string): RunRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(refusedPath(dir, job), 'utf8')) as unknown;
    return isRecord(r) ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Puts `rec` first in the job's history: it replaces runs[0] when that is this process's own
 * running record. Call only while holding the job's lock. A corrupt file is kept aside as
 * <job>.json.corrupt and history starts afresh. Returns what was written.
 */
export function putRecord(dir: string, rec: RunRecord, history: number): JobState {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const prev = readJobState(dir, rec.job);
  if (prev.kind === 'corrupt') renameSync(prev.path, `${prev.path}.corrupt`);
  const old = prev.kind === 'ok' ? prev.state : { version: 1 as const, job: rec.job, runs: [] };
  const runs = old.runs.filter((r, i) => !(i === 0 && sameRun(r, rec)));
  const state: JobState = {
    version: 1,
    job: rec.job,
    lastSuccess: rec.outcome === 'success' || rec.outcome === 'warning' ? rec : old.lastSuccess,
    runs: [rec, ...runs].slice(0, history),
    counters: countRun(old, rec),
  };
  writeFileAtomic(statePath(dir, rec.job), JSON.stringify(state, null, 1) + '\n');
  return state;
}

const FAILED: ReadonlySet<Outcome> = new Set(['failed', 'interrupted', 'refused']);

/**
 * The job's counters after writing `rec`: a run's first record counts a run (and a failure when
 * the previous record is a "running" one of a process that is gone: we hold the lock, so it was
 * killed); its final record counts a failure when it failed, was interrupted or refused.
 */
export function countRun(old: JobState, rec: RunRecord): Counters {
  const c = { ...(old.counters ?? { runs: 0, failures: 0 }) };
  const prev = old.runs[0];
  const own = !!prev && sameRun(prev, rec);
  if (!own) c.runs++;
  if (!own && prev?.outcome === 'running') c.failures++;
  if (FAILED.has(rec.outcome)) c.failures++;
  return c;
}

function sameRun(a: RunRecord, b: RunRecord): boolean {
  return a.outcome === 'running' && a.process.pid === b.process.pid && a.process.startTicks === b.process.startTicks
    && (a.queued ?? a.start) === (b.queued ?? b.start);
}

/** Records a run refused by the job lock (it must not touch the holder's file). */
export function putRefused(dir: string, rec: RunRecord): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileAtomic(refusedPath(dir, rec.job), JSON.stringify(rec, null, 1) + '\n');
}

/** Removes temp files a killed writer of this job left behind (call while holding its lock). */
export function removeStaleTemps(dir: string, job: string): void {
  let names: string[];
  try { names = readdirSync(dir); } catch { return; }
  for (const n of names) {
    if (n.startsWith(`${job}.json.tmp-`)) {
      try { unlinkSync(join(dir, n)); } catch { /* another cleaner was faster */ }
    }
  }
}

/** Job names that have a record file in the state dir. */
export function recordedJobs(dir: string): string[] {
  return readdirSync(dir).filter((n) => /\.json$/.test(n) && !n.endsWith('.refused.json')).map((n) => n.slice(0, -5)).sort();
}
