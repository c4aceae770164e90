// `blkdelta check JOB | --all`: a Nagios/Icinga plugin (monitoring-plugins conventions). Prints
// "BLKDELTA OK|WARNING|CRITICAL|UNKNOWN - text | perfdata" and exits 0/1/2/3, bad arguments
// included (3). Reads only the state dir (and the config when it can): safe as the monitoring user.
import type { CommandModule } from 'yargs';
import { BlkError, describe, type ExitCode } from '../errors.js';
import { DEFAULT_THRESHOLDS, loadConfig, type Config, type Thresholds } from '../jobs/config.js';
import { Status, evaluateJob, formatCheck, type JobCheck } from '../jobs/check.js';
import { stillRunning } from '../jobs/proc.js';
import { readJobState, recordedJobs, type ReadResult } from '../jobs/state.js';
import { readVerifyRecord } from '../jobs/history-record.js';
import { parseDuration } from '../units.js';
import { cli, out } from './context.js';
import { configOption } from './config-option.js';

interface Args {
  job?: string; all?: boolean; config: string; 'state-dir'?: string;
  'warning-age'?: string; 'critical-age'?: string; 'max-duration'?: string;
}

const EPILOGUE = `EXIT STATUS (monitoring plugin codes)
    0  OK        last run succeeded and is recent enough
    1  WARNING   last success older than the warning age, a run going longer than max duration,
                 or a refused run
    2  CRITICAL  last run failed or was killed, target dirty, snapshot not removed, or last
                 success older than the critical age (or none)
    3  UNKNOWN   no record, unreadable or corrupt state, or bad arguments`;

/** Bad arguments: "BLKDELTA UNKNOWN - ..." on stdout and exit 3, as plugins must. */
function unknown(msg: string): never {
  out(`BLKDELTA UNKNOWN - ${msg}`);
  cli.exitCode = Status.UNKNOWN;
  throw new BlkError(Status.UNKNOWN as ExitCode, msg);
}

export const checkCommand: CommandModule<object, Args> = {
  command: 'check [job]',
  describe: 'monitoring plugin: judge the last results of a job (or --all) for Nagios/Icinga',
  builder: (y) =>
    configOption(y)
      .positional('job', { type: 'string', describe: 'job name' })
      .option('all', { type: 'boolean', describe: 'every job of the config (or every record in --state-dir)' })
      .option('state-dir', { type: 'string', describe: 'read records here (default: state_dir of the config)' })
      .option('warning-age', { alias: 'w', type: 'string', describe: 'WARNING when the last success is older (36h, 2d, 90m, seconds)' })
      .option('critical-age', { alias: 'c', type: 'string', describe: 'CRITICAL when the last success is older' })
      .option('max-duration', { type: 'string', describe: 'WARNING when a run has been going on longer' })
      .fail((msg, err) => unknown(err ? describe(err) : msg))
      .example('blkdelta check tools', 'thresholds from the job config')
      .example('blkdelta check tools -w 26h -c 2d', 'explicit thresholds')
      .example('blkdelta check --all --state-dir /var/lib/blkdelta', 'without reading the config')
      .epilogue(EPILOGUE) as never,
  handler: (argv) => {
    if (!argv.all === !argv.job) unknown('name one job, or use --all');
    const override = thresholdArgs(argv);
    const cfg = configFor(argv);
    const stateDir = argv['state-dir'] ?? cfg!.stateDir;
    const names = argv.all ? jobNames(cfg, stateDir) : [argv.job!];
    if (cfg && argv.job && !cfg.jobs.some((j) => j.name === argv.job)) unknown(`no job ${argv.job} in ${cfg.file}`);
    const now = new Date();
    const checks = names.map((name): JobCheck => {
      const read = readJobState(stateDir, name);
      return evaluateJob(name, read, thresholdsFor(name, cfg, read, override), now, stillRunning, readVerifyRecord(stateDir, name));
    });
    const { text, status } = formatCheck(checks);
    out(text);
    cli.exitCode = status;
  },
};

function thresholdArgs(a: Args): Partial<Thresholds> {
  const parse = (v: string | undefined, opt: string) => {
    if (v === undefined) return undefined;
    try { return parseDuration(v); } catch (err) { return unknown(`${opt}: ${(err as Error).message}`); }
  };
  const t = { warningAge: parse(a['warning-age'], '--warning-age'), criticalAge: parse(a['critical-age'], '--critical-age'), maxDuration: parse(a['max-duration'], '--max-duration') };
  return Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined));
}

/** The config; with --state-dir an unreadable config is fine (thresholds come from the records). */
function configFor(a: Args): Config | undefined {
  try {
    return loadConfig(a.config);
  } catch (err) {
    if (a['state-dir']) return undefined;
    return unknown(`${describe(err)} (or give --state-dir)`);
  }
}

function jobNames(cfg: Config | undefined, stateDir: string): string[] {
  if (cfg) return cfg.jobs.map((j) => j.name);
  try {
    const names = recordedJobs(stateDir);
    return names.length ? names : unknown(`no records in ${stateDir}`);
  } catch (err) {
    return unknown(`cannot read state dir ${stateDir}: ${describe(err)}`);
  }
}

/** Options, then the job's config, then what the last run recorded, then the defaults. */
function thresholdsFor(name: string, cfg: Config | undefined, read: ReadResult, o: Partial<Thresholds>): Thresholds {
  const job = cfg?.jobs.find((j) => j.name === name);
  const recorded = read.kind === 'ok' ? read.state.runs[0]?.thresholds : undefined;
  const fromJob = job ? { warningAge: job.warningAge, criticalAge: job.criticalAge, maxDuration: job.maxDuration } : recorded;
  return { ...DEFAULT_THRESHOLDS, ...fromJob, ...o };
}
