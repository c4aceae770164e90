// `blkdelta status [JOB] [--json]`: the last results of every job (or one) as a table; --json
// prints the records themselves, and a running run's `progress` {phase, bytesDone, bytesTotal,
// rateBps, etaS}. Reads only the state dir; a killed run shows as "killed", its duration ending
// at its last sign of life (the record's `updated`).
import { BlkError, ExitCode, describe, exitStatusText } from '../errors.js';
import { log } from '../log.js';
import { findJob, loadConfig, type Config } from '../jobs/config.js';
import { stillRunning } from '../locks/proc.js';
import { readJobState, recordedJobs, type ReadResult, type RunRecord } from '../jobs/state.js';
import { formatBytes, formatAge } from '../units.js';
import { type Command, out, outJson } from './context.js';
import { configOption } from './config-option.js';

interface Args { job?: string; json?: boolean; config: string; 'state-dir'?: string; history?: number }

export const statusCommand: Command<Args> = {
  command: 'status [job]',
  describe: 'show the last results of the jobs (or one job) from the state dir',
  builder: (y) =>
    configOption(y)
      .positional('job', { type: 'string', describe: 'only this job' })
      .option('json', { type: 'boolean', describe: 'print the records as JSON' })
      .option('history', { alias: 'n', type: 'number', describe: 'show the last N runs of each job (default 1)' })
      .option('state-dir', { type: 'string', describe: 'read records here (default: state_dir of the config)' })
      .example('blkdelta status', 'last result of every job')
      .example('blkdelta status tools -n 10', 'the last ten runs of job tools')
      .epilogue(exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.CONFIG, ExitCode.IO])) as never,
  handler: (argv) => {
    const n = historyArg(argv.history);
    const cfg = argv['state-dir'] ? undefined : loadConfig(argv.config);
    const stateDir = argv['state-dir'] ?? cfg!.stateDir;
    if (cfg && argv.job) findJob(cfg, argv.job); // an unknown name is a config error, not "never run"
    const names = argv.job ? [argv.job] : jobNames(cfg, stateDir);
    const reads = names.map((name) => ({ name, read: readJobState(stateDir, name) }));
    if (argv.json) outJson({ jobs: reads.map(jsonOf) });
    else printTable(['JOB', 'OUTCOME', 'START', 'DURATION', 'COMPARED', 'CHANGED', 'SENT', 'TARGET', 'LAST SUCCESS', 'PROGRESS', 'ERROR'], reads.flatMap(({ name, read }) => rowsOf(name, read, n)));
    return unreadable(reads);
  },
};

/** -n N: a whole number of runs, 1 or more. */
function historyArg(n: number | undefined): number {
  if (n === undefined) return 1;
  if (!Number.isSafeInteger(n) || n < 1) throw new BlkError(ExitCode.USAGE, `--history ${n}: expected a whole number of runs, 1 or more`);
  return n;
}

/** IO when a record could not be read or is corrupt: the output shows it, stderr and the status say it. */
function unreadable(reads: { name: string; read: ReadResult }[]): number {
  const bad = reads.flatMap(({ name, read }) => (read.kind === 'unreadable' || read.kind === 'corrupt' ? [`${name}: ${read.kind}, ${read.reason}`] : []));
  for (const b of bad) log.error(`record of job ${b}`);
  return bad.length ? ExitCode.IO : ExitCode.OK;
}

function jobNames(cfg: Config | undefined, stateDir: string): string[] {
  if (cfg) return cfg.jobs.map((j) => j.name);
  try {
    return recordedJobs(stateDir);
  } catch (err) {
    throw new BlkError(ExitCode.IO, `cannot read state dir ${stateDir}: ${describe(err)}`, { cause: err });
  }
}

function jsonOf({ name, read }: { name: string; read: ReadResult }) {
  if (read.kind !== 'ok') return { job: name, problem: read.kind, path: read.path, reason: 'reason' in read ? read.reason : undefined };
  const runs = read.state.runs.map((r) => ({ ...r, killed: r.outcome === 'running' && !stillRunning(r.process) }));
  const now = runs[0]?.outcome === 'running' && !runs[0].killed ? runs[0] : undefined;
  return { job: name, progress: now?.progress, lastSuccess: read.state.lastSuccess, runs, lastRefused: read.refused, counters: read.state.counters };
}

function rowsOf(name: string, read: ReadResult, n: number): string[][] {
  if (read.kind === 'missing') return [[name, 'never run', '', '', '', '', '', '', '', '', '']];
  if (read.kind !== 'ok') return [[name, read.kind, '', '', '', '', '', '', '', '', read.reason]];
  const last = read.state.lastSuccess?.end ?? '';
  return read.state.runs.slice(0, n).map((r) => rowOf(r, last));
}

function rowOf(r: RunRecord, lastSuccess: string): string[] {
  const running = r.outcome === 'running';
  const alive = running && stillRunning(r.process);
  const waiting = r.progress?.phase === 'waiting';
  const outcome = alive ? `${waiting ? 'waiting' : 'running'} (pid ${r.process.pid})` : running ? 'killed' : r.outcome;
  const b = r.bytes;
  return [r.job, outcome, r.start.replace(/\.\d+Z$/, 'Z'), formatAge(durationOf(r, alive)), b ? formatBytes(b.compared) : '',
    b ? formatBytes(b.changed) : '', b ? formatBytes(b.sent) : '', r.targetState, lastSuccess.replace(/\.\d+Z$/, 'Z'),
    alive ? progressText(r) : '',
    [r.error, ...(r.warnings ?? [])].filter(Boolean).join('; ') + (r.snapshot && !r.snapshot.removed ? ` [snapshot ${r.snapshot.name} left]` : '') + incrementalNote(r)];
}

/** " [incremental, read 4.2 MiB + 4.2 MiB, base pinned 1 MiB]" or " [full compare: why]". */
function incrementalNote(r: RunRecord): string {
  const inc = r.incremental;
  if (!inc) return '';
  const pinned = inc.pinnedBytes !== undefined ? `, base pinned ${formatBytes(inc.pinnedBytes)}` : '';
  const read = r.bytes?.readSource !== undefined ? `, read ${formatBytes(r.bytes.readSource)} + ${formatBytes(r.bytes.readTarget ?? 0)}` : '';
  return inc.kind === 'full' ? ` [full compare: ${inc.reason}${read}]` : ` [incremental${read}${pinned}]`;
}

/** Seconds: finished runs their own; a live one up to now; a killed one up to its last sign of life. */
function durationOf(r: RunRecord, alive: boolean): number {
  if (r.outcome !== 'running') return r.durationS ?? 0;
  const from = Date.parse(r.progress?.phase === 'waiting' ? r.queued ?? r.start : r.start);
  const to = alive ? Date.now() : Date.parse(r.updated ?? r.start);
  return Math.max(0, (to - from) / 1000);
}

/** "compare 42% 3.4 MiB/s ETA 1m 10s" for a live run. */
export function progressText(r: RunRecord): string {
  const p = r.progress;
  if (!p) return '';
  if (p.phase === 'waiting') return 'waiting for a slot';
  if (!p.bytesTotal) return p.phase;
  const pct = Math.floor((p.bytesDone / p.bytesTotal) * 100);
  const eta = p.etaS === null ? '' : ` ETA ${formatAge(p.etaS)}`;
  return `${p.phase} ${pct}% of ${formatBytes(p.bytesTotal)} ${formatBytes(p.rateBps)}/s${eta}`;
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === head.length - 1 ? 0 : r[i]!.length))));
  for (const r of [head, ...rows]) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}
