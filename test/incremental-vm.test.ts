// Incremental runs (sync --incremental) on real LVM, in a throwaway QEMU VM: one boot runs
// test/vm/incremental-scenarios.sh (every scenario but the pull, which incremental-pull-vm boots
// apart so that the two run side by side) and each test asserts on one scenario's facts.
// Needs qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools and a built dist/.
import test from 'ava';
import { convergedWithOneBase, vmLane } from './helpers/vm.js';

const scenarios = ['basic', 'kill9', 'behind', 'removed', 'nonthin', 'poolguard', 'job', 'tsnap'];
const facts = vmLane('test/vm/incremental-scenarios.sh', { disks: '2G', timeoutS: 2400, scenarios }); // TCG: full compares of 256 MiB take minutes
const MiB = 1024 * 1024;

test('first run sets the base (full compare, reason: no base); 64 scattered 4 KiB writes: the next run reads a few MiB per side', async (t) => {
  const first = await facts(t, 'b_first');
  t.is(first('rc'), '0', first('err'));
  t.is(first('same'), 'yes');
  t.is(first('bases'), '1');
  t.is(first('kind'), 'full');
  t.regex(first('reason'), /no base recorded .*first incremental run of job vg0-b_src/);
  const f = await facts(t, 'b_incr');
  t.is(f('rc'), '0', f('err'));
  t.is(f('same'), 'yes', 'target byte-identical to the origin (XXH64 digests)');
  t.is(f('bases'), '1');
  t.is(f('incremental.kind'), 'incremental');
  t.not(f('incremental.base'), f('incremental.newBase'));
  t.is(f('blocksDiffering'), '64');
  t.is(f('incremental.sampleBlocks'), '128');
  t.is(f('incremental.sampleDiffering'), '0');
  for (const k of ['bytesReadSource', 'bytesReadTarget']) t.true(Number(f(k)) <= 6 * MiB, `${k} ${f(k)} of a 256 MiB LV`);
  const none = await facts(t, 'b_none');
  t.is(none('kind'), 'incremental');
  t.is(none('read'), `${128 * 4096} ${128 * 4096}`, 'nothing changed: only the sample is read');
  t.is(none('bases'), '1');
  t.is(none('sources'), '0');
});

for (const [s, where] of [['k_snap', 'after the snapshot, before the metadata query'], ['k_copy', 'during the copy'], ['k_rotate', 'during the rotation (the new base made, the record not yet naming it)']] as const) {
  test(`kill -9 ${where}: the rerun converges and exactly one base remains`, async (t) => {
    const f = await facts(t, s);
    t.is(f('hit'), 'yes', `the kill point was reached (${s})`);
    t.is(f('rc'), '137');
    if (s === 'k_rotate') t.is(f('bases_after_kill'), '2', 'the old base and the new one, which no record names');
    convergedWithOneBase(t, await facts(t, `${s}_rerun`), f);
  });
}

/** A rerun after a kill: it succeeded, the target is equal, one base, no snapshot or metadata snapshot left. */

test('the target rewritten behind blkdelta\'s back in a tenth of its blocks: the sample notices, the full compare repairs it', async (t) => {
  const f = await facts(t, 'behind');
  t.is(f('rc'), '0', f('err'));
  t.is(f('kind'), 'full');
  t.regex(f('reason'), /^\d+ of 128 sampled blocks outside the changed ranges differ: the target was changed behind blkdelta's back$/);
  t.is(f('same'), 'yes');
  t.is(f('bases'), '1');
  t.is(f('next_kind'), 'incremental', 'the full compare set a new base');
});

test('the base removed by hand: full compare, reason recorded, a new base', async (t) => {
  const f = await facts(t, 'removed');
  t.is(f('rc'), '0', f('err'));
  t.is(f('kind'), 'full');
  t.regex(f('reason'), /^base vg0\/b_src-blkdelta-base-vg0-b_src-\d{8}T\d{6}Z named by the target's record is missing/);
  t.is(f('same'), 'yes');
  t.is(f('bases'), '1');
});

test('a non-thin source: full compare through a COW snapshot, reason recorded, no base kept', async (t) => {
  const f = await facts(t, 'nonthin');
  t.is(f('rc'), '0', f('err'));
  t.is(f('kind'), 'full');
  t.regex(f('reason'), /source vg0\/n_src is not a thin LV/);
  t.is(f('same'), 'yes');
  t.is(f('bases'), '0');
});

test('a pool over pool_max_fill because of the base: the base is dropped, full compare with the reason', async (t) => {
  const f = await facts(t, 'poolguard');
  t.true(Number(f('fill')) >= 60, `pool fill ${f('fill')}`);
  t.is(f('rc'), '0', f('err'));
  t.is(f('kind'), 'full');
  t.regex(f('reason'), /base b_src-blkdelta-base-\S+ was dropped: thin pool vg0\/pool data is [\d.]+% full, at or above pool_max_fill 60%/);
  t.is(f('same'), 'yes');
  t.is(f('bases'), '1');
});

test('a job with incremental = true: record, status, check and metrics say which kind of run it was and why', async (t) => {
  const first = await facts(t, 'job_first');
  t.is(first('rc'), '0', first('err'));
  t.regex(first('err'), /full compare: no base recorded/);
  const incr = await facts(t, 'job_incr');
  t.is(incr('rc'), '0', incr('err'));
  const f = await facts(t, 'job');
  t.is(f('same'), 'yes');
  t.is(f('bases'), '1');
  const status = await facts(t, 'job_status');
  const runs = JSON.parse(status('out').replace(/\|/g, '\n')).jobs?.[0]?.runs ?? JSON.parse(status('out').replace(/\|/g, '\n')).runs;
  t.like(runs[0], { outcome: 'success', incremental: { kind: 'incremental', sampleDiffering: 0 } });
  t.like(runs[1], { outcome: 'success', incremental: { kind: 'full' } });
  t.true(runs[0].bytes.readSource <= 2 * 1024 * 1024, `read ${runs[0].bytes.readSource}`);
  const check = await facts(t, 'job_check');
  t.is(check('rc'), '0', check('out'));
  t.regex(check('out'), /last run was incremental \(base j_src-blkdelta-base-thinjob-\d{8}T\d{6}Z/);
  t.regex(f('text_status'), /\[incremental, read [\d.]+ [KM]iB \+ [\d.]+ [KM]iB, base pinned /);
  t.regex(f('metrics'), /blkdelta_last_run_incremental\{blkdelta_job="thinjob"\} 1/);
  t.regex(f('metrics'), /blkdelta_last_run_read_source_bytes\{blkdelta_job="thinjob"\} \d+/);
});

test('a push with --target-snapshot and --incremental: the server snapshots the target first; a target changed behind blkdelta\'s back is repaired by a full compare', async (t) => {
  const first = await facts(t, 'ts_first');
  t.is(first('rc'), '0', first('err'));
  t.is(first('same'), 'yes');
  t.is(first('kind'), 'full');
  const f = await facts(t, 'ts_incr');
  t.is(f('rc'), '0', f('err'));
  t.is(f('same'), 'yes');
  t.is(f('kind'), 'incremental');
  t.true(Number(f('read')) <= 2 * MiB, `target read ${f('read')} of a 64 MiB LV`);
  t.is(f('copies'), '2', 'one copy per run (keep_last = 3)');
  t.is(f('pending'), '0');
  t.is(f('copy_is_before'), 'yes', "the newest copy holds the target's content before the run");
  const b = await facts(t, 'ts_behind');
  t.is(b('rc'), '0', b('err'));
  t.is(b('same'), 'yes');
  t.is(b('kind'), 'full');
  t.regex(b('reason'), /^\d+ of 128 sampled blocks outside the changed ranges differ: the target was changed behind blkdelta's back$/);
  t.is(b('copies'), '3', 'one more copy, within the server\'s keep_last = 3');
  t.is(b('pending'), '0');
  t.is(b('bases'), '1');
});
