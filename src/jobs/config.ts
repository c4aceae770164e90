// The jobs config file (TOML, default /etc/blkdelta/blkdelta.toml): global settings, [defaults]
// and named [jobs.NAME] tables. loadConfig() reads, parses and validates it in one go:
//   text -> config/toml.ts (syntax errors keep their line:col) -> every key checked against
//   schema.ts, defaults merged into each job -> Config.
// Every problem is reported as "FILE:LINE:COL: key.path: what is wrong"; any problem throws
// BlkError CONFIG listing them all. Reads only; memory: the file.
import { readFileSync } from 'node:fs';
import { BlkError, ExitCode, describe } from '../errors.js';
import type { SizePolicy } from '../engine/types.js';
import type { Retention } from '../lvm/retention.js';
import { parseEndpoint, type Endpoint } from '../transport/address.js';
import type { KeyIndex } from '../config/keypos.js';
import { isTable, readTable, readToml, throwProblems, type At, type Table } from '../config/toml.js';
import { describeValue, type KeySpec } from '../config/values.js';
import { DEFAULT_HOOK_TIMEOUT, type Hooks } from './hooks.js';
import { DEFAULT_STATE_DIR } from '../paths.js';
import { GLOBAL_KEYS, JOB_KEYS, SHARED_KEYS, SSH_KEYS, TABLES, keysElsewhere } from './schema.js';

export const DEFAULT_CONFIG = '/etc/blkdelta/blkdelta.toml';

export interface SshSettings { port?: number; identity?: string; knownHosts?: string; remoteCmd?: string; connectTimeout?: number }

/** Check thresholds, in seconds. */
export interface Thresholds { warningAge: number; criticalAge: number; maxDuration: number }
export const DEFAULT_THRESHOLDS: Thresholds = { warningAge: 36 * 3600, criticalAge: 48 * 3600, maxDuration: 12 * 3600 };

export interface JobConfig extends Thresholds {
  name: string;
  source: Endpoint;
  target: Endpoint;
  /** The source as written in the file (for records and messages). */
  sourceText: string;
  targetText: string;
  /**
   * Snapshot the source LV first: "VG/LV" (from `snapshot`, or derived from a /dev/VG/LV source).
   * remote: the source host's server makes it under its own policy (no size or fill from here).
   */
  snapshot?: { lv: string; size?: string; maxFill?: number; poolMaxFill?: number; remote?: boolean };
  /**
   * Snapshot the target LV before writing; after a success prune by the retention (keep_* keys,
   * `keep` is keep_last) and, with pool_max_fill, keep more copies as the target's pool allows.
   * historyVerifyEvery: seconds between `history verify` runs after a good run.
   */
  targetSnapshot?: { size?: string; keep: number; retention: Retention; poolMaxFill?: number; historyVerifyEvery?: number };
  blockSize: number;
  bwlimit?: number;
  verify: boolean;
  compress: boolean;
  sizePolicy: SizePolicy;
  history: number;
  ssh: SshSettings;
  /** pre_run, post_run, on_failure (argv) and hook_timeout in seconds (hooks.ts). */
  hooks: Hooks;
  /** incremental = true: keep a base snapshot of the thin source and read only what changed (lvm/incremental.ts). */
  incremental?: { sampleBlocks?: number; fullCompareEveryS?: number };
}

export interface Config {
  file: string;
  stateDir: string;
  maxConcurrent: number;
  /** Seconds a job waits for a free slot (max_concurrent) before giving up with BUSY. */
  waitTimeout: number;
  metricsFile?: string;
  /** In file order. */
  jobs: JobConfig[];
  /** Where the last job table starts: unknown job names are reported there. */
  jobsAt: { line: number; col: number };
}

const JOB_NAME = /^(?!.*\.refused$)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/; // X.refused.json is another job's file

/** Reads and validates the file; throws BlkError CONFIG naming file:line:col and the key. */
export function loadConfig(file: string = DEFAULT_CONFIG): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BlkError(ExitCode.CONFIG, `cannot read config ${file}: ${describe(err)}`, { cause: err });
  }
  return parseConfig(text, file);
}

/** Validates config text; `file` is only used in messages. */
export function parseConfig(text: string, file: string): Config {
  const { doc, idx, problems, at } = readToml(text, file);
  const cfg = problems.length ? undefined : buildConfig(doc, file, at, idx);
  throwProblems(problems, file);
  return cfg!;
}

function buildConfig(doc: Table, file: string, at: At, idx: KeyIndex): Config {
  const g = readTable(doc, [], GLOBAL_KEYS, at, { tables: ['defaults', 'jobs'], tablesElsewhere: TABLES, keysElsewhere: keysElsewhere('top') });
  const defaults = isTable(doc.defaults) ? readShared(doc.defaults, ['defaults'], SHARED_KEYS, at, 'defaults') : {};
  if (doc.defaults !== undefined && !isTable(doc.defaults)) at(['defaults'], `expected a table, got ${describeValue(doc.defaults)}`);
  const jobs: JobConfig[] = [];
  if (!isTable(doc.jobs) || Object.keys(doc.jobs).length === 0) {
    at(['jobs'], doc.jobs === undefined ? 'no jobs defined (add a [jobs.NAME] table with source and target)' : 'expected [jobs.NAME] tables');
  } else {
    for (const [name, t] of Object.entries(doc.jobs)) {
      const job = readJob(name, t, defaults, at);
      if (job) jobs.push(job);
    }
  }
  const names = isTable(doc.jobs) ? Object.keys(doc.jobs) : [];
  return {
    file,
    stateDir: (g.state_dir as string) ?? DEFAULT_STATE_DIR,
    maxConcurrent: (g.max_concurrent as number) ?? 2,
    waitTimeout: (g.wait_timeout as number) ?? 6 * 3600,
    metricsFile: g.metrics_file as string | undefined,
    jobs,
    jobsAt: idx.at(['jobs', ...names.slice(-1)]),
  };
}

/** A [defaults] or job table: its shared keys plus its ssh sub-table. */
function readShared(t: Table, path: string[], specs: Record<string, KeySpec>, at: At, level: 'defaults' | 'job'): Table {
  const out = readTable(t, path, specs, at, { tables: ['ssh'], tablesElsewhere: TABLES, keysElsewhere: keysElsewhere(level) });
  if (t.ssh !== undefined) {
    if (isTable(t.ssh)) out.ssh = readTable(t.ssh, [...path, 'ssh'], SSH_KEYS, at, { tablesElsewhere: TABLES, keysElsewhere: keysElsewhere('ssh') });
    else at([...path, 'ssh'], `expected a table, got ${describeValue(t.ssh)}`);
  }
  return out;
}

function readJob(name: string, t: unknown, defaults: Table, at: At): JobConfig | undefined {
  const path = ['jobs', name];
  if (!isTable(t)) return void at(path, `expected a table [jobs.${name}], got ${describeValue(t)}`);
  if (!JOB_NAME.test(name)) return void at(path, 'job names use letters, digits, "_", "-" and "." (at most 64, not starting with "." or "-", not ending in ".refused")');
  const own = readShared(t, path, JOB_KEYS, at, 'job');
  const v = { ...defaults, ...own, ssh: { ...(defaults.ssh as Table), ...(own.ssh as Table) } } as Table;
  for (const k of ['source', 'target']) if (t[k] === undefined) at([...path], `missing required key "${k}"`);
  const source = endpoint(v.source, [...path, 'source'], at);
  const target = endpoint(v.target, [...path, 'target'], at);
  if (!source || !target) return undefined;
  if (source.kind === 'remote' && target.kind === 'remote') return void at([...path, 'target'], 'source and target are both remote: one end must be local');
  const snapshot = snapshotOf(v, source, path, at);
  const targetSnapshot = targetSnapshotOf(v, own, target, path, at);
  const ssh = v.ssh as Table;
  return {
    name, source, target, snapshot, targetSnapshot,
    sourceText: v.source as string,
    targetText: v.target as string,
    blockSize: (v.block_size as number) ?? 4096,
    bwlimit: (v.bwlimit as number | undefined) || undefined, // 0 = unlimited
    verify: (v.verify as boolean) ?? false,
    compress: (v.compress as boolean) ?? true,
    sizePolicy: (v.size_policy as SizePolicy) ?? 'strict',
    history: (v.history as number) ?? 30,
    warningAge: (v.warning_age as number) ?? DEFAULT_THRESHOLDS.warningAge,
    criticalAge: (v.critical_age as number) ?? DEFAULT_THRESHOLDS.criticalAge,
    maxDuration: (v.max_duration as number) ?? DEFAULT_THRESHOLDS.maxDuration,
    ssh: { port: ssh.port as number, identity: ssh.identity as string, knownHosts: ssh.known_hosts as string,
      remoteCmd: ssh.remote_cmd as string, connectTimeout: ssh.connect_timeout as number },
    hooks: hooksOf(v),
    incremental: incrementalOf(v, own, snapshot, path, at),
  };
}

/** incremental = true needs a snapshot of a thin LV (a thin snapshot: no snapshot_size); a pull's base is kept by its server. */
function incrementalOf(v: Table, own: Table, snapshot: JobConfig['snapshot'], path: string[], at: At): JobConfig['incremental'] {
  if (v.incremental !== true) {
    for (const k of ['sample_blocks', 'full_compare_every']) if (own[k] !== undefined) at([...path, k], 'needs incremental = true');
    return undefined;
  }
  if (!snapshot) return void at([...path, 'incremental'], 'needs snapshot = "VG/LV" (or true) of a thin LV: the base is a snapshot of it (kept by the server of a remote source)');
  if (snapshot.size !== undefined) return void at([...path, 'snapshot_size'], 'incremental runs need a thin snapshot: remove snapshot_size');
  return { sampleBlocks: v.sample_blocks as number | undefined, fullCompareEveryS: v.full_compare_every as number | undefined };
}

function endpoint(v: unknown, path: string[], at: At): Endpoint | undefined {
  if (typeof v !== 'string') return undefined; // missing or wrong type: already reported
  try {
    return parseEndpoint(v);
  } catch (err) {
    return void at(path, (err as Error).message);
  }
}

/**
 * `snapshot = true` derives VG/LV from a /dev/VG/LV source; `snapshot = "VG/LV"` names it. A remote
 * source (a pull) is snapshotted by its server under [server.source_snapshot]: the LV is the
 * source's, and the size and fill keys are the server's to set.
 */
function snapshotOf(v: Table, source: Endpoint, path: string[], at: At): JobConfig['snapshot'] {
  if (v.snapshot === undefined || v.snapshot === false) return undefined;
  const m = /^\/dev\/([^/]+)\/([^/]+)$/.exec(source.path);
  let lv = v.snapshot as string | true;
  if (lv === true) {
    if (!m) return void at([...path, 'snapshot'], `cannot tell the LV from source "${source.path}": write snapshot = "VG/LV"`);
    lv = `${m[1]}/${m[2]}`;
  }
  if (source.kind === 'remote') return remoteSnapshotOf(v, lv, m, path, at);
  return { lv, size: v.snapshot_size as string | undefined, maxFill: v.snapshot_max_fill as number | undefined, poolMaxFill: v.pool_max_fill as number | undefined };
}

function remoteSnapshotOf(v: Table, lv: string, m: RegExpExecArray | null, path: string[], at: At): JobConfig['snapshot'] {
  if (!m || lv !== `${m[1]}/${m[2]}`) return void at([...path, 'snapshot'], `a remote source is snapshotted by its server: the source must be /dev/${lv} (write snapshot = true)`);
  for (const k of ['snapshot_size', 'snapshot_max_fill']) {
    if (v[k] !== undefined) at([...path, k], "the source host's server sets this for a remote source ([server.source_snapshot] in its --config)");
  }
  return { lv, remote: true };
}

/** target_snapshot: a local target is snapshotted here, a remote one by its server (blkdelta server). */
function targetSnapshotOf(v: Table, own: Table, target: Endpoint, path: string[], at: At): JobConfig['targetSnapshot'] {
  if (v.target_snapshot !== true) {
    for (const k of [...TARGET_SNAPSHOT_KEYS, 'target_snapshot_size']) if (own[k] !== undefined) at([...path, k], 'needs target_snapshot = true');
    return undefined;
  }
  if (target.kind === 'remote') {
    // the server decides: retention and size from [defaults] do not apply, the job's own are errors
    for (const k of [...TARGET_SNAPSHOT_KEYS.filter((x) => x !== 'history_verify_every'), 'target_snapshot_size']) {
      if (own[k] !== undefined) at([...path, k], "a remote target's server keeps its snapshots by its own [server.target_snapshot] policy (target_snapshot = true only asks): remove this key");
    }
    return { keep: 1, retention: {} };
  }
  if (v.keep !== undefined && v.keep_last !== undefined) at([...path, own.keep !== undefined ? 'keep' : 'keep_last'], 'keep is an alias of keep_last: set one of them');
  const n = (k: string) => v[k] as number | undefined;
  const retention: Retention = Object.fromEntries(Object.entries({
    keepLast: n('keep_last') ?? n('keep'), keepHourly: n('keep_hourly'), keepDaily: n('keep_daily'),
    keepWeekly: n('keep_weekly'), keepMonthly: n('keep_monthly'),
  }).filter(([, x]) => x !== undefined));
  return {
    size: v.target_snapshot_size as string | undefined, keep: retention.keepLast ?? 1, retention,
    poolMaxFill: n('pool_max_fill'), historyVerifyEvery: n('history_verify_every'),
  };
}

/** Keys that only mean something with target_snapshot = true. */
const TARGET_SNAPSHOT_KEYS = ['keep', 'keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'history_verify_every'];

function hooksOf(v: Table): Hooks {
  return { pre_run: v.pre_run as string[] | undefined, post_run: v.post_run as string[] | undefined,
    on_failure: v.on_failure as string[] | undefined, timeout: (v.hook_timeout as number) ?? DEFAULT_HOOK_TIMEOUT };
}

/** The job, or BlkError CONFIG listing the jobs that exist. */
export function findJob(cfg: Config, name: string): JobConfig {
  const job = cfg.jobs.find((j) => j.name === name);
  if (!job) {
    const p = cfg.jobsAt;
    throw new BlkError(ExitCode.CONFIG, `${cfg.file}:${p.line}:${p.col}: jobs.${name}: no such job (defined: ${cfg.jobs.map((j) => j.name).join(', ')})`);
  }
  return job;
}
