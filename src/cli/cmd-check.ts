// `blkdelta check JOB | --all`: a Nagios/Icinga plugin (monitoring-plugins conventions). Prints
// "BLKDELTA OK|WARNING|CRITICAL|UNKNOWN - text | perfdata" and exits 0/1/2/3, bad arguments
// included (3). Reads only the state dir (and the config when it can): safe as the monitoring user.
import { BlkError, describe, type ExitCode } from '../errors.js';
import { DEFAULT_THRESHOLDS, loadConfig, type Config, type Thresholds } from '../jobs/config.js';
import { Status, evaluateJob, formatCheck, parseRange, type JobCheck, type Range } from '../jobs/check.js';
import { stillRunning } from '../locks/proc.js';
import { readJobState, recordedJobs, type ReadResult } from '../jobs/state.js';
import { readVerifyRecord } from '../jobs/history-record.js';
import { parseDuration } from '../units.js';
import { type Command, out } from './context.js';
import { explainUsage } from './usage.js';
import { configOption } from './config-option.js';

interface Args {
  job?: string; all?: boolean; config: string; 'state-dir'?: string;
  'warning-age'?: string; 'critical-age'?: string; 'max-duration'?: string; timeout?: string;
}

const EPILOGUE = `EXIT STATUS (monitoring plugin codes)
    0  OK        last run succeeded and is recent enough
    1  WARNING   last success older than the warning age, a run going longer than max duration,
                 or a refused run
    2  CRITICAL  last run failed or was killed, target dirty, snapshot not removed, or last
                 success older than the critical age (or none)
    3  UNKNOWN   no record, unreadable or corrupt state, or bad arguments`;

/** A failure already printed as the plugin's UNKNOWN line (main() only logs it and exits 3). */
class PluginUnknown extends BlkError {
  constructor(msg: string) {
    super(Status.UNKNOWN as ExitCode, msg);
  }
}

/** Bad arguments or unreadable state: "BLKDELTA UNKNOWN - ..." on stdout and exit 3, as plugins must. */
function unknown(msg: string): never {
  out(`BLKDELTA UNKNOWN - ${msg}`);
  throw new PluginUnknown(msg);
}

export const checkCommand: Command<Args> = {
  command: 'check [job]',
  describe: 'monitoring plugin: judge the last results of a job (or --all) for Nagios/Icinga',
  builder: (y) =>
    configOption(y)
      .positional('job', { type: 'string', describe: 'job name' })
      .option('all', { type: 'boolean', describe: 'every job of the config (or every record in --state-dir)' })
      .option('state-dir', { type: 'string', describe: 'read records here (default: state_dir of the config)' })
      .option('warning-age', { alias: 'w', type: 'string', describe: 'WARNING when the last success is older: 36h, 2d, 90m, seconds, or the range ~:36h' })
      .option('critical-age', { alias: 'c', type: 'string', describe: 'CRITICAL when the last success is older (same forms); not below the warning age' })
      .option('max-duration', { type: 'string', describe: 'WARNING when a run has been going on longer' })
      .option('timeout', { alias: 't', type: 'string', describe: 'UNKNOWN when reading the records took longer than this (seconds or 10s, 1m)' })
      .fail((msg, err) => {
        if (err instanceof PluginUnknown) throw err;
        const yargsMsg = !err || err.name === 'YError' ? err?.message ?? msg : undefined;
        return unknown(yargsMsg !== undefined ? explainUsage(yargsMsg, { args: process.argv.slice(2), spec: 'check [job]' }) : describe(err));
      })
      .example('blkdelta check tools', 'thresholds from the job config')
      .example('blkdelta check tools -w 26h -c 2d', 'explicit thresholds')
      .example('blkdelta check --all --state-dir /var/lib/blkdelta', 'without reading the config')
      .epilogue(EPILOGUE) as never,
  handler: (argv) => {
    const started = Date.now();
    try {
      const limit = argv.timeout === undefined ? undefined : durationOf(argv.timeout, '--timeout');
      const status = checkJobs(argv);
      if (limit !== undefined && Date.now() - started > limit * 1000) unknown(`the check took longer than --timeout ${argv.timeout}`);
      return status;
    } catch (err) {
      if (err instanceof PluginUnknown) throw err;
      return unknown(describe(err));
    }
  },
};

function checkJobs(argv: Args): Status {
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
  return status;
}

/** A duration option's seconds, or UNKNOWN naming the option. */
function durationOf(v: string, opt: string): number {
  try {
    return parseDuration(v);
  } catch (err) {
    return unknown(`${opt}: ${(err as Error).message}`);
  }
}

/**
 * An age threshold: a duration, or a plugin range that alerts above a limit (`36h`, `~:36h`,
 * `0:36h`). An age only grows, so ranges alerting below a value or inside one are refused.
 */
export function ageThreshold(v: string, opt: string): number {
  let r: Range;
  try {
    r = parseRange(v, parseDuration);
  } catch (err) {
    return unknown(`${opt} ${v}: ${(err as Error).message}`);
  }
  if (r.inside || r.start > 0 || r.end === Infinity) {
    return unknown(`${opt} ${v}: an age alerts when it grows above a limit; use a duration such as 36h (or ~:36h)`);
  }
  return r.end;
}

function thresholdArgs(a: Args): Partial<Thresholds> {
  const age = (v: string | undefined, opt: string) => (v === undefined ? undefined : ageThreshold(v, opt));
  const t = { warningAge: age(a['warning-age'], '--warning-age'), criticalAge: age(a['critical-age'], '--critical-age'), maxDuration: age(a['max-duration'], '--max-duration') };
  if (t.warningAge !== undefined && t.criticalAge !== undefined && t.warningAge > t.criticalAge) {
    unknown(`--warning-age ${a['warning-age']} is above --critical-age ${a['critical-age']}: the warning must come first`);
  }
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
  let names: string[];
  try {
    names = recordedJobs(stateDir);
  } catch (err) {
    return unknown(`cannot read state dir ${stateDir}: ${describe(err)}`);
  }
  return names.length ? names : unknown(`no records in ${stateDir}`);
}

/** Options, then the job's config, then what the last run recorded, then the defaults. */
function thresholdsFor(name: string, cfg: Config | undefined, read: ReadResult, o: Partial<Thresholds>): Thresholds {
  const job = cfg?.jobs.find((j) => j.name === name);
  const recorded = read.kind === 'ok' ? read.state.runs[0]?.thresholds : undefined;
  const fromJob = job ? { warningAge: job.warningAge, criticalAge: job.criticalAge, maxDuration: job.maxDuration } : recorded;
  return { ...DEFAULT_THRESHOLDS, ...fromJob, ...o };
}
