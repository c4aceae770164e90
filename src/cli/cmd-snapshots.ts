// `blkdelta snapshots list|clean`: show and remove blkdelta's own LVM snapshots (tagged blkdelta).
// list shows source snapshots, target copies and incremental bases (with whether the job's base
// record in --state-dir names them, and what the job's last replaced base pinned).
// clean removes source snapshots (left behind by a killed run) and bases no record names (left by
// an interrupted rotation); a base the job's record names (or whose record cannot be read) is kept
// unless --bases is given, since removing it makes the job's next run a full compare. Target
// snapshots are the last good copies and are pruned only by a successful run (--keep). An LV
// without the blkdelta tag is never shown as ours and never removed.
// Interrupted: the LVs removed so far are gone, the others stay. Memory: the lvs rows.
import type { Argv, CommandModule } from 'yargs';
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { log } from '../log.js';
import { checkJobName } from '../lvm/argv.js';
import { readBaseRecord } from '../lvm/base-record.js';
import { listLvs, removeOwned } from '../lvm/lvm.js';
import { jobOf, ownSnapshots, roleOf, snapshotFill, snapshotKind, type LvRow } from '../lvm/report.js';
import { out, outJson } from './context.js';
import { DEFAULT_STATE_DIR } from '../paths.js';


interface Args {
  job?: string;
  json?: boolean;
  vg?: string;
  'state-dir'?: string;
  bases?: boolean;
}

const jobOption = <T>(y: Argv<T>) => y
  .option('job', { type: 'string', describe: 'only the snapshots of this job' })
  .option('vg', { type: 'string', describe: 'only this volume group (default: all)' })
  .option('state-dir', { type: 'string', describe: `where the incremental jobs' base records are (default ${DEFAULT_STATE_DIR})` })
  .check((a) => { if (a.job !== undefined) checkJobName(String(a.job)); return true; });

/** What the job's base record says of a base LV: named by it (null: no readable record), and its last pinned bytes. */
export interface BaseState { recorded: boolean | null; pinnedBytes?: number; why?: string }

/** Pure: a base row against its job's record as readBaseRecord returned it. */
export function baseState(row: LvRow, read: ReturnType<typeof readBaseRecord>): BaseState {
  if (!read.record) return { recorded: null, why: read.why };
  const named = read.record.base?.name === row.name;
  return named && read.record.pinnedBytes !== undefined ? { recorded: true, pinnedBytes: read.record.pinnedBytes } : { recorded: named };
}

/**
 * Pure: what clean does with one of our LVs: remove it; skip it (a target copy: not clean's
 * business); keep it, saying why (a recorded base); busy (open: the clean fails naming it).
 */
export function cleanVerdict(row: LvRow, base: BaseState | undefined, removeBases: boolean): { action: 'remove' | 'skip' } | { action: 'keep' | 'busy'; why: string } {
  const id = `${row.vg}/${row.name}`;
  const role = roleOf(row);
  if (role !== 'source' && role !== 'base') return { action: 'skip' };
  if (row.attr.open) return { action: 'busy', why: `${id} is open: a run of job ${jobOf(row)} may be using it; not removed` };
  if (role === 'source' || removeBases || base?.recorded === false) return { action: 'remove' };
  const because = base?.recorded ? "the job's base record names it" : `its job's base record cannot be read (${base?.why ?? 'unknown'})`;
  return { action: 'keep', why: `kept base ${id} of job ${jobOf(row)}: ${because}; removing it makes the job's next run a full compare (--bases removes it)` };
}

function describeRow(r: LvRow, base?: BaseState) {
  return {
    vg: r.vg, name: r.name, origin: r.origin, role: roleOf(r), job: jobOf(r), kind: snapshotKind(r) ?? '',
    size: r.size, fillPct: snapshotFill(r), invalid: r.attr.invalid, active: r.attr.active, open: r.attr.open,
    pending: r.tags.includes('blkdelta-pending'), created: r.time, tags: r.tags,
    ...(base ? { recorded: base.recorded, ...(base.pinnedBytes !== undefined ? { pinnedBytes: base.pinnedBytes } : {}) } : {}),
  };
}

async function ours(a: Args): Promise<LvRow[]> {
  return ownSnapshots(await listLvs(a.vg ? [a.vg] : []), { job: a.job });
}

/** The base state of each base row (one record read per job). */
function baseStates(rows: readonly LvRow[], stateDir: string): Map<LvRow, BaseState> {
  const reads = new Map<string, ReturnType<typeof readBaseRecord>>();
  const out = new Map<LvRow, BaseState>();
  for (const r of rows.filter((x) => roleOf(x) === 'base')) {
    const job = jobOf(r);
    if (!reads.has(job)) reads.set(job, job ? readBaseRecord(stateDir, job) : { record: null, why: 'the LV names no job' });
    out.set(r, baseState(r, reads.get(job)!));
  }
  return out;
}

const textLine = (r: ReturnType<typeof describeRow>): string => {
  const state = r.invalid ? 'INVALID (overflowed)' : r.open ? 'open (in use)' : r.active ? 'active' : 'inactive';
  const fill = r.fillPct === null ? '' : ` ${r.fillPct.toFixed(2)}% full`;
  const base = r.role !== 'base' ? '' : r.recorded === true ? '  recorded' : r.recorded === false ? '  NOT recorded (left by an interrupted run)' : '  record unreadable';
  const pinned = r.pinnedBytes !== undefined ? `  last base pinned ${r.pinnedBytes} bytes` : '';
  return `${r.vg}/${r.name}  ${r.role}  job=${r.job}  origin=${r.origin}  ${r.kind}${fill}  ${state}${r.pending ? '  pending' : ''}${base}${pinned}  ${r.created}`;
};

const listCommand: CommandModule<object, Args> = {
  command: 'list',
  describe: "list blkdelta's snapshots (source snapshots of running or killed runs, target last-good copies, incremental bases)",
  builder: (y) => jobOption(y).option('json', { type: 'boolean', describe: 'print a JSON array' })
    .example('blkdelta snapshots list --job nightly', '') as never,
  handler: async (a) => {
    const rows = await ours(a);
    const bases = baseStates(rows, a['state-dir'] ?? DEFAULT_STATE_DIR);
    const described = rows.map((r) => describeRow(r, bases.get(r)));
    if (a.json) return outJson({ snapshots: described });
    if (!described.length) return log.info('no blkdelta snapshots');
    for (const r of described) out(textLine(r));
  },
};

const cleanCommand: CommandModule<object, Args> = {
  command: 'clean',
  describe: "remove blkdelta's source snapshots (left by killed runs) and bases no record names; target copies are kept",
  builder: (y) => jobOption(y)
    .option('bases', { type: 'boolean', describe: "also remove the bases the jobs' records name (their next runs are full compares)" })
    .example('blkdelta snapshots clean --job nightly', '') as never,
  handler: async (a) => {
    const rows = await ours(a);
    const bases = baseStates(rows, a['state-dir'] ?? DEFAULT_STATE_DIR);
    const failed: string[] = [];
    for (const row of rows) {
      const v = cleanVerdict(row, bases.get(row), !!a.bases);
      if (v.action === 'skip') continue;
      if (v.action === 'keep') log.warn(v.why);
      if (v.action === 'busy') {
        log.error(v.why);
        failed.push(`${row.vg}/${row.name}`);
      }
      if (v.action !== 'remove') continue;
      try {
        await removeOwned(row);
        out(`removed ${row.vg}/${row.name}`);
      } catch (err) {
        log.error((err as Error).message);
        failed.push(`${row.vg}/${row.name}`);
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
