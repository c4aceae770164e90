// The bench's paired baselines (table E's cold cat, the full copy's dd) count the pair with the median ratio (bench/cache.ts medianBy).
import test from 'ava';
import { medianBy, type ColdPair } from '../bench/cache.js';
import type { SyncRun } from '../bench/measure.js';

const pair = (syncMs: number, catMs: number): ColdPair => ({ run: { wallMs: syncMs } as SyncRun, catMs });

const rows: [string, ColdPair[], number][] = [
  ['one pair', [pair(5, 1)], 0],
  ['three pairs, median first', [pair(3, 2), pair(10, 1), pair(1, 1)], 0],
  ['three pairs, median last (by ratio, not by wall)', [pair(12, 12), pair(2, 1), pair(3, 2)], 2],
  ['two pairs: the lower ratio', [pair(4, 1), pair(2, 1)], 1],
  ['equal ratios: the middle one as given (a stable sort)', [pair(2, 1), pair(4, 2), pair(6, 3)], 1],
];
for (const [name, pairs, want] of rows) {
  test(`medianBy the sync/cat ratio: ${name}`, (t) => {
    t.is(medianBy(pairs, (p) => p.run.wallMs / p.catMs), pairs[want]);
  });
}

test('medianBy: no items is a RangeError, not undefined', (t) => {
  t.throws(() => medianBy([], (n: number) => n), { instanceOf: RangeError });
});
