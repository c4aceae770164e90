// `blkdelta run JOB` / `blkdelta run --all`: run configured jobs end to end (src/jobs/run.ts).
// Progress goes to stderr (a bar on a TTY, a line every 5 s otherwise; --no-progress to turn it
// off). --all runs every job in file order, goes on after a failed job, stops when interrupted,
// prints a summary table (stdout) and exits with the highest exit code of its jobs (130 when
// interrupted before its last job ended). --json prints {version, jobs: [record...]} instead of the table. After a good run
// a job's kept copies are verified when history_verify_every says it is due.
import fs from 'node:fs';
import path from 'node:path';
import { BlkError, ExitCode, describe, exitCodeOf, exitStatusText } from '../errors.js';
import { log } from '../log.js';
import { findJob, loadConfig, type Config, type JobConfig } from '../jobs/config.js';
import { runJob, type RunJobResult } from '../jobs/run.js';
import type { RunRecord } from '../jobs/state.js';
import { verifyIfDue } from '../history/schedule.js';
import { formatAge, formatBytes, parseDuration } from '../units.js';
import { cli, out, outJson, type Command } from './context.js';
import { configOption } from './config-option.js';
import { progressReporter } from './progress.js';

interface Args { job?: string; all?: boolean; config: string; 'wait-timeout'?: string; 'metrics-file'?: string; json?: boolean; progress: boolean }

export const RUN_EXIT_CODES = [
  ExitCode.OK, ExitCode.USAGE, ExitCode.CONFIG, ExitCode.LOCKED, ExitCode.BUSY, ExitCode.SOURCE, ExitCode.TARGET_REFUSED,
  ExitCode.SIZE_MISMATCH, ExitCode.IO, ExitCode.REMOTE, ExitCode.HOST_KEY, ExitCode.AUTH, ExitCode.PERMISSION,
  ExitCode.SNAPSHOT, ExitCode.SNAPSHOT_OVERFLOW, ExitCode.VERIFY_FAILED, ExitCode.HOOK, ExitCode.INTERRUPTED,
];

export const runCommand: Command<Args> = {
  command: 'run [job]',
  describe: 'run a configured job (lock, slot, hooks, snapshot, sync, record), or every job with --all',
  builder: (y) =>
    configOption(y)
      .positional('job', { type: 'string', describe: 'job name ([jobs.NAME] in the config)' })
      .option('all', { type: 'boolean', describe: 'run every job, one after the other, in file order; then print a summary' })
      .option('wait-timeout', { type: 'string', describe: 'how long to wait for a free max_concurrent slot (e.g. 30m, 0 = not at all; default: wait_timeout)' })
      .option('metrics-file', { type: 'string', describe: 'Prometheus textfile to rewrite at the start and end of each run (default: metrics_file)' })
      .option('json', { type: 'boolean', describe: 'print the result records as JSON on stdout: {version, jobs: [...]}' })
      .option('progress', { type: 'boolean', default: true, describe: 'progress on stderr (a bar on a TTY, a line every 5 s otherwise); --no-progress to disable' })
      .conflicts('all', 'job')
      .check((a) => {
        if (!a.all && !a.job) throw new BlkError(ExitCode.USAGE, 'name a job, or use --all');
        return true;
      })
      .example('blkdelta run tools', 'run job "tools" now')
      .example('blkdelta run --all --wait-timeout 0', 'every job once, failing fast if slots are busy')
      .epilogue(exitStatusText(RUN_EXIT_CODES)) as never,
  handler: async (argv) => {
    const waitTimeout = argv['wait-timeout'] === undefined ? undefined : durationArg(argv['wait-timeout']);
    if (argv['metrics-file'] !== undefined) checkMetricsDir(argv['metrics-file']);
    const cfg = loadConfig(argv.config);
    const jobs = argv.all ? cfg.jobs : [findJob(cfg, argv.job!)];
    const results: RunJobResult[] = [];
    for (const job of jobs) {
      if (cli.abort.signal.aborted) break;
      results.push(await runOne(cfg, job, argv, waitTimeout));
    }
    if (argv.json) outJson({ jobs: results.map((r) => r.record) });
    else if (argv.all) printSummary(results.map((r) => r.record));
    // a signal that came after the last job had ended (its record says how it ended) interrupted
    // nothing; one that skipped jobs did
    const skipped = results.length < jobs.length && cli.abort.signal.aborted;
    const failure = failureOf(results, argv.all) ?? (skipped ? cli.abort.signal.reason : undefined);
    if (failure === undefined) return ExitCode.OK;
    if (!argv.json) throw failure;
    log.error(describe(failure)); // stdout holds the records already: one JSON document, the failure in them
    return exitCodeOf(failure);
  },
};

/** --metrics-file must be writable where it points: refused before the run, not logged after it. */
function checkMetricsDir(file: string): void {
  const dir = path.dirname(path.resolve(file));
  let st;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    throw new BlkError(ExitCode.USAGE, `--metrics-file ${file}: directory ${dir} ${describe(err)}`, { cause: err });
  }
  if (!st.isDirectory()) throw new BlkError(ExitCode.USAGE, `--metrics-file ${file}: ${dir} is not a directory`);
}

async function runOne(cfg: Config, job: JobConfig, argv: Args, waitTimeout: number | undefined): Promise<RunJobResult> {
  const bar = progressReporter(argv.progress, `job ${job.name}: `);
  try {
    const r = await runJob(cfg, job, { signal: cli.abort.signal, waitTimeout, metricsFile: argv['metrics-file'], onProgress: bar.update });
    if (r.record.exitCode === ExitCode.LOCKED && argv.all) log.error(describe(r.error)); // the others were logged by runJob
    if (r.error === undefined) await verifyIfDue(cfg, job, cli.abort.signal);
    return r;
  } finally {
    bar.end();
  }
}

/** What the command fails with: the job's error, or for --all one naming the jobs that failed (the highest code). */
function failureOf(results: readonly RunJobResult[], all: boolean | undefined): unknown {
  if (!all) return results[0]?.error;
  const failed = results.filter((r) => r.error !== undefined);
  if (!failed.length) return undefined;
  const which = failed.map((r) => `${r.record.job} (exit ${r.record.exitCode})`).join(', ');
  return new BlkError(worstCode(results) as ExitCode, `${failed.length} of ${results.length} jobs did not succeed: ${which}`);
}

/** The highest exit code of the runs (0 when all succeeded; warnings exit 0). */
export function worstCode(results: readonly RunJobResult[]): number {
  return results.reduce((w, r) => Math.max(w, r.error === undefined ? ExitCode.OK : r.record.exitCode ?? ExitCode.INTERNAL), ExitCode.OK as number);
}

function printSummary(records: RunRecord[]): void {
  const head = ['JOB', 'OUTCOME', 'EXIT', 'DURATION', 'CHANGED', 'SENT', 'TARGET', 'PROBLEM'];
  const rows = records.map((r) => [r.job, r.outcome, String(r.exitCode ?? ''), formatAge(r.durationS ?? 0),
    r.bytes ? formatBytes(r.bytes.changed) : '', r.bytes ? formatBytes(r.bytes.sent) : '', r.targetState,
    [r.error, ...(r.warnings ?? [])].filter(Boolean).join('; ')]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new BlkError(ExitCode.USAGE, `--wait-timeout: ${(err as Error).message}`);
  }
}
