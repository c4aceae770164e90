// `blkdelta snapshots list|clean`: show and remove blkdelta's own LVM snapshots (tagged blkdelta).
// clean removes source snapshots only (left behind by a killed run); target snapshots are the last
// good copies and are pruned only by a successful run (--keep). An LV without the blkdelta tag is
// never shown as ours and never removed.
import type { Argv, CommandModule } from 'yargs';
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { log } from '../log.js';
import { checkJobName } from '../lvm/argv.js';
import { listLvs, removeOwned } from '../lvm/lvm.js';
import { jobOf, ownSnapshots, roleOf, snapshotFill, snapshotKind, type LvRow } from '../lvm/report.js';
import { out, outJson } from './context.js';

interface Args {
  job?: string;
  json?: boolean;
  vg?: string;
}

const jobOption = <T>(y: Argv<T>) => y
  .option('job', { type: 'string', describe: 'only the snapshots of this job' })
  .option('vg', { type: 'string', describe: 'only this volume group (default: all)' })
  .check((a) => { if (a.job !== undefined) checkJobName(String(a.job)); return true; });

function describeRow(r: LvRow) {
  return {
    vg: r.vg, name: r.name, origin: r.origin, role: roleOf(r), job: jobOf(r), kind: snapshotKind(r) ?? '',
    size: r.size, fillPct: snapshotFill(r), invalid: r.attr.invalid, active: r.attr.active, open: r.attr.open,
    pending: r.tags.includes('blkdelta-pending'), created: r.time, tags: r.tags,
  };
}

async function ours(a: Args, role?: 'source' | 'target'): Promise<LvRow[]> {
  return ownSnapshots(await listLvs(a.vg ? [a.vg] : []), { job: a.job, role });
}

const listCommand: CommandModule<object, Args> = {
  command: 'list',
  describe: "list blkdelta's snapshots (source snapshots of running or killed runs, target last-good copies)",
  builder: (y) => jobOption(y).option('json', { type: 'boolean', describe: 'print a JSON array' })
    .example('blkdelta snapshots list --job nightly', '') as never,
  handler: async (a) => {
    const rows = (await ours(a)).map(describeRow);
    if (a.json) return outJson({ snapshots: rows });
    if (!rows.length) return log.info('no blkdelta snapshots');
    for (const r of rows) {
      const state = r.invalid ? 'INVALID (overflowed)' : r.open ? 'open (in use)' : r.active ? 'active' : 'inactive';
      const fill = r.fillPct === null ? '' : ` ${r.fillPct.toFixed(2)}% full`;
      out(`${r.vg}/${r.name}  ${r.role}  job=${r.job}  origin=${r.origin}  ${r.kind}${fill}  ${state}${r.pending ? '  pending' : ''}  ${r.created}`);
    }
  },
};

const cleanCommand: CommandModule<object, Args> = {
  command: 'clean',
  describe: "remove blkdelta's source snapshots (left by killed runs); target copies are kept",
  builder: (y) => jobOption(y).example('blkdelta snapshots clean --job nightly', '') as never,
  handler: async (a) => {
    const failed: string[] = [];
    for (const row of await ours(a, 'source')) {
      const id = `${row.vg}/${row.name}`;
      if (row.attr.open) {
        log.error(`${id} is open: a run of job ${jobOf(row)} may be using it; not removed`);
        failed.push(id);
        continue;
      }
      try {
        await removeOwned(row);
        out(`removed ${id}`);
      } catch (err) {
        log.error((err as Error).message);
        failed.push(id);
      }
    }
    if (failed.length) throw new BlkError(ExitCode.SNAPSHOT, `could not remove ${failed.join(', ')}`);
  },
};

export const snapshotsCommand: CommandModule & { actions: string[] } = {
  actions: [listCommand, cleanCommand].map((c) => c.command as string),
  command: 'snapshots',
  describe: "list or remove blkdelta's own LVM snapshots",
  builder: (y) => y.command(listCommand).command(cleanCommand).demandCommand(1, 'name an action: list or clean')
    .epilogue(exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.SNAPSHOT])) as never,
  handler: () => undefined,
};
