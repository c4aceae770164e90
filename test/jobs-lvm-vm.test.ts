// Jobs on real LVM in a throwaway QEMU VM (this machine's kernel has no device-mapper): one boot
// runs test/vm/jobs-lvm.sh, which drives `blkdelta run` and `blkdelta check` on jobs with source
// and target snapshots and prints "R <scenario> <key> <value>" facts asserted here.
// Needs qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools and a built dist/.
import test from 'ava';
import { vmLane } from './helpers/vm.js';
import type { JobState } from '../src/jobs/state.js';

const facts = vmLane('test/vm/jobs-lvm.sh', { timeoutS: 1500 }); // a loaded host slows the TCG guest a lot

const state = (s: string) => JSON.parse(s.replace(/\|/g, '\n')) as JobState;

test('a job with source and target snapshots: two runs succeed, snapshots removed/kept, recorded, check OK', async (t) => {
  const f = await facts(t, 'jobrun');
  t.is(f('1rc'), '0', f('1err'));
  t.is(f('2rc'), '0', f('2err'));
  t.is(f('same1'), 'yes');
  t.is(f('same2'), 'yes');
  t.is(f('source_snaps'), '0', 'the source snapshot is removed after each run');
  t.is(f('target_snaps'), '1', 'keep = 1');
  t.is(f('pending'), '0');
  const s = state(f('record'));
  t.deepEqual(s.runs.map((r) => r.outcome), ['success', 'success']);
  const last = s.runs[0]!;
  t.is(last.targetState, 'consistent');
  t.true(last.verified);
  t.like(last.snapshot, { removed: true });
  t.regex(last.snapshot!.name, /^vg0\/j_src-blkdelta-lvjob-\d{8}T\d{6}Z$/);
  t.regex(last.targetSnapshot!.name, /^vg0\/j_dst-blkdelta-tgt-lvjob-\d{8}T\d{6}Z$/);
  t.is(last.targetSnapshot!.kept.length, 1);
  t.is(last.bytes!.changed, 4 * 1024 * 1024);
  t.is(f('checkrc'), '0');
  t.regex(f('checkout'), /^BLKDELTA OK - lvjob: last success \d+s ago .*4\.0 MiB changed of 16\.0 MiB/);
});

test('SIGKILL mid-run: record stays "running", check CRITICAL (killed); the next run removes the stale snapshot and succeeds', async (t) => {
  const f = await facts(t, 'killed');
  t.is(f('left_after_kill'), '1', 'SIGKILL leaves the source snapshot');
  t.is(f('checkrc'), '2');
  t.regex(f('checkout'), new RegExp(`^BLKDELTA CRITICAL - killed: the run started .* was killed \\(pid ${f('pid')} is gone\\)`));
  t.is(f('2rc'), '0', f('2err'));
  t.regex(f('2err'), /removed stale snapshot vg0\/k_src-blkdelta-killed-/);
  t.is(f('same'), 'yes');
  t.is(f('left'), '0');
  const s = state(f('record'));
  t.deepEqual(s.runs.map((r) => r.outcome), ['success', 'running']);
  t.is(s.runs[1]!.process.pid, Number(f('pid')));
});
