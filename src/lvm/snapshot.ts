// The source snapshot lifecycle as a disposable: withSourceSnapshot(spec, signal, fn).
//
//   check spec; find the origin VG/LV
//   remove stale snapshots of this job (tags blkdelta + blkdelta-source + blkdelta-job:<job>), say so
//   create <lv>-blkdelta-<job>-<stamp> (COW with -L/-l, or thin with -kn); check it
//   run fn(device, signal') where signal' also aborts when the poller (--snapshot-max-fill) sees
//     an invalid or over-full snapshot; check the snapshot again after fn, even when fn failed
//     (a read from an overflowed snapshot fails with EIO: the real cause is the overflow)
//   finally: remove it, retrying (lvremove fails while the device is still open)
//
// Interruption: SIGINT/SIGTERM abort `signal`; fn returns, the finally removes the snapshot.
// SIGKILL leaves the snapshot behind, tagged: the next run of the job removes it. A removal that
// fails after retries is thrown (SNAPSHOT, naming the LV), or, when the run already failed, logged
// as an error and recorded in the report next to the run's own error. Memory: a few lvs rows.
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import {
  TAG_OWNER, TAG_SOURCE, activateArgv, checkJobName, cowSnapshotArgv, jobTag, lvmNameProblem, sizeArgs,
  snapshotName, thinSnapshotArgv,
} from './argv.js';
import { LvmError, findLv, listLvs, removeOwned, runLvm } from './lvm.js';
import { ownSnapshots, snapshotFill, snapshotKind, snapshotProblem, type LvRow } from './report.js';

export interface SourceSnapshotSpec {
  vg: string;
  lv: string;
  job: string;
  /** COW size: "10G" or "20%ORIGIN". Without it a thin origin gets a thin snapshot, others 20%ORIGIN. */
  size?: string;
  /** Abort early when a COW snapshot is fuller than this (percent, polled during fn). */
  maxFillPct?: number;
  /** Per lvm command (default 60 s). */
  timeoutMs?: number;
  /** Fill poll interval (default 2 s). */
  pollMs?: number;
  retryDelaysMs?: readonly number[];
}

/** What the result record says about the snapshot. */
export interface SnapshotReport {
  vg: string;
  origin: string;
  job: string;
  name: string;
  kind: 'cow' | 'thin' | '';
  device: string;
  createdAt: string;
  removed: boolean;
  /** COW fill in percent at the last check (null: thin or never checked). */
  fillPct: number | null;
  staleRemoved: string[];
  /** Why the snapshot could not be removed (the run failed). */
  removeError?: string;
}

export const DEFAULT_COW_SIZE = '20%ORIGIN';
const reports = new WeakMap<object, SnapshotReport>();

/** The snapshot report attached to an error thrown by withSourceSnapshot, if any. */
export function snapshotReportOf(err: unknown): SnapshotReport | undefined {
  return typeof err === 'object' && err !== null ? reports.get(err) : undefined;
}

/** SNAPSHOT_OVERFLOW; early: the --snapshot-max-fill limit stopped the run before an overflow. */
function overflowError(problem: string, cause?: unknown, early = false): BlkError {
  const what = early ? 'the run was stopped part-way' : 'data read from it is torn';
  return new BlkError(ExitCode.SNAPSHOT_OVERFLOW,
    `${problem}: ${what}, the target is NOT consistent; rerun with a larger --snapshot-size`, { cause });
}

function checkSpec(s: SourceSnapshotSpec): void {
  const p = lvmNameProblem(s.vg, 'VG') ?? lvmNameProblem(s.lv, 'LV');
  if (p) throw new BlkError(ExitCode.USAGE, `--snapshot ${s.vg}/${s.lv}: ${p}`);
  checkJobName(s.job);
  if (s.size !== undefined) sizeArgs(s.size);
  const m = s.maxFillPct;
  if (m !== undefined && !(Number.isFinite(m) && m > 0 && m <= 100)) {
    throw new BlkError(ExitCode.USAGE, `--snapshot-max-fill must be a percentage in (0, 100], got ${m}`);
  }
}

async function vgRows(s: SourceSnapshotSpec): Promise<LvRow[]> {
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
  const thin = s.size === undefined && (origin.pool !== '' || origin.attr.thin);
  const size = s.size ?? DEFAULT_COW_SIZE;
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

/** Polls the snapshot's fill; aborts `ctl` with SNAPSHOT_OVERFLOW when it is invalid or over the limit. */
function startPoller(s: SourceSnapshotSpec, name: string, ctl: AbortController, report: SnapshotReport) {
  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> = Promise.resolve();
  let stopped = false;
  const tick = async () => {
    try {
      const row = await findLv(s.vg, name, s.timeoutMs);
      if (row) report.fillPct = snapshotFill(row);
      const problem = row ? snapshotProblem(row, s.maxFillPct) : `snapshot ${s.vg}/${name} disappeared`;
      if (problem) ctl.abort(overflowError(problem, undefined, !row?.attr.invalid));
    } catch (err) {
      log.warn(`cannot check snapshot fill: ${(err as Error).message}`);
    }
    if (!stopped && !ctl.signal.aborted) timer = setTimeout(() => (inflight = tick()), s.pollMs ?? 2_000);
  };
  timer = setTimeout(() => (inflight = tick()), s.pollMs ?? 2_000);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await inflight;
  };
}

/** Runs fn on the snapshot with the checks before, during and after. */
async function runChecked<T>(s: SourceSnapshotSpec, row: LvRow, signal: AbortSignal,
  fn: (device: string, signal: AbortSignal) => Promise<T>, report: SnapshotReport): Promise<T> {
  const before = snapshotProblem(row);
  if (before) throw overflowError(before);
  const monitor = new AbortController();
  const stop = s.maxFillPct !== undefined && report.kind === 'cow' ? startPoller(s, row.name, monitor, report) : null;
  let value: T | undefined;
  let fnErr: unknown;
  let failed = false;
  try {
    value = await fn(row.path, AbortSignal.any([signal, monitor.signal]));
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
  fn: (device: string, signal: AbortSignal) => Promise<T>): Promise<{ value: T; report: SnapshotReport }> {
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
    signal.throwIfAborted();
    const now = new Date();
    report.name = snapshotName(spec.vg, spec.lv, spec.job, now, 'source');
    const row = await create(spec, origin, report.name);
    Object.assign(report, { kind: snapshotKind(row) ?? '', device: row.path, createdAt: now.toISOString() });
    log.info(`created ${report.kind} snapshot ${spec.vg}/${row.name} of ${spec.vg}/${spec.lv}`);
    return { value: await removeAfter(spec, row, report, () => runChecked(spec, row, signal, fn, report)), report };
  } catch (err) {
    if (typeof err === 'object' && err !== null) reports.set(err, report);
    throw err;
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
