// The source snapshot lifecycle as a disposable: withSourceSnapshot(spec, signal, fn).
//
//   check spec; find the origin VG/LV
//   remove stale snapshots of this job (tags blkdelta + blkdelta-source + blkdelta-job:<job>), say so
//   thin snapshot: refuse (SNAPSHOT, nothing created) when the thin pool's data or metadata fill
//     is at or above pool_max_fill
//   create <lv>-blkdelta-<job>-<stamp> (COW with -L/-l, or thin with -kn); check it
//   run fn(device, signal') where signal' also aborts when the poller (held.ts: every pollMs,
//     1 s, `dmsetup status` of the snapshot's dm devices, lvs when that cannot tell) sees an
//     invalid or over-full COW snapshot (--snapshot-max-fill) or, for a thin snapshot, its pool
//     at or above pool_max_fill or failed (SNAPSHOT_OVERFLOW: the snapshot is then removed at
//     once, so that the origin's own writes get the pool's space back); check the snapshot again
//     after fn, even when fn failed (a read from an overflowed snapshot fails with EIO: the
//     real cause is the overflow)
//   finally: remove it, retrying (lvremove fails while the device is still open)
//
// Interruption: SIGINT/SIGTERM abort `signal`; fn returns, the finally removes the snapshot.
// SIGKILL leaves the snapshot behind, tagged: the next run of the job removes it. A removal that
// fails after retries is thrown (SNAPSHOT, naming the LV), or, when the run already failed, logged
// as an error and recorded in the report next to the run's own error. Memory: a few lvs rows.
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import {
  DEFAULT_COW_SIZE, TAG_OWNER, TAG_SOURCE, activateArgv, checkJobName, checkPercent, cowSnapshotArgv, jobTag, lvmNameProblem, sizeArgs,
  snapshotName, thinSnapshotArgv,
} from './argv.js';
import { LvmError, findLv, listLvs, removeOwned, runLvm } from './lvm.js';
import { heldProblem, overflowError, startPoller } from './held.js';
import { DEFAULT_POOL_MAX_FILL, poolOf, poolProblem } from './pool.js';
import { ownSnapshots, snapshotFill, snapshotKind, snapshotProblem, type LvRow } from './report.js';
import { attachSnapshotReport, type SnapshotReport } from './snapshot-report.js';

export interface SourceSnapshotSpec {
  vg: string;
  lv: string;
  job: string;
  /** COW size: "10G" or "20%ORIGIN". Without it a thin origin gets a thin snapshot, others cowSize. */
  size?: string;
  /** COW size of a snapshot of a non-thin origin when `size` is not given (default 20%ORIGIN). */
  cowSize?: string;
  /** Abort early when a COW snapshot is fuller than this (percent, polled during fn). */
  maxFillPct?: number;
  /** pool_max_fill: refuse / abort a thin snapshot when its pool is this full (default 90). */
  poolMaxFillPct?: number;
  /** Per lvm command (default 60 s). */
  timeoutMs?: number;
  /** Fill poll interval (default 1 s). */
  pollMs?: number;
  retryDelaysMs?: readonly number[];
  /** The VG's rows as the caller listed them just before, nothing changed since (saves an lvs). */
  rows?: readonly LvRow[];
}

export { attachSnapshotReport, snapshotReportOf, type SnapshotReport } from './snapshot-report.js'; // its home: light, for a client that only reads a report
export { DEFAULT_COW_SIZE, checkPercent }; // their home is lvm/argv.ts (light, for the server's start-up and the command line)

export { heldProblem }; // its home is lvm/held.ts (the watch during a run)
function checkSpec(s: SourceSnapshotSpec): void {
  const p = lvmNameProblem(s.vg, 'VG') ?? lvmNameProblem(s.lv, 'LV');
  if (p) throw new BlkError(ExitCode.USAGE, `--snapshot ${s.vg}/${s.lv}: ${p}`);
  checkJobName(s.job);
  if (s.size !== undefined) sizeArgs(s.size);
  if (s.cowSize !== undefined) sizeArgs(s.cowSize);
  checkPercent('--snapshot-max-fill', s.maxFillPct);
  checkPercent('--pool-max-fill', s.poolMaxFillPct);
}

/** Whether create() makes a thin snapshot: no explicit COW size and a thin origin. */
function makesThin(s: SourceSnapshotSpec, origin: LvRow): boolean {
  return s.size === undefined && (origin.pool !== '' || origin.attr.thin);
}

/**
 * Why a thin snapshot of `origin` must not be created (its pool at or above pool_max_fill), or
 * null. Pure: the VG's rows in. A COW snapshot keeps its copies outside the pool: no pool check.
 */
export function poolGuard(rows: readonly LvRow[], origin: LvRow, thin: boolean, maxFillPct = DEFAULT_POOL_MAX_FILL): string | null {
  const fill = thin ? poolOf(rows, origin) : null;
  const problem = fill ? poolProblem(fill, maxFillPct) : null;
  return problem && `cannot snapshot ${origin.vg}/${origin.name}: ${problem}; nothing was created (free space in the pool, or raise pool_max_fill)`;
}

async function vgRows(s: SourceSnapshotSpec): Promise<LvRow[]> {
  if (s.rows) return [...s.rows];
  try {
    return await listLvs([s.vg], s.timeoutMs);
  } catch (err) {
    if (err instanceof LvmError && /not found/i.test(err.stderr)) {
      throw new BlkError(ExitCode.SOURCE, `source volume group ${s.vg} not found (lvs: ${err.stderr})`, { cause: err });
    }
    throw err;
  }
}

async function removeStale(s: SourceSnapshotSpec, rows: LvRow[]): Promise<string[]> {
  const removed: string[] = [];
  for (const row of ownSnapshots(rows, { role: 'source', job: s.job })) {
    const id = `${row.vg}/${row.name}`;
    if (row.attr.open) throw new BlkError(ExitCode.LOCKED, `snapshot ${id} of job ${s.job} is open: is another run of this job active?`);
    await removeOwned(row, s);
    log.warn(`removed stale snapshot ${id} (made ${row.time}) left by an earlier run of job ${s.job}`);
    removed.push(row.name);
  }
  return removed;
}

async function create(s: SourceSnapshotSpec, origin: LvRow, name: string): Promise<LvRow> {
  const tags = [TAG_OWNER, TAG_SOURCE, jobTag(s.job)];
  const thin = makesThin(s, origin);
  const size = s.size ?? s.cowSize ?? DEFAULT_COW_SIZE;
  if (!thin && s.size === undefined) log.info(`no --snapshot-size: using ${size} for the COW snapshot of ${s.vg}/${s.lv}`);
  const argv = thin ? thinSnapshotArgv({ ...s, name, tags, active: true }) : cowSnapshotArgv({ ...s, name, size, tags });
  try {
    await runLvm(argv, s.timeoutMs);
  } catch (err) {
    const half = await findLv(s.vg, name, s.timeoutMs).catch(() => null);
    if (half) await removeOwned(half, s).catch((e) => log.error((e as Error).message));
    throw new BlkError(ExitCode.SNAPSHOT, `cannot create snapshot of ${s.vg}/${s.lv}: ${(err as Error).message}`, { cause: err });
  }
  let row = await findLv(s.vg, name, s.timeoutMs);
  if (row && !row.attr.active) {
    await runLvm(activateArgv(s.vg, name), s.timeoutMs);
    row = await findLv(s.vg, name, s.timeoutMs);
  }
  if (!row) throw new BlkError(ExitCode.SNAPSHOT, `snapshot ${s.vg}/${name} was created but lvs does not show it`);
  return row;
}

/** Runs fn on the snapshot with the checks before, during and after. */
async function runChecked<T>(s: SourceSnapshotSpec, row: LvRow, signal: AbortSignal,
  fn: (device: string, signal: AbortSignal, report: Readonly<SnapshotReport>) => Promise<T>, report: SnapshotReport): Promise<T> {
  const before = snapshotProblem(row);
  if (before) throw overflowError(before);
  const monitor = new AbortController();
  const watch = report.kind === 'thin' || (s.maxFillPct !== undefined && report.kind === 'cow');
  const stop = watch ? startPoller(s, row, report.kind, monitor, report) : null;
  let value: T | undefined;
  let fnErr: unknown;
  let failed = false;
  try {
    value = await fn(row.path, AbortSignal.any([signal, monitor.signal]), report);
  } catch (err) {
    [fnErr, failed] = [err, true];
  } finally {
    await stop?.();
  }
  const after = await findLv(s.vg, row.name, s.timeoutMs).catch((err: Error) => {
    if (!failed) throw new BlkError(ExitCode.SNAPSHOT, `cannot check snapshot ${s.vg}/${row.name} after the sync, so the copy is unconfirmed: ${err.message}`, { cause: err });
    log.warn(`cannot check snapshot ${s.vg}/${row.name} after the failed sync: ${err.message}`);
    return row;
  });
  if (after) report.fillPct = snapshotFill(after);
  const problem = after ? snapshotProblem(after) : `snapshot ${s.vg}/${row.name} disappeared during the run`;
  if (problem) throw overflowError(problem, fnErr);
  if (monitor.signal.aborted) throw monitor.signal.reason;
  if (failed) throw fnErr;
  return value as T;
}

/**
 * Creates a tagged snapshot of spec.vg/spec.lv, runs fn(snapshotDevice, signal) and removes the
 * snapshot whatever happens. Returns fn's value and the report; a thrown error carries the
 * report too (snapshotReportOf). The caller holds the job's lock: two runs of one job would race.
 */
export async function withSourceSnapshot<T>(spec: SourceSnapshotSpec, signal: AbortSignal,
  fn: (device: string, signal: AbortSignal, report: Readonly<SnapshotReport>) => Promise<T>): Promise<{ value: T; report: SnapshotReport }> {
  checkSpec(spec);
  const report: SnapshotReport = {
    vg: spec.vg, origin: spec.lv, job: spec.job, name: '', kind: '', device: '', createdAt: '',
    removed: false, fillPct: null, staleRemoved: [],
  };
  try {
    const rows = await vgRows(spec);
    const origin = rows.find((r) => r.name === spec.lv);
    if (!origin) throw new BlkError(ExitCode.SOURCE, `logical volume ${spec.vg}/${spec.lv} not found`);
    report.staleRemoved = await removeStale(spec, rows);
    const full = poolGuard(rows, origin, makesThin(spec, origin), spec.poolMaxFillPct);
    if (full) throw new BlkError(ExitCode.SNAPSHOT, full);
    signal.throwIfAborted();
    const now = new Date();
    report.name = snapshotName(spec.vg, spec.lv, spec.job, now, 'source');
    const row = await create(spec, origin, report.name);
    Object.assign(report, { kind: snapshotKind(row) ?? '', device: row.path, createdAt: now.toISOString() });
    log.info(`created ${report.kind} snapshot ${spec.vg}/${row.name} of ${spec.vg}/${spec.lv}`);
    return { value: await removeAfter(spec, row, report, () => runChecked(spec, row, signal, fn, report)), report };
  } catch (err) {
    throw attachSnapshotReport(err, report);
  }
}

/** Runs body, then removes the snapshot; a failed removal fails the run (or joins its error). */
async function removeAfter<T>(s: SourceSnapshotSpec, row: LvRow, report: SnapshotReport, body: () => Promise<T>): Promise<T> {
  let value: T;
  try {
    value = await body();
  } catch (err) {
    await remove(s, row, report).catch((e: Error) => log.error(e.message));
    throw err;
  }
  await remove(s, row, report);
  return value;
}

async function remove(s: SourceSnapshotSpec, row: LvRow, report: SnapshotReport): Promise<void> {
  try {
    await removeOwned(row, s);
  } catch (err) {
    report.removeError = (err as Error).message;
    throw err;
  }
  report.removed = true;
  log.info(`removed snapshot ${s.vg}/${row.name}`);
}
