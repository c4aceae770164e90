// `blkdelta status [JOB] [--json]`: the last results of every job (or one) as a table; --json
// prints the records themselves. Reads only the state dir; a killed run shows as "killed".
import { BlkError, ExitCode, describe, exitStatusText } from '../errors.js';
import { log } from '../log.js';
import { findJob, loadConfig, type Config } from '../jobs/config.js';
import { stillRunning } from '../jobs/proc.js';
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
    else printTable(['JOB', 'OUTCOME', 'START', 'DURATION', 'COMPARED', 'CHANGED', 'SENT', 'TARGET', 'LAST SUCCESS', 'ERROR'], reads.flatMap(({ name, read }) => rowsOf(name, read, n)));
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
  return { job: name, lastSuccess: read.state.lastSuccess, runs, lastRefused: read.refused };
}

function rowsOf(name: string, read: ReadResult, n: number): string[][] {
  if (read.kind === 'missing') return [[name, 'never run', '', '', '', '', '', '', '', '']];
  if (read.kind !== 'ok') return [[name, read.kind, '', '', '', '', '', '', '', read.reason]];
  const last = read.state.lastSuccess?.end ?? '';
  return read.state.runs.slice(0, n).map((r) => rowOf(r, last));
}

function rowOf(r: RunRecord, lastSuccess: string): string[] {
  const running = r.outcome === 'running';
  const outcome = running ? (stillRunning(r.process) ? `running (pid ${r.process.pid})` : 'killed') : r.outcome;
  const dur = running ? (Date.now() - Date.parse(r.start)) / 1000 : r.durationS ?? 0;
  const b = r.bytes;
  return [r.job, outcome, r.start.replace(/\.\d+Z$/, 'Z'), formatAge(dur), b ? formatBytes(b.compared) : '',
    b ? formatBytes(b.changed) : '', b ? formatBytes(b.sent) : '', r.targetState, lastSuccess.replace(/\.\d+Z$/, 'Z'),
    (r.error ?? '') + (r.snapshot && !r.snapshot.removed ? ` [snapshot ${r.snapshot.name} left]` : '')];
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === head.length - 1 ? 0 : r[i]!.length))));
  for (const r of [head, ...rows]) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}
