import test from 'ava';
import type { ExecutionContext } from 'ava';
import {
  activateArgv, checkJobName, cowSnapshotArgv, defaultJobName, delTagArgv, lvmNameProblem, lvsArgv, mergeArgv, parseVgLv,
  removeArgv, sizeArgs, snapshotName, thinSnapshotArgv,
} from '../src/lvm/argv.js';
import { BlkError, ExitCode } from '../src/errors.js';

const argv = test.macro({
  exec(t: ExecutionContext, got: () => string[], want: string[]) {
    t.deepEqual(got(), want);
  },
  title: (title, _g, want: string[]) => `${title ?? ''}: ${want.join(' ')}`,
});

const tags = ['blkdelta', 'blkdelta-source', 'blkdelta-job:nightly'];
test('cow size', argv, () => cowSnapshotArgv({ vg: 'vg0', lv: 'data', name: 's1', size: '10G', tags }),
  ['lvcreate', '-y', '-s', '-L', '10G', '-n', 's1', '--addtag', 'blkdelta', '--addtag', 'blkdelta-source',
    '--addtag', 'blkdelta-job:nightly', 'vg0/data']);
test('cow %ORIGIN', argv, () => cowSnapshotArgv({ vg: 'vg0', lv: 'data', name: 's1', size: '20%ORIGIN', tags: ['blkdelta'] }),
  ['lvcreate', '-y', '-s', '-l', '20%ORIGIN', '-n', 's1', '--addtag', 'blkdelta', 'vg0/data']);
test('thin active', argv, () => thinSnapshotArgv({ vg: 'vg0', lv: 'thin', name: 't1', tags: ['blkdelta'], active: true }),
  ['lvcreate', '-y', '-s', '-kn', '-n', 't1', '--addtag', 'blkdelta', 'vg0/thin']);
test('thin skipped', argv, () => thinSnapshotArgv({ vg: 'vg0', lv: 'thin', name: 't1', tags: [], active: false }),
  ['lvcreate', '-y', '-s', '-n', 't1', 'vg0/thin']);
test('activate', argv, () => activateArgv('vg0', 't1'), ['lvchange', '-y', '-ay', '-K', 'vg0/t1']);
test('remove', argv, () => removeArgv('vg0', 't1'), ['lvremove', '-y', 'vg0/t1']);
test('merge', argv, () => mergeArgv('vg0', 's1'), ['lvconvert', '-y', '--merge', '-i', '1', 'vg0/s1']);
test('lvs', argv, () => lvsArgv(['vg0'], ['lv_name', 'lv_attr']),
  ['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'lv_name,lv_attr', 'vg0']);

const size = test.macro({
  exec(t: ExecutionContext, text: string, want: [string, string]) {
    t.deepEqual(sizeArgs(text), want);
  },
  title: (_g, text: string, want: string[]) => `size ${text} -> ${want.join(' ')}`,
});
test(size, '10G', ['-L', '10G']);
test(size, '512m', ['-L', '512m']);
test(size, '1.5t', ['-L', '1.5t']);
test(size, '64', ['-L', '64m']);
test(size, '20%ORIGIN', ['-l', '20%ORIGIN']);
test(size, '100%origin', ['-l', '100%ORIGIN']);

const usage = test.macro({
  exec(t: ExecutionContext, fn: () => unknown, mention: string) {
    const err = t.throws(fn, { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes(mention), err?.message);
  },
  title: (title, _fn, mention: string) => `${title ?? ''} rejected, naming ${mention}`,
});
for (const bad of ['0', '0%ORIGIN', '101%ORIGIN', '10X', '-5G', '20%FREE', '', '10 G']) {
  test(`size "${bad}"`, usage, () => sizeArgs(bad), `"${bad}"`);
}
test('VG/LV without slash', usage, () => parseVgLv('vg0'), '"vg0"');
test('VG/LV with two slashes', usage, () => parseVgLv('vg0/a/b'), '"vg0/a/b"');
test('LV name with a space', usage, () => parseVgLv('vg0/my lv'), 'my lv');
test('LV name starting with snapshot', usage, () => parseVgLv('vg0/snapshot1'), 'snapshot');
test('LV name with _tmeta', usage, () => parseVgLv('vg0/x_tmeta'), '_tmeta');
test('job with a slash', usage, () => checkJobName('a/b'), '"a/b"');
test('job starting with -', usage, () => checkJobName('-x'), '"-x"');
test('job too long', usage, () => checkJobName('j'.repeat(65)), 'j'.repeat(65));

test('parseVgLv accepts VG/LV and /dev/VG/LV', (t) => {
  t.deepEqual(parseVgLv('vg0/data'), { vg: 'vg0', lv: 'data' });
  t.deepEqual(parseVgLv('/dev/vg0/data'), { vg: 'vg0', lv: 'data' });
});

test('name rules', (t) => {
  t.is(lvmNameProblem('data-1.x+y_z', 'LV'), null);
  t.regex(lvmNameProblem('-x', 'VG') ?? '', /not start with -/);
  t.regex(lvmNameProblem('.', 'LV') ?? '', /not allowed/);
  t.regex(lvmNameProblem('a'.repeat(128), 'LV') ?? '', /127/);
  t.is(defaultJobName('vg0', 'data'), 'vg0-data');
});

const when = new Date('2026-11-21T09:03:40.123Z');
test('snapshot name says what and when', (t) => {
  t.is(snapshotName('vg0', 'data', 'nightly', when, 'source'), 'data-blkdelta-nightly-20261121T090340Z');
  t.is(snapshotName('vg0', 'data', 'nightly', when, 'target'), 'data-blkdelta-tgt-nightly-20261121T090340Z');
});

test('snapshot name fits the device-mapper limit for long names', (t) => {
  const vg = 'vg-with-dashes';
  const name = snapshotName(vg, 'l-'.repeat(60) + 'v', 'j-'.repeat(30) + 'b', when, 'source');
  const dm = `${vg}-${name}`.length + (`${vg}-${name}`.match(/-/g)?.length ?? 0) - 1;
  t.true(dm <= 127, `${dm}: ${name}`);
  t.true(name.endsWith('-20261121T090340Z'), name);
  t.true(name.includes('-blkdelta-'), name);
  t.is(lvmNameProblem(name, 'LV'), null);
});
test('deltag', argv, () => delTagArgv('vg0', 's1', 'blkdelta-pending'), ['lvchange', '-y', '--deltag', 'blkdelta-pending', 'vg0/s1']);
