// Retention selection (src/lvm/retention.ts): copies with data times in, verdicts out. Pure.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { isoWeek, retentionProblem, selectRetention, type CopyPoint, type PoolPressure } from '../src/lvm/retention.js';
import type { Retention } from '../src/server/policy.js';

const T = (iso: string) => Date.parse(iso);
/** A good copy named after its data time. */
const c = (iso: string, extra: Partial<CopyPoint> = {}): CopyPoint => ({ id: iso, dataTime: T(iso), created: T(iso) + 3_600_000, ...extra });

/** want: the ids kept, in input order; prune: the ids pruned with their reason. */
const sel = test.macro({
  exec(t: ExecutionContext, copies: CopyPoint[], r: Retention, pool: PoolPressure | undefined, want: { keep: string[]; prune: Record<string, string> }) {
    const v = selectRetention(copies, r, pool);
    t.deepEqual(v.filter((x) => x.keep).map((x) => x.id), want.keep);
    t.deepEqual(Object.fromEntries(v.filter((x) => !x.keep).map((x) => [x.id, x.reasons.join(',')])), want.prune);
    // the same copies in reverse order give the same verdicts (ties and order-in do not matter)
    const rev = selectRetention([...copies].reverse(), r, pool);
    t.deepEqual(rev.filter((x) => x.keep).map((x) => x.id).sort(), [...want.keep].sort());
  },
  title: (title) => title ?? '',
});

const nov = ['2026-11-27T12:00:00Z', '2026-11-27T11:30:00Z', '2026-11-27T11:00:00Z', '2026-11-26T23:00:00Z', '2026-11-25T10:00:00Z'].map((x) => c(x));
const ids = (cs: CopyPoint[]) => cs.map((x) => x.id);

test('no rule: keep_last 1 (the old keep default)', sel, nov, {}, undefined,
  { keep: [nov[0]!.id], prune: Object.fromEntries(ids(nov.slice(1)).map((i) => [i, 'unkept'])) });
test('keep_last 3: the three newest', sel, nov, { keepLast: 3 }, undefined,
  { keep: ids(nov.slice(0, 3)), prune: { [nov[3]!.id]: 'unkept', [nov[4]!.id]: 'unkept' } });
test('keep_last 0 still keeps the newest good copy', sel, nov, { keepLast: 0 }, undefined,
  { keep: [nov[0]!.id], prune: Object.fromEntries(ids(nov.slice(1)).map((i) => [i, 'unkept'])) });
test('keep_last huge keeps all', sel, nov, { keepLast: 1000 }, undefined, { keep: ids(nov), prune: {} });
test('keep_hourly 2: newest of each of the 2 newest hours (11:30 wins hour 11)', sel, nov, { keepHourly: 2 }, undefined,
  { keep: [nov[0]!.id, nov[1]!.id], prune: { [nov[2]!.id]: 'unkept', [nov[3]!.id]: 'unkept', [nov[4]!.id]: 'unkept' } });
test('keep_daily 3: one per UTC day, buckets without copies skipped', sel, nov, { keepDaily: 3 }, undefined,
  { keep: [nov[0]!.id, nov[3]!.id, nov[4]!.id], prune: { [nov[1]!.id]: 'unkept', [nov[2]!.id]: 'unkept' } });

const months = ['2026-12-01T00:30:00Z', '2026-11-30T23:59:59Z', '2026-11-02T00:00:00Z', '2026-10-31T23:00:00Z', '2026-09-15T12:00:00Z', '2025-12-31T00:00:00Z'].map((x) => c(x));
test('keep_monthly 4 across months and a year end', sel, months, { keepMonthly: 4 }, undefined,
  { keep: [months[0]!.id, months[1]!.id, months[3]!.id, months[4]!.id], prune: { [months[2]!.id]: 'unkept', [months[5]!.id]: 'unkept' } });
test('keep_monthly 10 reaches the previous year', sel, months, { keepMonthly: 10 }, undefined,
  { keep: [months[0]!.id, months[1]!.id, months[3]!.id, months[4]!.id, months[5]!.id], prune: { [months[2]!.id]: 'unkept' } });
// 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53; 2027-01-04 starts 2027-W01
const weeks = ['2027-01-04T01:00:00Z', '2027-01-03T23:00:00Z', '2026-12-28T00:00:00Z', '2026-12-27T23:00:00Z'].map((x) => c(x));
test('keep_weekly 3 across a year end (ISO weeks)', sel, weeks, { keepWeekly: 3 }, undefined,
  { keep: [weeks[0]!.id, weeks[1]!.id, weeks[3]!.id], prune: { [weeks[2]!.id]: 'unkept' } });
test('rules add up: keep_last 1 + keep_daily 2', sel, nov, { keepLast: 1, keepDaily: 2 }, undefined,
  { keep: [nov[0]!.id, nov[3]!.id], prune: { [nov[1]!.id]: 'unkept', [nov[2]!.id]: 'unkept', [nov[4]!.id]: 'unkept' } });

const live = { id: 'live', dataTime: T('2026-11-27T13:00:00Z'), created: 0, live: true };
test('the live target is a point: keep_last 2 = live + one copy', sel, [live, ...nov], { keepLast: 2 }, undefined,
  { keep: ['live', nov[0]!.id], prune: Object.fromEntries(ids(nov.slice(1)).map((i) => [i, 'unkept'])) });
test('the live target takes its hour: keep_hourly 2 keeps live (13h) and 12h only', sel, [live, ...nov], { keepHourly: 2 }, undefined,
  { keep: ['live', nov[0]!.id], prune: Object.fromEntries(ids(nov.slice(1)).map((i) => [i, 'unkept'])) });

const torn = c('2026-11-27T12:30:00Z', { torn: true });
test('a torn (overflowed) copy is pruned even when newest; the newest good one stays', sel, [torn, ...nov], { keepLast: 5 }, undefined,
  { keep: ids(nov), prune: { [torn.id]: 'torn' } });
const pending = c('2026-11-20T00:00:00Z', { pending: true });
test('a pending copy is never pruned, even when old', sel, [...nov, pending], { keepLast: 1 }, undefined,
  { keep: [nov[0]!.id, pending.id], prune: Object.fromEntries(ids(nov.slice(1)).map((i) => [i, 'unkept'])) });
test('a torn pending copy is pruned (torn wins)', sel, [c('2026-11-01T00:00:00Z', { pending: true, torn: true }), nov[0]!], {}, undefined,
  { keep: [nov[0]!.id], prune: { '2026-11-01T00:00:00Z': 'torn' } });

const ties = [c('2026-11-27T10:00:00Z', { id: 'b' }), c('2026-11-27T10:00:00Z', { id: 'a' }), c('2026-11-27T10:00:00Z', { id: 'c' })];
test('ties on data time: the larger id is the newer', sel, ties, { keepLast: 2 }, undefined, { keep: ['b', 'c'], prune: { a: 'unkept' } });
const unknown = [{ id: 'u', dataTime: null, created: T('2026-11-27T12:00:00Z') }, c('2026-11-27T11:00:00Z')];
test('an unknown data time sorts by creation time', sel, unknown, { keepLast: 1 }, undefined,
  { keep: ['u'], prune: { '2026-11-27T11:00:00Z': 'unkept' } });

// clock skew: a copy whose data time is ahead of the host clock, or a host clock years off
const future = c('2031-01-01T00:00:00Z');
test('a data time in the future is just the newest point', sel, [future, ...nov], { keepLast: 2 }, undefined,
  { keep: [future.id, nov[0]!.id], prune: Object.fromEntries(ids(nov.slice(1)).map((i) => [i, 'unkept'])) });
test('verdicts do not depend on the clock (no now input): daily 7 keeps every day bucket', sel, nov, { keepDaily: 7 }, undefined,
  { keep: [nov[0]!.id, nov[3]!.id, nov[4]!.id], prune: { [nov[1]!.id]: 'unkept', [nov[2]!.id]: 'unkept' } });

// pool_max_fill: extras stay as space allows; over the limit the oldest extra goes, one at a time
test('pool below the limit: extras kept as space allows', sel, nov, { keepLast: 2 }, { fillPct: 50, maxFillPct: 90 },
  { keep: ids(nov), prune: {} });
test('pool at the limit: the oldest extra goes', sel, nov, { keepLast: 2 }, { fillPct: 90, maxFillPct: 90 },
  { keep: ids(nov.slice(0, 4)), prune: { [nov[4]!.id]: 'pool' } });
test('pool over the limit never prunes what a rule keeps', sel, nov.slice(0, 2), { keepLast: 2 }, { fillPct: 99.9, maxFillPct: 90 },
  { keep: ids(nov.slice(0, 2)), prune: {} });
test('pool over the limit never prunes the newest good copy (keep_last 0)', sel, nov.slice(0, 1), { keepLast: 0 }, { fillPct: 100, maxFillPct: 90 },
  { keep: ids(nov.slice(0, 1)), prune: {} });
test('pool fill unreadable counts as over', sel, nov, { keepLast: 4 }, { fillPct: null, maxFillPct: 90 },
  { keep: ids(nov.slice(0, 4)), prune: { [nov[4]!.id]: 'pool' } });
test('pool over: a torn copy goes too, with the oldest extra', sel, [torn, ...nov.slice(0, 3)], { keepLast: 1 }, { fillPct: 95, maxFillPct: 90 },
  { keep: [nov[0]!.id, nov[1]!.id], prune: { [torn.id]: 'torn', [nov[2]!.id]: 'pool' } });
test('no copies: no verdicts', sel, [], { keepLast: 3 }, undefined, { keep: [], prune: {} });

test('verdict reasons name every rule that keeps a copy', (t) => {
  const [v] = selectRetention([nov[0]!], { keepLast: 1, keepDaily: 1, keepMonthly: 1 });
  t.deepEqual(v!.reasons, ['newest', 'last', 'daily', 'monthly']);
});

const week = test.macro({
  exec: (t: ExecutionContext, iso: string, want: string) => t.is(isoWeek(new Date(iso)), want),
  title: (_t, iso: string, want: string) => `ISO week of ${iso} is ${want}`,
});
test(week, '2026-11-27T12:00:00Z', '2026-W48');
test(week, '2027-01-03T23:59:59Z', '2026-W53');
test(week, '2027-01-04T00:00:00Z', '2027-W01');
test(week, '2024-12-30T00:00:00Z', '2025-W01');
test(week, '2021-01-03T00:00:00Z', '2020-W53');
test(week, '2026-03-29T01:30:00Z', '2026-W13'); // a DST change day in Europe: UTC only

const bad = test.macro({
  exec: (t: ExecutionContext, r: Retention, want: string | null) => t.is(retentionProblem(r), want),
  title: (_t, r: Retention, want: string | null) => `retention ${JSON.stringify(r)}: ${want ?? 'ok'}`,
});
test(bad, { keepLast: 0, keepDaily: 7 }, null);
test(bad, { keepLast: -1 }, 'keep_last must be a whole number from 0 to 1000, got -1');
test(bad, { keepHourly: 1.5 }, 'keep_hourly must be a whole number from 0 to 1000, got 1.5');
test(bad, { keepMonthly: 1001 }, 'keep_monthly must be a whole number from 0 to 1000, got 1001');
test(bad, { keepWeekly: Number.NaN }, 'keep_weekly must be a whole number from 0 to 1000, got NaN');
