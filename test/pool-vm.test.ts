// Thin-pool guards and pull with a source snapshot on real LVM, in a throwaway QEMU VM: one boot
// runs test/vm/pool-scenarios.sh (pulls go through --rsh to a `blkdelta server` in the guest,
// which makes the snapshot) and each test asserts on one scenario's facts.
// Needs qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools and a built dist/.
import test from 'ava';
import { ExitCode } from '../src/errors.js';
import { vmLane } from './helpers/vm.js';

const facts = vmLane('test/vm/pool-scenarios.sh', { timeoutS: 1500 }); // a loaded host slows the TCG guest a lot
const json = (s: string) => JSON.parse(s.replace(/\|/g, '\n'));
const SNAP = (lv: string, job: string) => new RegExp(`^${lv}-blkdelta-${job}-\\d{8}T\\d{6}Z$`);

test('pull --snapshot host:VG/LV: the server makes a COW snapshot, the target converges, the snapshot is removed', async (t) => {
  const f = await facts(t, 'pull');
  t.is(f('rc'), '0', f('err'));
  const s = json(f('out'));
  t.like(s.snapshot, { vg: 'vg0', origin: 'p_src', job: 'vg0-p_src', kind: 'cow', removed: true, staleRemoved: [] });
  t.regex(s.snapshot.name, SNAP('p_src', 'vg0-p_src'));
  t.is(s.source, '/dev/vg0/p_src');
  t.is(s.blocksDiffering, 4096, 'every 4 KiB block of the 16 MiB random origin differed from the zeroed target');
  t.is(f('same'), 'yes', 'target byte-identical to the origin (XXH64 digests)');
  t.is(f('left'), '0');
});

test('pull --snapshot ssh://user@host:port/VG/LV of a thin origin: a thin snapshot, removed', async (t) => {
  const f = await facts(t, 'pullthin');
  t.is(f('rc'), '0', f('err'));
  t.like(json(f('out')).snapshot, { origin: 'pt_src', kind: 'thin', removed: true });
  t.is(f('same'), 'yes');
  t.is(f('left'), '0');
});

test('pool guard before: a pool at 94% refuses a local and a pulled thin snapshot (exit 13), nothing created', async (t) => {
  const f = await facts(t, 'guard_before');
  const local = await facts(t, 'guard_local');
  const pulled = await facts(t, 'guard_pull');
  t.true(Number(f('fill')) >= 90, `pool fill ${f('fill')}`);
  t.is(local('rc'), String(ExitCode.SNAPSHOT), local('err'));
  t.regex(local('err'), /cannot snapshot vg0\/g_src: thin pool vg0\/gpool data is [\d.]+% full, at or above pool_max_fill 90%; nothing was created/);
  t.is(pulled('rc'), String(ExitCode.SNAPSHOT), pulled('err'));
  t.regex(pulled('err'), /sh localhost: cannot snapshot vg0\/g_src: thin pool vg0\/gpool data is [\d.]+% full, at or above pool_max_fill 90%/);
  t.is(f('after_local'), f('lvs_before'), 'no LV created by the local run');
  t.is(f('after_pull'), f('lvs_before'), 'no LV created by the server');
});

test('pool guard before: --pool-max-fill 99 lets the same run through', async (t) => {
  const f = await facts(t, 'guard_before');
  const raised = await facts(t, 'guard_raised');
  t.is(raised('rc'), '0', raised('err'));
  t.like(json(raised('out')).snapshot, { kind: 'thin', removed: true });
  t.is(f('same_raised'), 'yes');
  t.is(f('left'), '0');
});

test('pool guard during a pull: the pool crosses 90%, the server aborts (exit 14) and frees the snapshot; the writer sees no error', async (t) => {
  const f = await facts(t, 'guard_during');
  t.is(f('errorwhenfull'), 'error', 'the pool fails writes at once when full');
  t.is(f('rc'), String(ExitCode.SNAPSHOT_OVERFLOW), f('err'));
  t.regex(f('err'), /thin pool vg0\/dpool (data|metadata) is [\d.]+% full, at or above pool_max_fill 90%: the run was stopped part-way and the snapshot removed/);
  t.regex(f('err'), /NOT consistent/);
  t.is(f('writer_rc'), '0', `writer errors: ${f('writer_err')}`);
  t.is(f('writer_err'), '');
  t.is(f('left'), '0');
  t.true(Number(f('fill_after')) < 90, `pool fill after the run ${f('fill_after')} (before ${f('fill_before')})`);
  t.is(f('dmesg'), '', 'the pool never ran out of space');
});

test('kill -9 of the server mid-pull leaves its snapshot; the next pull of the job removes it and converges', async (t) => {
  const f = await facts(t, 'kill9');
  const rerun = await facts(t, 'kill9_rerun');
  t.is(f('rc'), String(ExitCode.REMOTE), f('err'));
  t.is(f('left_after_kill'), '1');
  t.regex(f('stale'), SNAP('k_src', 'kjob'));
  t.is(rerun('rc'), '0', rerun('err'));
  const s = json(rerun('out')).snapshot;
  t.deepEqual(s.staleRemoved, [f('stale')]);
  t.not(s.name, f('stale'));
  t.true(s.removed);
  t.is(f('same'), 'yes');
  t.is(f('left'), '0');
});
