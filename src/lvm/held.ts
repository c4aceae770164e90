// Watching a held source snapshot: why it must not be held any longer, from one lvs of its VG
// (heldProblem, the checks before and after a run) or from `dmsetup status` of its own dm devices
// (dmHeldProblem, the poller's ticks), and the poller that aborts the run on a problem.
//
//   every pollMs (1 s):
//     dmsetup status --noflush <snapshot's dm device>  [<its pool's -tpool device> when thin]
//     parses and decides alone → abort on a problem, else next tick
//     anything unexpected (no dmsetup, exit ≠ 0, timeout, a line that does not parse, the device
//       gone, a state it does not judge) → this tick runs lvs of the VG and heldProblem instead
// So no overflow goes unseen: the dm tick only ever decides what lvs would (same errors, same
// exit code SNAPSHOT_OVERFLOW, same report figures: dm-status.ts rounds as lvs does), plus a thin
// pool lvs would call full or unreadable shown in its real state (failed, read-only, needs_check).
// Interruption: nothing to leave behind (reads only); the stop function waits for a tick in flight.
// Memory: a few lvs rows or dmsetup lines per tick.
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { dmName, dmStatusArgv, parseDmStatus, type DmStatus, type PoolStatus, type SnapshotStatus } from './dm-status.js';
import { listLvs, runLvm } from './lvm.js';
import { DEFAULT_POOL_MAX_FILL, poolOf, poolProblem, type PoolFill } from './pool.js';
import { snapshotFill, snapshotProblem, type LvRow } from './report.js';
import { poolDevices } from './thin-delta.js';

/** What the watch needs of the snapshot's spec (a SourceSnapshotSpec). */
export interface HeldSpec { vg: string; maxFillPct?: number; poolMaxFillPct?: number; timeoutMs?: number; pollMs?: number }
/** What the watch fills in of the snapshot's report (a SnapshotReport). */
export interface HeldReport { fillPct: number | null; pool?: { name: string; data: number | null; metadata: number | null } }

/** A dm tick never waits longer than this (one ioctl; a hung one falls back to lvs). */
export const DM_POLL_TIMEOUT_MS = 10_000;

/** SNAPSHOT_OVERFLOW; early: the --snapshot-max-fill limit stopped the run before an overflow. */
export function overflowError(problem: string, cause?: unknown, early = false): BlkError {
  const what = early ? 'the run was stopped part-way' : 'data read from it is torn';
  return new BlkError(ExitCode.SNAPSHOT_OVERFLOW,
    `${problem}: ${what}, the target is NOT consistent; rerun with a larger --snapshot-size`, { cause });
}

/** SNAPSHOT_OVERFLOW for a thin pool that crossed pool_max_fill while the snapshot was held. */
function poolOverflowError(problem: string): BlkError {
  return new BlkError(ExitCode.SNAPSHOT_OVERFLOW,
    `${problem}: the run was stopped part-way and the snapshot removed so that the origin keeps the pool's space; ` +
    'the target is NOT consistent; free space in the pool (lvextend) or raise pool_max_fill, then rerun');
}

/** SNAPSHOT_OVERFLOW for a thin pool that failed or turned read-only while the snapshot was held. */
function poolStateError(problem: string): BlkError {
  return new BlkError(ExitCode.SNAPSHOT_OVERFLOW,
    `${problem}: the run was stopped part-way and the snapshot removed; the target is NOT consistent; ` +
    'repair the pool (lvs -a, lvconvert --repair), then rerun');
}

/** The verdict on the snapshot's row (COW fill, invalid) and its pool's fill, filling the report. */
function judge(s: HeldSpec, row: LvRow, pool: PoolFill | null, report: HeldReport): BlkError | null {
  report.fillPct = snapshotFill(row);
  const cow = snapshotProblem(row, s.maxFillPct);
  if (cow) return overflowError(cow, undefined, !row.attr.invalid);
  if (!pool) return null;
  report.pool = { name: `${pool.vg}/${pool.pool}`, data: pool.data, metadata: pool.metadata };
  const full = poolProblem(pool, s.poolMaxFillPct ?? DEFAULT_POOL_MAX_FILL);
  return full ? poolOverflowError(full) : null;
}

/**
 * Why the snapshot must not be held any longer (from one lvs of its VG), or null: a COW snapshot
 * invalid or over --snapshot-max-fill, a thin snapshot's pool at or above pool_max_fill, or gone.
 */
export function heldProblem(s: HeldSpec, rows: readonly LvRow[], name: string, report: HeldReport): BlkError | null {
  const row = rows.find((r) => r.name === name);
  if (!row) return overflowError(`snapshot ${s.vg}/${name} disappeared`, undefined, true);
  return judge(s, row, poolOf(rows, row), report);
}

/** The dm devices a tick reads: the snapshot's own, and a thin one's pool (-tpool); null: lvs only. */
export function pollDevices(row: LvRow, kind: 'cow' | 'thin' | ''): string[] | null {
  if (kind === 'cow') return [dmName(row.vg, row.name)];
  if (kind === 'thin' && row.pool !== '') return [dmName(row.vg, row.name), poolDevices(row.vg, row.pool).tpool];
  return null;
}

/** The row as an lvs of this moment would show it, from the COW snapshot's dm status. */
function cowRow(row: LvRow, st: SnapshotStatus): LvRow {
  if (st.state === 'valid') return { ...row, snapPercent: st.fillPct };
  const raw = `${row.attr.raw.slice(0, 4)}I${row.attr.raw.slice(5)}`; // lvs: state I (invalid)
  return { ...row, snapPercent: 100, attr: { ...row.attr, raw, invalid: true, active: false } };
}

/** Why a thin pool's mode forbids holding the snapshot ("failed", "read-only"...), or null. */
export function poolStateProblem(pool: PoolFill, st: PoolStatus): string | null {
  const id = `thin pool ${pool.vg}/${pool.pool}`;
  if (st.state === 'Fail' || st.state === 'Error') return `${id} has failed (dmsetup status: ${st.state})`;
  if (st.state === 'out_of_data_space') return `${id} is out of data space`;
  if (st.state === 'ro') return `${id} is in read-only mode (a metadata error, or its metadata is full)`;
  return st.needsCheck ? `${id} is flagged needs_check (its metadata must be checked with thin_check)` : null;
}

/**
 * heldProblem from the dm statuses of pollDevices(row, kind), in order: a problem, null (none),
 * or undefined when they do not decide (unexpected targets, a failed merge, a thin LV that failed
 * in a healthy pool): the caller then asks lvs.
 */
export function dmHeldProblem(s: HeldSpec, row: LvRow, st: readonly DmStatus[], report: HeldReport): BlkError | null | undefined {
  const [own, pool] = st;
  if (own?.target === 'snapshot' && st.length === 1) return own.state === 'Merge failed' ? undefined : judge(s, cowRow(row, own), null, report);
  if (own?.target !== 'thin' || pool?.target !== 'thin-pool' || st.length !== 2) return undefined;
  const fill: PoolFill = { vg: row.vg, pool: row.pool, data: pool.data, metadata: pool.metadata };
  const broken = pool.data === null ? poolStateProblem(fill, pool) : null; // failed: no figures to judge
  if (broken) return poolStateError(broken);
  const problem = judge(s, row, fill, report);
  if (problem) return problem;
  const state = poolStateProblem(fill, pool);
  if (state) return poolStateError(state);
  return own.state === 'ok' ? null : undefined;
}

/** Polls the snapshot (and a thin one's pool); aborts `ctl` with SNAPSHOT_OVERFLOW on a problem. */
export function startPoller(s: HeldSpec, row: LvRow, kind: 'cow' | 'thin' | '', ctl: AbortController, report: HeldReport): () => Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<void> = Promise.resolve();
  let stopped = false;
  let warned = false;
  const fellBack = (why: string) => {
    (warned ? log.debug : log.warn)(`cannot read snapshot ${s.vg}/${row.name}'s fill with dmsetup (${why}): this poll uses lvs`);
    warned = true;
  };
  const tick = async () => {
    try {
      let problem = await dmTick(s, row, kind, report, fellBack);
      if (problem === undefined) problem = heldProblem(s, await listLvs([s.vg], s.timeoutMs), row.name, report);
      if (problem) ctl.abort(problem);
    } catch (err) {
      log.warn(`cannot check snapshot fill: ${(err as Error).message}`);
    }
    if (!stopped && !ctl.signal.aborted) timer = setTimeout(() => (inflight = tick()), s.pollMs ?? 1_000);
  };
  timer = setTimeout(() => (inflight = tick()), s.pollMs ?? 1_000);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await inflight;
  };
}

/** One tick read from dmsetup: the verdict, or undefined (said through fellBack) when lvs must decide. */
async function dmTick(s: HeldSpec, row: LvRow, kind: 'cow' | 'thin' | '', report: HeldReport,
  fellBack: (why: string) => void): Promise<BlkError | null | undefined> {
  const names = pollDevices(row, kind);
  if (!names) return undefined;
  let st: DmStatus[];
  try {
    const { stdout } = await runLvm(dmStatusArgv(names), Math.min(s.timeoutMs ?? DM_POLL_TIMEOUT_MS, DM_POLL_TIMEOUT_MS));
    st = parseDmStatus(stdout, names);
  } catch (err) {
    fellBack((err as Error).message);
    return undefined;
  }
  const verdict = dmHeldProblem(s, row, st, report);
  if (verdict === undefined) fellBack(`states ${st.map((x) => `${x.target} ${x.state}`).join(', ')}`);
  return verdict;
}
