// `snapshots list|clean` and incremental bases, as table tests on lvs rows: the role a row shows,
// what its job's base record says of it, and what clean does with it (remove, keep and say why,
// busy, not clean's business). The lvm side of clean is removeOwned, tested on real LVM elsewhere.
import test from 'ava';
import { baseState, cleanVerdict, type BaseState } from '../src/cli/cmd-snapshots.js';
import { parseLvs, roleOf, type LvRow } from '../src/lvm/report.js';
import type { BaseRecord } from '../src/lvm/base-record.js';

const lv = (name: string, tags: string, attr = 'Vwi---tz-k', origin = 'data'): LvRow =>
  parseLvs(JSON.stringify({ report: [{ lv: [{ vg_name: 'vg0', lv_name: name, lv_attr: attr, origin, pool_lv: 'pool', lv_tags: tags, lv_size: '1073741824' }] }] }))[0]!;

const base = lv('data-base-nightly', 'blkdelta,blkdelta-base,blkdelta-job:nightly');
const source = lv('data-snap', 'blkdelta,blkdelta-source,blkdelta-job:nightly', 'Vwi-a-tz-k');
const target = lv('backup-copy', 'blkdelta,blkdelta-target,blkdelta-job:nightly,blkdelta-of:backup', 'Vwi---tz-k', 'backup');
const foreign = lv('data-base-x', 'blkdelta-base,blkdelta-job:nightly');
const openBase = lv('data-base-nightly', 'blkdelta,blkdelta-base,blkdelta-job:nightly', 'Vwi-aotz-k');

test('roleOf: source, target, base; no blkdelta tag: nothing', (t) => {
  t.deepEqual([source, target, base, foreign].map(roleOf), ['source', 'target', 'base', '']);
});

const record = (name: string | null, pinnedBytes?: number): BaseRecord => ({
  version: 1, job: 'nightly', target: '/dev/backup/data', blockSize: 4096, madeAt: '2026-11-27T00:00:00.000Z',
  base: name === null ? null : { name, uuid: 'u', thinId: 3 }, ...(pinnedBytes !== undefined ? { pinnedBytes } : {}),
});
for (const [what, read, want] of [
  ['named, pinned known', { record: record('data-base-nightly', 65536) }, { recorded: true, pinnedBytes: 65536 }],
  ['named, pinned unknown (first base)', { record: record('data-base-nightly') }, { recorded: true }],
  ['another base named', { record: record('data-base-other', 65536) }, { recorded: false }],
  ['no base recorded (dropped)', { record: record(null) }, { recorded: false }],
  ['no record', { record: null, why: 'no base recorded in /x/nightly.base.json' }, { recorded: null, why: 'no base recorded in /x/nightly.base.json' }],
] as const) {
  test(`baseState: ${what}`, (t) => t.deepEqual(baseState(base, read as never), want as BaseState));
}

const keepWords = /^kept base vg0\/data-base-nightly of job nightly: .*removing it makes the job's next run a full compare \(--bases removes it\)$/;
for (const [what, row, state, bases, action, words] of [
  ['a source snapshot', source, undefined, false, 'remove', null],
  ['a target copy', target, undefined, true, 'skip', null],
  ['a recorded base', base, { recorded: true }, false, 'keep', /the job's base record names it/],
  ['a recorded base with --bases', base, { recorded: true }, true, 'remove', null],
  ['a base no record names (interrupted rotation)', base, { recorded: false }, false, 'remove', null],
  ['a base whose record is unreadable', base, { recorded: null, why: 'cannot read /x: EACCES' }, false, 'keep', /record cannot be read \(cannot read \/x: EACCES\)/],
  ['an open base, even with --bases', openBase, { recorded: false }, true, 'busy', /is open: a run of job nightly may be using it; not removed/],
] as const) {
  test(`clean: ${what} → ${action}`, (t) => {
    const v = cleanVerdict(row, state as BaseState | undefined, bases);
    t.is(v.action, action);
    if (words) t.regex((v as { why: string }).why, words);
    if (action === 'keep') t.regex((v as { why: string }).why, keepWords);
  });
}
