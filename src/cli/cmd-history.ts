// `blkdelta history list|restore|verify|prune JOB`: the kept copies of a job's target
// (docs/history.md), here or, for a remote target, on its server. Each handler calls one function
// of src/history/ops.ts.
import type { Argv, CommandModule } from 'yargs';
import { ExitCode, exitStatusText } from '../errors.js';
import { findJob, loadConfig } from '../jobs/config.js';
import { historyList, historyPrune, historyRestore, historyVerify, throwIfDamaged, type HistoryPrune } from '../history/ops.js';
import { historyServer } from '../history/remote.js';
import type { HistoryEntry } from '../history/copies.js';
import { formatBytes } from '../units.js';
import { cli, out, outJson } from './context.js';
import { configOption } from './config-option.js';

interface Args { job: string; id?: string; dest?: string; json?: boolean; 'dry-run'?: boolean; config: string; rsh?: string; 'remote-cmd'?: string }

const jobArg = <T>(y: Argv<T>) => configOption(y).positional('job', { type: 'string', demandOption: true, describe: 'job name ([jobs.NAME] in the config)' })
  .option('rsh', { type: 'string', requiresArg: true, describe: "a remote target: reach its server with this command instead of the job's ssh settings" })
  .option('remote-cmd', { type: 'string', requiresArg: true, describe: 'a remote target: how to start blkdelta on its host (default: the job\'s remote_cmd, else blkdelta)' })
  .group(['rsh', 'remote-cmd'], 'Remote target (the copies are on its server):');
const load = (a: Args) => {
  const cfg = loadConfig(a.config);
  const job = findJob(cfg, a.job);
  return { cfg, job, server: historyServer(job, { rsh: a.rsh, remoteCmd: a['remote-cmd'] }) };
};

/** "keep_last 3, keep_daily 7": the server's retention, as prune prints it. */
function retentionText(r: NonNullable<HistoryPrune['server']>): string {
  const rules = Object.entries(r.retention).map(([k, n]) => `${k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())} ${String(n)}`);
  if (r.poolMaxFill !== undefined) rules.push(`pool_max_fill ${r.poolMaxFill}%`);
  return `retention of the server at ${r.host} ([server.target_snapshot]): ${rules.join(', ') || 'none'}`;
}

function line(e: HistoryEntry): string {
  const fp = e.fingerprint ? e.fingerprint.digest : '-';
  const size = e.size === null ? '-' : formatBytes(e.size);
  return [e.id.padEnd(40), (e.dataTime ?? 'unknown').padEnd(24), e.kind.padEnd(4), size.padStart(10), fp.padEnd(16), e.state].join('  ');
}

const listCommand: CommandModule<object, Args> = {
  command: 'list <job>',
  describe: 'the live target and its kept copies: id, data time, kind, size, fingerprint, state',
  builder: (y) => jobArg(y).option('json', { type: 'boolean', describe: 'print {version, copies: [...]} (fields: docs/history.md)' })
    .example('blkdelta history list db', '') as never,
  handler: async (a) => {
    const { job, server } = load(a);
    const entries = await historyList(job, server);
    if (a.json) return outJson({ copies: entries });
    out(['ID'.padEnd(40), 'DATA TIME'.padEnd(24), 'KIND', 'SIZE'.padStart(10), 'FINGERPRINT'.padEnd(16), 'STATE'].join('  '));
    for (const e of entries) out(line(e));
  },
};

const restoreCommand: CommandModule<object, Args> = {
  command: 'restore <job> <id> <dest>',
  describe: 'copy a kept copy to DEST (refused as any sync target would be), verified; the copy stays as it is',
  builder: (y) => jobArg(y).positional('id', { type: 'string', describe: 'copy id (history list)' })
    .positional('dest', { type: 'string', describe: 'device or image to write (same size as the copy); for a remote target also HOST:/path on its host' })
    .example('blkdelta history restore db db-blkdelta-tgt-db-20261124T020000Z /dev/vg0/db_restore', '') as never,
  handler: async (a) => {
    const { cfg, job, server } = load(a);
    const r = await historyRestore(cfg, job, a.id!, a.dest!, cli.abort.signal, server);
    const fp = r.fingerprintMatches ? 'matches the copy\'s fingerprint' : 'verified block by block (the copy has no fingerprint)';
    out(`restored ${r.copy} to ${r.dest}: ${formatBytes(r.bytesWritten)} written, ${fp}`);
  },
};

const verifyCommand: CommandModule<object, Args> = {
  command: 'verify <job> [id]',
  describe: 're-read each kept copy (or one) and compare it with its fingerprint; exit 3 names every damaged copy',
  builder: (y) => jobArg(y).positional('id', { type: 'string', describe: 'only this copy' })
    .option('json', { type: 'boolean', describe: 'print the results as JSON' })
    .example('blkdelta history verify db', 'every copy of job db') as never,
  handler: async (a) => {
    const { cfg, job, server } = load(a);
    const checks = await historyVerify(cfg, job, a.id, cli.abort.signal, server);
    if (a.json) outJson({ checks });
    else for (const c of checks) out(`${c.result.toUpperCase().padEnd(12)} ${c.id} (${c.lv}): ${c.detail}`);
    throwIfDamaged(job.name, checks);
  },
};

const pruneCommand: CommandModule<object, Args> = {
  command: 'prune <job>',
  describe: "apply the job's retention now (keep_* and pool_max_fill; a remote target: its server's); --dry-run shows it",
  builder: (y) => jobArg(y).option('dry-run', { alias: 'n', type: 'boolean', describe: 'show what would be removed, remove nothing' })
    .example('blkdelta history prune db --dry-run', '') as never,
  handler: async (a) => {
    const { cfg, job, server } = load(a);
    const r = await historyPrune(cfg, job, !!a['dry-run'], server);
    if (r.server) out(retentionText(r.server));
    for (const id of r.removed) out(`removed ${id}`);
    if (a['dry-run']) for (const v of r.verdicts) out(`${v.keep ? 'keep' : 'would remove'} ${v.id} (${v.reasons.join(', ')})`);
    out(`${r.kept.length} cop${r.kept.length === 1 ? 'y' : 'ies'} kept, ${r.removed.length} removed`);
  },
};

export const historyCommand: CommandModule & { actions: string[] } = {
  command: 'history',
  actions: [listCommand, restoreCommand, verifyCommand, pruneCommand].map((c) => c.command as string),
  describe: "list, restore, verify or prune a job's kept copies of its target (LVM target_snapshot)",
  builder: (y) => y.command(listCommand).command(restoreCommand).command(verifyCommand).command(pruneCommand)
    .demandCommand(1, 'name an action: list, restore, verify or prune')
    .epilogue(exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.DIFFERENT, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH,
      ExitCode.IO, ExitCode.REMOTE, ExitCode.HOST_KEY, ExitCode.AUTH, ExitCode.PERMISSION, ExitCode.SNAPSHOT, ExitCode.SNAPSHOT_OVERFLOW,
      ExitCode.CONFIG, ExitCode.LOCKED, ExitCode.BUSY, ExitCode.VERIFY_FAILED, ExitCode.INTERRUPTED])) as never,
  handler: () => undefined,
};
