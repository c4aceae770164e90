// Which kept copies of a target to keep and which to prune: a pure function of the copies (their
// data times and states), the Retention rules and, with pool_max_fill, the fill of the thin pool.
//
//   points = good copies (not torn) + the live target when it holds a good run's data,
//            newest data first (ties: the larger id first, so the verdicts never depend on order in)
//   keep: the live target, a pending copy, the newest good copy (never pruned);
//         keep_last: the newest N points;
//         keep_hourly/daily/weekly/monthly: the newest point of each of the newest N UTC
//         hours/days/ISO weeks/months that have a point (restic's and sanoid's bucket rule);
//   a torn copy (overflowed COW) is pruned: it is no copy of anything;
//   any other copy is an "extra": pruned without pool_max_fill; with it, kept as space allows,
//   and while the pool is at or above the limit the oldest extra is pruned (the caller removes
//   it, reads the pool again, and asks again: how much a copy frees is only known afterwards).
// `now` plays no part: a copy's data time in the future (clock skew) or a clock set years ahead
// changes no verdict, so a wrong clock cannot empty the history. All times are UTC: DST is irrelevant.
/**
 * Retention of kept copies (job keys and [server.target_snapshot]): keep_last newest copies, and
 * the newest copy in each of the last keep_hourly hours, keep_daily days, keep_weekly weeks and
 * keep_monthly months (UTC). 0 or absent: that rule keeps nothing. `keep` is an alias of keepLast.
 */
export interface Retention {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}


export interface CopyPoint {
  /** The copy's id (its LV name). */
  id: string;
  /** Time of the data it holds (ms since the epoch), null when unknown (then `created` is used). */
  dataTime: number | null;
  /** When the copy was made (ms). */
  created: number;
  /** Taken by a run that has not (yet) succeeded: the last good copy of a torn target. */
  pending?: boolean;
  /** An overflowed COW snapshot: unreadable as a copy. */
  torn?: boolean;
  /** The live target itself (listed as a point, never pruned). */
  live?: boolean;
}

export type KeepReason = 'live' | 'pending' | 'newest' | 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'space';
export type PruneReason = 'torn' | 'unkept' | 'pool';

export interface Verdict {
  id: string;
  keep: boolean;
  /** Why it is kept (every rule that keeps it), or the one reason it goes. */
  reasons: Array<KeepReason | PruneReason>;
}

/** The pool behind the copies and its limit; fill null (unreadable) counts as over the limit. */
export interface PoolPressure {
  fillPct: number | null;
  maxFillPct: number;
}

/** keep_last when no rule is set (the old `keep` default). */
export const DEFAULT_KEEP_LAST = 1;

const BUCKETS: ReadonlyArray<[keyof Retention, KeepReason, (d: Date) => string]> = [
  ['keepHourly', 'hourly', (d) => d.toISOString().slice(0, 13)],
  ['keepDaily', 'daily', (d) => d.toISOString().slice(0, 10)],
  ['keepWeekly', 'weekly', isoWeek],
  ['keepMonthly', 'monthly', (d) => d.toISOString().slice(0, 7)],
];

/** One verdict per copy, in the order given; see the header. */
export function selectRetention(copies: readonly CopyPoint[], r: Retention, pool?: PoolPressure): Verdict[] {
  const reasons = new Map<string, Array<KeepReason | PruneReason>>(copies.map((c) => [c.id, []]));
  const add = (c: CopyPoint, why: KeepReason | PruneReason) => reasons.get(c.id)!.push(why);
  const points = copies.filter((c) => !c.torn).sort(newestFirst);
  for (const c of copies) {
    if (c.torn) add(c, 'torn');
    if (c.live) add(c, 'live');
    if (c.pending && !c.torn) add(c, 'pending');
  }
  const newest = points.find((c) => !c.live);
  if (newest) add(newest, 'newest');
  const last = anyRule(r) ? r.keepLast ?? 0 : DEFAULT_KEEP_LAST;
  points.slice(0, last).forEach((c) => add(c, 'last'));
  for (const [key, why, bucketOf] of BUCKETS) keepPerBucket(points, r[key] ?? 0, bucketOf, (c) => add(c, why));
  const extras = points.filter((c) => reasons.get(c.id)!.length === 0);
  if (pool) markExtras(extras, pool, add);
  else extras.forEach((c) => add(c, 'unkept'));
  return copies.map((c) => {
    const why = reasons.get(c.id)!;
    return { id: c.id, keep: !why.some(isPrune), reasons: why };
  });
}

/** With pool_max_fill: extras stay while the pool is below it; over it the oldest one goes. */
function markExtras(extras: CopyPoint[], pool: PoolPressure, add: (c: CopyPoint, why: KeepReason | PruneReason) => void): void {
  const over = pool.fillPct === null || pool.fillPct >= pool.maxFillPct;
  extras.forEach((c, i) => add(c, over && i === extras.length - 1 ? 'pool' : 'space'));
}

function keepPerBucket(points: CopyPoint[], n: number, bucketOf: (d: Date) => string, keep: (c: CopyPoint) => void): void {
  let last: string | undefined;
  let kept = 0;
  for (const c of points) {
    if (kept >= n) return;
    const b = bucketOf(new Date(timeOf(c)));
    if (b === last) continue;
    last = b;
    kept++;
    keep(c);
  }
}

const isPrune = (x: string): boolean => x === 'torn' || x === 'unkept' || x === 'pool';
const anyRule = (r: Retention): boolean =>
  [r.keepLast, r.keepHourly, r.keepDaily, r.keepWeekly, r.keepMonthly].some((v) => v !== undefined);
const timeOf = (c: CopyPoint): number => c.dataTime ?? c.created;

function newestFirst(a: CopyPoint, b: CopyPoint): number {
  return timeOf(b) - timeOf(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

/** ISO 8601 week of a UTC date: "2026-W48" (the year is the week's, not the date's). */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day); // the Thursday of this week decides its year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** Checks a Retention's numbers (whole, 0..1000); returns the reason or null. */
export function retentionProblem(r: Retention): string | null {
  for (const [k, v] of Object.entries(r)) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 1000)) return `${k.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`)} must be a whole number from 0 to 1000, got ${v}`;
  }
  return null;
}
