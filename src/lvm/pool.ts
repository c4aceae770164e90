// Thin pools: how full the pool behind an LV is, and whether that is over a limit. Pure: callers
// pass the lvs rows of the VG (lvm.ts listLvs), so a guard and a watcher share one reading.
//
// Why it matters: a thin snapshot pins every block its origin rewrites, and a pool that fills
// makes the origin's own writes fail (ENOSPC, or queued for 60 s then failed). blkdelta holds a
// snapshot only while the pool stays below pool_max_fill, on the source and on the target.
import type { LvRow } from './report.js';

/** Default pool_max_fill in percent: refuse, or abort, at or above it. */
export const DEFAULT_POOL_MAX_FILL = 90;

export interface PoolFill {
  vg: string;
  /** The thin pool's LV name. */
  pool: string;
  /** Data and metadata fill in percent (null when lvs did not say: inactive pool). */
  data: number | null;
  metadata: number | null;
}

/** The pool behind a thin LV (a thin volume or thin snapshot), or null when lv is not thin. */
export function poolOf(rows: readonly LvRow[], lv: LvRow): PoolFill | null {
  if (lv.pool === '') return null;
  const p = rows.find((r) => r.vg === lv.vg && r.name === lv.pool);
  return { vg: lv.vg, pool: lv.pool, data: p?.dataPercent ?? null, metadata: p?.metadataPercent ?? null };
}

/**
 * Why a pool is too full to hold a snapshot ("thin pool vg0/pool data is 91.2% full, at or above
 * pool_max_fill 90%"), or null when it is below the limit on both data and metadata. A fill lvs
 * does not report is taken as a problem: a guard that cannot read fails closed.
 */
export function poolProblem(p: PoolFill, maxFillPct: number): string | null {
  const id = `thin pool ${p.vg}/${p.pool}`;
  for (const [what, v] of [['data', p.data], ['metadata', p.metadata]] as const) {
    if (v === null) return `${id}: lvs reports no ${what} fill (is the pool active?)`;
    if (v >= maxFillPct) return `${id} ${what} is ${v}% full, at or above pool_max_fill ${maxFillPct}%`;
  }
  return null;
}
