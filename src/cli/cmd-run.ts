// `blkdelta run JOB` / `blkdelta run --all`: run configured jobs end to end (src/jobs/run.ts).
// --all runs every job in file order, goes on after a failed job, stops when interrupted, and
// exits with the first failed job's code.
import fs from 'node:fs';
import path from 'node:path';
import { BlkError, ExitCode, describe, exitStatusText } from '../errors.js';
import { log } from '../log.js';
import { findJob, loadConfig } from '../jobs/config.js';
import { runJob, throwIfFailed } from '../jobs/run.js';
import { verifyIfDue } from '../history/schedule.js';
import { parseDuration } from '../units.js';
import { cli, type Command } from './context.js';
import { configOption } from './config-option.js';

interface Args { job?: string; all?: boolean; config: string; 'wait-timeout'?: string; 'metrics-file'?: string }

export const RUN_EXIT_CODES = [
  ExitCode.OK, ExitCode.USAGE, ExitCode.CONFIG, ExitCode.LOCKED, ExitCode.BUSY, ExitCode.SOURCE, ExitCode.TARGET_REFUSED,
  ExitCode.SIZE_MISMATCH, ExitCode.IO, ExitCode.REMOTE, ExitCode.HOST_KEY, ExitCode.AUTH, ExitCode.PERMISSION,
  ExitCode.SNAPSHOT, ExitCode.SNAPSHOT_OVERFLOW, ExitCode.VERIFY_FAILED, ExitCode.INTERRUPTED,
];

export const runCommand: Command<Args> = {
  command: 'run [job]',
  describe: 'run a configured job (lock, slot, snapshot, sync, record), or every job with --all',
  builder: (y) =>
    configOption(y)
      .positional('job', { type: 'string', describe: 'job name ([jobs.NAME] in the config)' })
      .option('all', { type: 'boolean', describe: 'run every job, one after the other, in file order' })
      .option('wait-timeout', { type: 'string', describe: 'how long to wait for a free max_concurrent slot (e.g. 30m, 0 = not at all; default: wait_timeout)' })
      .option('metrics-file', { type: 'string', describe: 'Prometheus textfile to rewrite after the run (default: metrics_file)' })
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
    const opts = { signal: cli.abort.signal, waitTimeout, metricsFile: argv['metrics-file'] };
    if (!argv.all) {
      const job = findJob(cfg, argv.job!);
      const r = await runJob(cfg, job, opts);
      if (r.error === undefined) await verifyIfDue(cfg, job, cli.abort.signal);
      return throwIfFailed(r);
    }
    let code: number = ExitCode.OK;
    for (const job of cfg.jobs) {
      if (cli.abort.signal.aborted) break;
      const r = await runJob(cfg, job, opts);
      if (r.error === undefined) await verifyIfDue(cfg, job, cli.abort.signal);
      if (r.error === undefined) continue;
      if (r.record.exitCode === ExitCode.LOCKED) log.error(describe(r.error));
      if (code === ExitCode.OK) code = r.record.exitCode ?? ExitCode.INTERNAL;
    }
    return cli.abort.signal.aborted ? ExitCode.INTERRUPTED : code;
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

function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch (err) {
    throw new BlkError(ExitCode.USAGE, `--wait-timeout: ${(err as Error).message}`);
  }
}
