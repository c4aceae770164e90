import test from 'ava';
import type { ExecutionContext } from 'ava';
import { jobNameOf, remoteSnapshotRequest, snapshotEnds, targetSnapshotOf, type SnapshotArgs } from '../src/lvm/sync-options.js';
import { BlkError, ExitCode } from '../src/errors.js';

type A = SnapshotArgs & { src?: string; dst?: string };

const ends = test.macro({
  exec(t: ExecutionContext, a: A, want: { src: string; dst: string }) {
    t.deepEqual(snapshotEnds(a), want);
  },
  title: (_g, a: A) => `ends ${JSON.stringify(a)}`,
});
test(ends, { src: 'a.img', dst: 'b.img' }, { src: 'a.img', dst: 'b.img' });
test(ends, { snapshot: 'vg0/data', src: '/dev/bk/data' }, { src: '/dev/vg0/data', dst: '/dev/bk/data' });
test(ends, { snapshot: 'vg0/data', src: 'bk@store:/dev/bk/data', 'snapshot-size': '20%ORIGIN' }, { src: '/dev/vg0/data', dst: 'bk@store:/dev/bk/data' });
test(ends, { src: 'a', dst: 'b', 'target-snapshot': true, keep: 3 }, { src: 'a', dst: 'b' });

const usage = test.macro({
  exec(t: ExecutionContext, a: A, mention: string) {
    const err = t.throws(() => snapshotEnds(a), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes(mention), err?.message);
  },
  title: (_g, a: A, mention: string) => `ends ${JSON.stringify(a)} rejected: ${mention}`,
});
test(usage, { snapshot: 'vg0/data', src: 'a.img', dst: 'b.img' }, 'give only DST');
test(usage, { snapshot: 'vg0' , src: 'b' }, '--snapshot expects VG/LV');
test(usage, { snapshot: 'vg0/data' }, 'name the target DST');
test(usage, { src: 'a', dst: 'b', 'snapshot-size': '1G' }, '--snapshot-size needs --snapshot');
test(usage, { src: 'a', dst: 'b', 'snapshot-max-fill': 50 }, '--snapshot-max-fill needs --snapshot');
test(usage, { src: 'a', dst: 'b', keep: 2 }, '--keep needs --target-snapshot');
test(usage, { src: 'a', dst: 'b', 'target-snapshot-size': '1G' }, '--target-snapshot-size needs --target-snapshot');
test(usage, { snapshot: 'vg0/data', src: 'b', 'snapshot-size': '5X' }, '"5X"');
test(usage, { src: 'a' }, 'name SRC and DST');

const job = test.macro({
  exec(t: ExecutionContext, a: A, dst: string, want: string) {
    t.is(jobNameOf(a, dst), want);
  },
  title: (_g, a: A, dst: string, want: string) => `job ${JSON.stringify(a)} ${dst} = ${want}`,
});
test(job, { job: 'nightly', snapshot: 'vg0/data' }, '/dev/bk/x', 'nightly');
test(job, { snapshot: 'vg0/data' }, '/dev/bk/x', 'vg0-data');
test(job, {}, '/dev/bk/data', 'bk-data');
test(job, {}, '/dev/mapper/bk-data', 'bk-data');
test(job, {}, 'store:/dev/bk/data', 'bk-data');
test(job, {}, 'ssh://u@store:2222/dev/bk/data', 'bk-data');
test(job, {}, `/srv/x/.bbbb/${'y'.repeat(58)}`, `bbbb-${'y'.repeat(58)}`);
test(job, {}, '/srv/images/vm 1.img', 'srv-images-vm-1.img');

test('targetSnapshotOf: keep defaults to 1, off without --target-snapshot', (t) => {
  t.is(targetSnapshotOf({}, '/dev/bk/data'), undefined);
  t.deepEqual(targetSnapshotOf({ 'target-snapshot': true }, '/dev/bk/data'), { job: 'bk-data', keep: 1, size: undefined });
  t.deepEqual(targetSnapshotOf({ 'target-snapshot': true, keep: 0, job: 'j', 'target-snapshot-size': '2G' }, 'x'), { job: 'j', keep: 0, size: '2G' });
  const err = t.throws(() => targetSnapshotOf({ 'target-snapshot': true, keep: 1.5 }, 'x'), { instanceOf: BlkError });
  t.is(err?.code, ExitCode.USAGE);
});

const remote = test.macro({
  exec(t, a: SnapshotArgs, want: { job: string } | string) {
    if (typeof want !== 'string') return t.deepEqual(remoteSnapshotRequest(a, 'j'), want);
    const err = t.throws(() => remoteSnapshotRequest(a, 'j'), { instanceOf: BlkError });
    t.is(err!.code, ExitCode.USAGE);
    t.true(err!.message.includes(want), err!.message);
  },
  title: (_p, a: SnapshotArgs) => `remote target snapshot request ${JSON.stringify(a)}`,
});
test(remote, { 'target-snapshot': true }, { job: 'j' });
test(remote, { 'target-snapshot': true, keep: 0 }, '--keep cannot be used with a remote target');
test(remote, { 'target-snapshot': true, keep: 3 }, '--keep cannot be used with a remote target');
test(remote, { 'target-snapshot': true, 'target-snapshot-size': '1G' }, '--target-snapshot-size cannot be used with a remote target');
