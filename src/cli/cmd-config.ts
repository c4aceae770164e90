// `blkdelta config check`: validate the jobs config without running anything; every problem is
// printed as FILE:LINE:COL: key: what is wrong.
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { loadConfig, type JobConfig } from '../jobs/config.js';
import { tornCopyRisk } from '../jobs/sync-job.js';
import { unrunnableHooks } from '../jobs/hooks.js';
import { log } from '../log.js';
import { formatAge } from '../units.js';
import { type Command, out } from './context.js';
import { configOption } from './config-option.js';

interface Args { config: string; action: string }

function hooksText(h: JobConfig['hooks']): string {
  const names = (['pre_run', 'post_run', 'on_failure'] as const).filter((n) => h[n]);
  return names.length ? `; hooks ${names.join(', ')} (timeout ${formatAge(h.timeout)})` : '';
}

export const configCommand: Command<Args> = {
  command: 'config <action>',
  describe: 'check the jobs config file (blkdelta config check)',
  builder: (y) =>
    configOption(y)
      .positional('action', { choices: ['check'], describe: 'check: validate and list the jobs' })
      .example('blkdelta config check', 'validate /etc/blkdelta/blkdelta.toml')
      .example('blkdelta config check --config ./new.toml', 'validate another file')
      .epilogue(exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.CONFIG])) as never,
  handler: (argv) => {
    let cfg;
    try {
      cfg = loadConfig(argv.config);
    } catch (err) {
      if (!(err instanceof BlkError)) throw err;
      process.stderr.write(err.message + '\n'); // one problem per line, unlike the log
      return err.code;
    }
    out(`${cfg.file}: OK, ${cfg.jobs.length} job${cfg.jobs.length === 1 ? '' : 's'}; state_dir ${cfg.stateDir}, max_concurrent ${cfg.maxConcurrent}, wait_timeout ${formatAge(cfg.waitTimeout)}`);
    for (const j of cfg.jobs) {
      const snap = (j.snapshot ? `, snapshot ${j.snapshot.lv}` : '') + (j.targetSnapshot ? `, target snapshots (${j.target.kind === 'remote' ? 'by the server\'s policy' : `keep ${j.targetSnapshot.keep}`})` : '');
      out(`  ${j.name}: ${j.sourceText} -> ${j.targetText}${snap}, block ${j.blockSize}${j.verify ? ', verify' : ''}; warn ${formatAge(j.warningAge)}, crit ${formatAge(j.criticalAge)}${hooksText(j.hooks)}`);
      const torn = tornCopyRisk(j);
      if (torn) log.warn(`job ${j.name}: ${torn}`);
      for (const h of unrunnableHooks(j.hooks)) log.warn(`job ${j.name}: ${h}`);
    }
  },
};
