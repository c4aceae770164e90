// Incremental pulls (sync --incremental --snapshot host:vg/lv) on real LVM, in a throwaway QEMU VM:
// one boot runs test/vm/incremental-scenarios.sh's `pulled` alone (about 13 min under TCG, so it
// gets a boot of its own, run beside incremental-vm's) and each test asserts on one step's facts.
// Needs qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools and a built dist/.
import test from 'ava';
import { convergedWithOneBase, vmLane } from './helpers/vm.js';

const facts = vmLane('test/vm/incremental-scenarios.sh', { disks: '2G', timeoutS: 2400, scenarios: ['pulled'] });
const MiB = 1024 * 1024;

test('a pull through `blkdelta server`: the server keeps the base, the client the record; 64 scattered writes read a few MiB per side', async (t) => {
  const first = await facts(t, 'pl_first');
  t.is(first('rc'), '0', first('err'));
  t.is(first('same'), 'yes');
  t.is(first('bases'), '1', 'the server made the base');
  t.is(first('kind'), 'full');
  t.regex(first('reason'), /no base recorded .*first incremental run of job vg0-pl_src/);
  t.regex(first('record'), /"base":\{"name":"pl_src-blkdelta-base-vg0-pl_src-\d{8}T\d{6}Z","uuid":"[\w-]+","thinId":\d+\}/, 'the client recorded it');
  const f = await facts(t, 'pl_incr');
  t.is(f('rc'), '0', f('err'));
  t.is(f('same'), 'yes', 'target byte-identical to the origin (XXH64 digests)');
  t.is(f('bases'), '1');
  t.is(f('sources'), '0', 'the server removed its snapshot');
  t.is(f('incremental.kind'), 'incremental', f('incremental.reason'));
  t.not(f('incremental.base'), f('incremental.newBase'));
  t.is(f('incremental.removedBases'), JSON.stringify([f('incremental.base')]));
  t.is(f('blocksDiffering'), '64');
  t.is(f('incremental.sampleBlocks'), '128');
  t.is(f('incremental.sampleDiffering'), '0');
  for (const k of ['bytesReadSource', 'bytesReadTarget']) t.true(Number(f(k)) <= 6 * MiB, `${k} ${f(k)} of a 128 MiB LV`);
  t.true(f('record').includes(f('incremental.newBase')));
});

test('a pull: kill -9 of the client during the copy, then a rerun: converges, one base, no snapshot left', async (t) => {
  const k = await facts(t, 'pl_kill');
  t.is(k('hit'), 'yes');
  t.is(k('rc'), '137');
  t.is(k('sources_after'), '0', 'the server removed S when the client went away (its EPIPE no longer crashes it)');
  t.is(k('bases_after'), '1', 'the old base stays, named by the record');
  const r = await facts(t, 'pl_rerun');
  t.is(r('rc'), '0', r('err'));
  t.is(r('same'), 'yes');
  t.is(r('bases'), '1');
  t.is(r('sources'), '0');
  t.is(r('kind'), 'incremental', r('reason'));
});

test('a pull: kill -9 of the server once it made the new base, then a rerun: the unrecorded base is removed, one base', async (t) => {
  const k = await facts(t, 'pl_skill');
  t.is(k('hit'), 'yes');
  t.not(k('rc'), '0');
  t.is(k('bases_after'), '2', 'the new base exists, not yet named by the record');
  const r = await facts(t, 'pl_srerun');
  convergedWithOneBase(t, r, r);
  t.regex(r('removed'), /"pl_src-blkdelta-base-vg0-pl_src-\d{8}T\d{6}Z","pl_src-blkdelta-base-vg0-pl_src-\d{8}T\d{6}Z"/, 'the unrecorded base, then the rotated one');
});

test('a pull from a server whose policy has no [server.source_snapshot]: exit 12, nothing created', async (t) => {
  const f = await facts(t, 'pl_refused');
  t.is(f('rc'), '12', f('err'));
  t.regex(f('err'), /refused by the server: it has no \[server.source_snapshot\] policy/);
  const [before, after] = f('lvs').split(' ');
  t.is(after, before);
  t.is(f('bases'), '1');
});
