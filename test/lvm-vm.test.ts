// Real LVM in a throwaway QEMU VM (this machine's kernel has no device-mapper): one boot runs
// test/vm/lvm-scenarios.sh, which drives the blkdelta CLI against real snapshots and prints
// "R <scenario> <key> <value>" facts; each ava test here asserts on one scenario's facts.
// Needs qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools and a built dist/.
import test from 'ava';
import { vmLane } from './helpers/vm.js';
import { ExitCode } from '../src/errors.js';

const facts = vmLane('test/vm/lvm-scenarios.sh', { timeoutS: 1200 }); // a loaded host slows the TCG guest a lot

const json = (s: string) => JSON.parse(s.replace(/\|/g, '\n'));

test('COW overflow during the sync fails the run with SNAPSHOT_OVERFLOW and leaves no snapshot', async (t) => {
  const f = await facts(t, 'overflow');
  t.regex(f('attr_during'), /swi-I/, 'the writes made the snapshot invalid');
  t.is(f('rc'), String(ExitCode.SNAPSHOT_OVERFLOW), f('err'));
  t.regex(f('err'), /overflowed and is invalid.*NOT consistent/);
  t.regex(f('err'), /removed snapshot vg0\/o_src-blkdelta-/);
  t.is(f('left'), '0');
});

test('--snapshot-max-fill stops the run before the snapshot overflows', async (t) => {
  const f = await facts(t, 'maxfill');
  t.regex(f('attr_during'), /swi-a/, 'the snapshot is still valid');
  t.is(f('rc'), String(ExitCode.SNAPSHOT_OVERFLOW), f('err'));
  t.regex(f('err'), /full, over --snapshot-max-fill 5%: the run was stopped part-way, the target is NOT consistent/);
  t.is(f('left'), '0');
  t.true(Number(f('dm_polls')) >= 1, 'the poller read the snapshot with dmsetup status');
  t.notRegex(f('err'), /this poll uses lvs/);
});

test('--snapshot-max-fill with a dmsetup that fails: each poll falls back to lvs and the run stops the same way', async (t) => {
  const f = await facts(t, 'maxfill_nodm');
  t.regex(f('attr_during'), /swi-a/, 'the snapshot is still valid');
  t.is(f('rc'), String(ExitCode.SNAPSHOT_OVERFLOW), f('err'));
  t.regex(f('err'), /full, over --snapshot-max-fill 5%: the run was stopped part-way, the target is NOT consistent/);
  t.regex(f('err'), /warning: cannot read snapshot vg0\/m_src-blkdelta-\S+'s fill with dmsetup \(dmsetup status --noflush \S+ failed \(exit 1\): dmsetup: broken for the test\): this poll uses lvs/);
  t.is(f('left'), '0');
});

test('SIGTERM mid-sync removes the source snapshot; the target snapshot stays pending', async (t) => {
  const f = await facts(t, 'sigterm');
  t.is(f('rc'), String(ExitCode.INTERRUPTED), f('err'));
  t.regex(f('err'), /SIGTERM received.*removed snapshot vg0\/t_src-blkdelta-/);
  t.is(f('left'), '0');
  t.is(f('pending'), '1', 'a failed run prunes nothing: the last good copy of the target stays');
});

test('after a failed run the pending target snapshot is reused (the target is torn), then confirmed', async (t) => {
  const f = await facts(t, 'sigterm');
  const f2 = await facts(t, 'sigterm2');
  t.is(f2('rc'), '0', f2('err'));
  t.regex(f2('err'), /target vg0\/t_dst: copy t_dst-blkdelta-tgt-vg0-t_src-\d{8}T\d{6}Z from a run that did not succeed is still the last good copy; taking no new one/);
  t.is(f('same_after_rerun'), 'yes');
  t.is(f('target_snaps'), '1');
  t.is(f('pending_after_rerun'), '0');
});

test('a snapshot that cannot be removed (device held open) is retried, then reported, never swallowed', async (t) => {
  const f = await facts(t, 'holdopen');
  t.is(f('rc'), '0', f('err'));
  const [ok, failed] = f('out').split('|').filter(Boolean).map((l) => JSON.parse(l));
  t.is(ok.code, ExitCode.SNAPSHOT, 'a successful sync fails when its snapshot stays behind');
  t.regex(ok.message, /snapshot vg0\/h_src-blkdelta-holdopen-ok-\d{8}T\d{6}Z could not be removed after 3 attempts .*lvremove -y vg0\/h_src-blkdelta-holdopen-ok-/);
  t.like(ok.report, { removed: false, job: 'holdopen-ok' });
  t.is(failed.code, ExitCode.IO, 'the run keeps its own error');
  t.like(failed.report, { removed: false, job: 'holdopen-fail' });
  t.regex(failed.report.removeError, /could not be removed after 3 attempts/);
  t.regex(f('err'), /lvremove vg0\/h_src-blkdelta-holdopen-ok-\S+ failed \(attempt 1\), retrying/);
  t.regex(f('err'), /error: snapshot vg0\/h_src-blkdelta-holdopen-fail-\S+ could not be removed/);
  t.is(f('left'), '2', 'both snapshots were still there (removed by hand afterwards)');
});

test('SIGKILL mid-sync leaves the snapshot; the next run removes it, says so and syncs from a new one', async (t) => {
  const f = await facts(t, 'sigkill');
  t.is(f('left_after_kill'), '1');
  t.is(f('rc'), '0', f('err'));
  const stale = /removed stale snapshot vg0\/(k_src-blkdelta-vg0-k_src-\d{8}T\d{6}Z) .*left by an earlier run of job vg0-k_src/.exec(f('err'));
  t.truthy(stale, f('err'));
  const report = json(f('out')).snapshot;
  t.like(report, { vg: 'vg0', origin: 'k_src', job: 'vg0-k_src', kind: 'cow', removed: true, staleRemoved: [stale?.[1]] });
  t.not(report.name, stale?.[1]);
  t.is(f('left'), '0');
});

test('COW snapshot: created, synced from, removed; target byte-identical (the run after the SIGKILL)', async (t) => {
  const f = await facts(t, 'sigkill');
  t.is(f('rc'), '0', f('err'));
  const report = json(f('out')).snapshot;
  t.regex(report.name, /^k_src-blkdelta-vg0-k_src-\d{8}T\d{6}Z$/);
  t.like(report, { kind: 'cow', removed: true, device: `/dev/vg0/${report.name}` });
  t.true(report.fillPct >= 0 && report.fillPct < 100);
  t.is(json(f('out')).source, report.device, 'the sync read the snapshot');
  t.regex(f('err'), /created cow snapshot vg0\/k_src-blkdelta-.*removed snapshot vg0\/k_src-blkdelta-/);
  t.is(f('same'), 'yes', 'target byte-identical to the origin (XXH64 digests)');
});

test('thin origin: thin snapshot without a size; thin target snapshot kept (--keep 1) and rolled back with lvconvert --merge', async (t) => {
  const f = await facts(t, 'thin');
  const f1 = await facts(t, 'thin1');
  const f2 = await facts(t, 'thin2');
  t.is(f1('rc'), '0', f1('err'));
  t.is(f2('rc'), '0', f2('err'));
  t.like(json(f1('out')).snapshot, { kind: 'thin', removed: true, fillPct: null });
  t.regex(f2('err'), /took thin snapshot vg0\/tg_dst-blkdelta-tgt-vg0-th_src-\d{8}T\d{6}Z of target/);
  t.regex(f2('err'), /kept 1 snapshot\(s\), removed tg_dst-blkdelta-tgt-vg0-th_src-/);
  t.is(f('same_after_1'), 'yes');
  t.is(f('same_after_2'), 'yes');
  t.is(f('left'), '0');
  t.is(f('kept'), '1', '--keep 1 removed the older copy');
  t.is(f('pending'), '0', 'a successful run confirms its snapshot');
  t.regex(f('snap'), /^tg_dst-blkdelta-tgt-vg0-th_src-\d{8}T\d{6}Z$/);
  t.is(f('merge_rc'), '0', f('merge_out'));
  t.is(f('rolled_back'), 'yes', 'the target holds the content from before the second run');
});

test('a remote target\'s snapshots follow the server\'s [server.target_snapshot] (keep_last 3, size 4M); a client --keep is refused', async (t) => {
  const f = await facts(t, 'srvpolicy');
  for (const run of ['srvpolicy1', 'srvpolicy2', 'srvpolicy3']) {
    const r = await facts(t, run);
    t.is(r('rc'), '0', r('err'));
  }
  const keep = await facts(t, 'srvpolicy_keep');
  t.is(keep('rc'), String(ExitCode.USAGE), keep('err'));
  t.regex(keep('err'), /--keep cannot be used with a remote target/);
  t.is(f('same'), 'yes');
  t.is(f('kept'), '2', 'the server kept keep_last = 3 points, the live target and two copies, of three runs (a client default would keep 1)');
  t.is(f('cow_size'), '4.00', 'the COW size is the server\'s');
});

test('snapshots clean removes only blkdelta source snapshots, never an untagged LV', async (t) => {
  const f = await facts(t, 'untagged');
  const list = await facts(t, 'untagged_list');
  t.is(list('rc'), '0', list('err'));
  t.deepEqual(json(list('out')).snapshots.map((r: { name: string; role: string }) => `${r.name}:${r.role}`).sort(), ['u_ours:source', 'u_tgt:target']);
  t.is(f('rc'), '0', f('err'));
  t.regex(f('out'), /removed vg0\/u_ours/);
  t.is(f('lvs').trim(), 'u_foreign u_plain u_src u_tgt');
  t.not(f('targets_before'), '0');
  t.is(f('targets_after'), f('targets_before'), 'target copies are kept');
});
