// The snapshot poller's cheap tick: `dmsetup status --noflush` parsed (table tests on outputs
// captured in the VM lane, fixtures/lvm/dm-status-transcript.txt, and on hostile lines, every
// field), and judged (dmHeldProblem) with the same errors and figures as an lvs tick
// (heldProblem). The poller itself and its lvs fallback run against real LVM: test/lvm-vm.test.ts,
// test/pool-vm.test.ts.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { ExitCode } from '../src/errors.js';
import { dmName, dmStatusArgv, lvmPercent, parseDmStatus, parseDmStatusLine, type DmStatus } from '../src/lvm/dm-status.js';
import { dmHeldProblem, heldProblem, pollDevices, type HeldReport } from '../src/lvm/held.js';
import { parseLvs, type LvRow } from '../src/lvm/report.js';

const TRANSCRIPT = readFileSync(new URL('../../fixtures/lvm/dm-status-transcript.txt', import.meta.url), 'utf8').split('\n');
const lvsFixture = (name: string) => parseLvs(readFileSync(new URL(`../../fixtures/lvm/${name}.json`, import.meta.url), 'utf8')).map((r) => ({ ...r, vg: 'vg0' }));

/** The output and exit status of `dmsetup status --noflush ARGS` under the transcript's heading `section`. */
function captured(section: string, args: string): { stdout: string; rc: number } {
  const from = TRANSCRIPT.findIndex((l) => l.startsWith(section));
  const at = TRANSCRIPT.findIndex((l, i) => i > from && l === `$ dmsetup status --noflush ${args}`);
  if (from < 0 || at < 0) throw new Error(`no capture of ${args} under ${section}`);
  const end = TRANSCRIPT.findIndex((l, i) => i > at && /^rc \d+$/.test(l));
  return { stdout: TRANSCRIPT.slice(at + 1, end).join('\n'), rc: Number(TRANSCRIPT[end]!.slice(3)) };
}

const snap = (fillPct: number | null, state = 'valid') => ({ target: 'snapshot', state, fillPct });
const pool = (data: number | null, metadata: number | null, state = 'rw', needsCheck = false) => ({ target: 'thin-pool', state, data, metadata, needsCheck });
const thin = (state = 'ok') => ({ target: 'thin', state });

const real = test.macro({
  exec(t: ExecutionContext, section: string, args: string, want: object[] | RegExp | 'exit 1') {
    const { stdout, rc } = captured(section, args);
    const names = args.split(' ');
    if (want === 'exit 1') return t.is(rc, 1, 'runLvm throws: the tick falls back to lvs');
    if (want instanceof RegExp) {
      t.throws(() => parseDmStatus(stdout, names), { message: want });
      return;
    }
    t.is(rc, 0);
    t.deepEqual(parseDmStatus(stdout, names), want as DmStatus[]);
  },
  title: (_t, section: string, args: string) => `real dmsetup status ${args} (${section.replace(/^[-=]+ /, '')})`,
});
// the figures are those lvs printed at the same moment (in the transcript after each capture)
test(real, '--- cow healthy (fresh)', 'vg0-c--snap', [snap(0)]); // 16/16384, all metadata: lvs 0.00
test(real, '--- cow after 1M', 'vg0-c--snap', [snap(12.65)]);
test(real, '--- cow nearly full', 'vg0-c--snap', [snap(87.94)]);
test(real, '--- cow overflowed', 'vg0-c--snap', [snap(null, 'Invalid')]);
test(real, '--- two devices in one call', 'vg0-c--snap vg0-c--src', /target "snapshot-origin"/);
test(real, '--- cow nearly full', 'vg0-c--snap-cow', /target "linear"/);
test(real, '=== cow merging', 'vg0-m', /target "snapshot-merge"/);
test(real, '--- a device that does not exist', 'vg0-nosuch', 'exit 1');
test(real, '--- one existing, one not', 'vg0-c--src vg0-nosuch', 'exit 1');
test(real, '--- pool normal', 'vg0-tp-tpool', [pool(12.5, 10.94)]);
test(real, '--- pool normal', 'vg0-ts', [thin()]);
test(real, '--- two devices', 'vg0-ts vg0-tp-tpool', [thin(), pool(12.5, 10.94)]);
test(real, '--- pool filling', 'vg0-tp-tpool', [pool(90.62, 12.01)]); // 928/1024 data: lvs 90.62 (half to even)
test(real, '--- pool out of data space', 'vg0-tp-tpool', [pool(100, 11.52, 'out_of_data_space')]);
test(real, '--- pool out of data space', 'vg0-ts', [thin()]);
test(real, '--- pool after metadata errors', 'vg0-bp-tpool', [pool(null, null, 'Fail')]);
test(real, '--- pool after metadata errors', 'vg0-b', [thin('Fail')]);
test(real, '--- pool read-only', 'vg0-rp-tpool', [pool(6.25, 10.94, 'ro')]);

const line = test.macro({
  exec(t: ExecutionContext, input: string, want: object | RegExp) {
    if (want instanceof RegExp) t.throws(() => parseDmStatusLine(input), { message: want });
    else t.deepEqual(parseDmStatusLine(input), want as DmStatus);
  },
  title: (_t, input: string) => `status line ${JSON.stringify(input.slice(0, 90))}`,
});
const P = '0 131072 thin-pool 2 112/1024 128/1024 - rw discard_passdown queue_if_no_space';
test(line, '0 32768 snapshot 2072/16384 24', snap(12.65));
test(line, '0 32768 snapshot 2072/16384 24   ', snap(12.65));
test(line, '0 32768 snapshot Overflow', snap(null, 'Overflow'));
test(line, '0 32768 snapshot Merge failed', snap(null, 'Merge failed'));
test(line, '0 32768 snapshot 16384/16384 72', snap(100));
test(line, '0 32768 snapshot 16385/16384 72', /snapshot sectors 16385\/16384/);
test(line, '0 32768 snapshot 1/0 0', /snapshot sectors 1\/0/);
test(line, '0 32768 snapshot 16/16384 24', /snapshot metadata 24 over its used 16/);
test(line, '0 32768 snapshot 2072/16384', /snapshot "2072\/16384"/);
test(line, '0 32768 snapshot -2072/16384 24', /snapshot "-2072/);
test(line, '0 32768 snapshot 2072/16384 24 extra', /snapshot "/);
test(line, '0 32768 snapshot invalid', /snapshot "invalid"/);
test(line, '0 32768 snapshot 1e3/16384 24', /snapshot "/);
test(line, '0 32768 snapshot 123456789012345678901/16384 24', /snapshot "/);
test(line, '0 32768 snapshot', /snapshot ""/);
test(line, `${P} - 256`, pool(12.5, 10.94));
test(line, P, pool(12.5, 10.94)); // an older kernel: no needs_check, no low-water mark
test(line, `${P} needs_check 256`, pool(12.5, 10.94, 'rw', true));
test(line, `${P.replace(' - rw', ' 44 rw')} - 256`, pool(12.5, 10.94)); // a reserved metadata snapshot
test(line, `${P.replace('rw', 'ro')} needs_check 256`, pool(12.5, 10.94, 'ro', true));
test(line, '0 65536 thin-pool Error', pool(null, null, 'Error'));
test(line, `${P.replace(' rw', ' read_write')} - 256`, /thin-pool "/);
test(line, `${P.replace('112/1024', '1025/1024')} - 256`, /thin-pool metadata blocks 1025\/1024/);
test(line, `${P.replace('128/1024', '128/0')} - 256`, /thin-pool data blocks 128\/0/);
test(line, `${P.replace('128/1024', '128')} - 256`, /thin-pool "/);
test(line, `${P.replace(' - rw', ' rw')} - 256`, /thin-pool "/); // no held-root field
test(line, `${P.replace('2 112', 'x 112')} - 256`, /thin-pool "/);
test(line, `${P} - 256 a b c`, /thin-pool "/);
test(line, '0 65536 thin-pool', /thin-pool ""/);
test(line, '0 262144 thin 16384 16383', thin());
test(line, '0 262144 thin 0 -', thin());
test(line, '0 262144 thin 16384', /thin "16384"/);
test(line, '0 262144 thin Error', /thin "Error"/);
test(line, '0 16384 linear ', /target "linear"/);
test(line, '0 16384 error', /target "error"/);
test(line, '', /unexpected dmsetup status output: ""/);
test(line, 'vg0-x: 0 16384 thin 1 0', /unexpected dmsetup status output/); // a prefix is parseDmStatus's job
test(line, '0 x thin 1 0', /unexpected dmsetup status output/);
test(line, 'Device does not exist.', /unexpected dmsetup status output/);

test('several devices: matched by name whatever the order; a missing, repeated or foreign line throws', (t) => {
  const names = ['vg0-ts', 'vg0-tp-tpool'];
  const ok = 'vg0-tp-tpool: ' + P + ' - 256\nvg0-ts: 0 262144 thin 16384 16383\n';
  t.deepEqual(parseDmStatus(ok, names), [thin(), pool(12.5, 10.94)] as DmStatus[]);
  t.throws(() => parseDmStatus('vg0-ts: 0 1 thin 1 0\nvg0-ts: 0 1 thin 1 0', names), { message: /2 lines for vg0-ts/ });
  t.throws(() => parseDmStatus('vg0-ts: 0 1 thin 1 0\nother: 0 1 thin 1 0', names), { message: /0 lines for vg0-tp-tpool/ });
  t.throws(() => parseDmStatus('vg0-ts: 0 1 thin 1 0', names), { message: /1 lines for 2 devices/ });
  t.throws(() => parseDmStatus('0 1 thin 1 0\n1 1 thin 1 0', ['vg0-ts']), { message: /2 lines for 1 devices/ }); // two segments
  t.throws(() => parseDmStatus('', []), { message: /0 lines for 0 devices/ });
});

const pct = test.macro({
  exec(t: ExecutionContext, used: number, total: number, want: number) {
    t.is(lvmPercent(used, total), want);
  },
  title: (_t, used: number, total: number, want: number) => `lvs percent of ${used}/${total} is ${want}`,
});
test(pct, 0, 1024, 0);
test(pct, 1024, 1024, 100);
test(pct, 5, 0, 100); // libdm: no denominator is 100%
test(pct, 1, 1e9, 0.01); // never 0.00 unless empty
test(pct, 1e9 - 1, 1e9, 99.99); // never 100.00 unless full
test(pct, 928, 1024, 90.62);
test(pct, 3, 8, 37.5);
test(pct, 1, 3, 33.33);
test(pct, 2, 3, 66.67);
test(pct, 14408, 16384, 87.94);

test('dm names double the dashes of VG and LV; the pool is read through its -tpool device', (t) => {
  t.is(dmName('vg-0', 'c-snap'), 'vg--0-c--snap');
  const row = { ...lvsFixture('thin-all').find((r) => r.name === 'tsnap')!, vg: 'vg-0', pool: 'my-pool' };
  t.deepEqual(pollDevices(row, 'thin'), ['vg--0-tsnap', 'vg--0-my--pool-tpool']);
  t.deepEqual(pollDevices({ ...row, name: 'a-b' }, 'cow'), ['vg--0-a--b']);
  t.is(pollDevices({ ...row, pool: '' }, 'thin'), null, 'a thin snapshot whose pool lvs did not name: lvs only');
  t.is(pollDevices(row, ''), null);
  t.deepEqual(dmStatusArgv(['a', 'b']), ['dmsetup', 'status', '--noflush', 'a', 'b']);
});

// ---- the verdict: the same as an lvs tick's ----

const cowRow = (): LvRow => lvsFixture('healthy-cow').find((r) => r.name === 'snap')!;
const thinRow = (): LvRow => lvsFixture('thin-all').find((r) => r.name === 'tsnap')!;
const lvsRows = (data: number | null, metadata: number | null) => lvsFixture('thin-all').map((r) => (r.name === 'pool' ? { ...r, dataPercent: data, metadataPercent: metadata } : r));
const emptyReport = (): HeldReport => ({ fillPct: null });

const verdict = test.macro({
  exec(t: ExecutionContext, row: LvRow, st: object[], o: { max?: number; pool?: number }, want: RegExp | null | undefined, lvs?: LvRow[]) {
    const report = emptyReport();
    const spec = { vg: 'vg0', maxFillPct: o.max, poolMaxFillPct: o.pool };
    const got = dmHeldProblem(spec, row, st as DmStatus[], report);
    if (want === undefined || want === null) return t.is(got, want);
    t.is(got?.code, ExitCode.SNAPSHOT_OVERFLOW);
    t.regex(got!.message, want);
    t.regex(got!.message, /NOT consistent/);
    if (!lvs) return;
    const lvsReport = emptyReport();
    t.is(got?.message, heldProblem(spec, lvs, row.name, lvsReport)?.message, 'an lvs tick says the same');
    t.deepEqual(report, lvsReport, 'and fills the report in the same way');
  },
  title: (title) => `dm verdict: ${title}`,
});
test('COW healthy', verdict, cowRow(), [snap(12.65)], { max: 50 }, null);
test('COW over --snapshot-max-fill', verdict, cowRow(), [snap(0.12)], { max: 0.1 },
  /^snapshot vg0\/snap is 0\.12% full, over --snapshot-max-fill 0\.1%: the run was stopped part-way/, lvsFixture('healthy-cow'));
test('COW invalid', verdict, cowRow(), [snap(null, 'Invalid')], {},
  /^snapshot vg0\/snap overflowed and is invalid \(lv_attr swi-I-s---\): data read from it is torn/, lvsFixture('overflowed-cow'));
test('COW Overflow', verdict, cowRow(), [snap(null, 'Overflow')], {}, /overflowed and is invalid/);
test('COW 100% full', verdict, cowRow(), [snap(100)], {}, /snapshot vg0\/snap is 100% full/);
test('COW merge failed: lvs decides', verdict, cowRow(), [snap(null, 'Merge failed')], {}, undefined);
test('COW answered with a thin status: lvs decides', verdict, cowRow(), [thin()], {}, undefined);
test('thin, pool below the limit', verdict, thinRow(), [thin(), pool(50, 20)], {}, null);
test('thin, pool data at the limit', verdict, thinRow(), [thin(), pool(90, 20)], {},
  /^thin pool vg0\/pool data is 90% full, at or above pool_max_fill 90%: the run was stopped part-way and the snapshot removed/, lvsRows(90, 20));
test('thin, pool metadata over a custom limit', verdict, thinRow(), [thin(), pool(10, 61)], { pool: 60 }, /metadata is 61% full, at or above pool_max_fill 60%/, lvsRows(10, 61));
test('thin, pool out of data space', verdict, thinRow(), [thin(), pool(100, 11.52, 'out_of_data_space')], { pool: 100 }, /data is 100% full, at or above pool_max_fill 100%/);
test('thin, pool failed', verdict, thinRow(), [thin('Fail'), pool(null, null, 'Fail')], {}, /^thin pool vg0\/pool has failed \(dmsetup status: Fail\): .*repair the pool/);
test('thin, pool error', verdict, thinRow(), [thin(), pool(null, null, 'Error')], {}, /has failed \(dmsetup status: Error\)/);
test('thin, pool read-only', verdict, thinRow(), [thin(), pool(6.25, 10.94, 'ro')], {}, /thin pool vg0\/pool is in read-only mode/);
test('thin, pool needs_check', verdict, thinRow(), [thin(), pool(6.25, 10.94, 'rw', true)], {}, /is flagged needs_check/);
test('thin, out of space and needs_check: the fill speaks first', verdict, thinRow(), [thin(), pool(95, 1, 'out_of_data_space', true)], {}, /data is 95% full/);
test('thin LV failed in a healthy pool: lvs decides', verdict, thinRow(), [thin('Fail'), pool(6.25, 10.94)], {}, undefined);
test('thin, statuses in the wrong order: lvs decides', verdict, thinRow(), [pool(6.25, 10.94), thin()], {}, undefined);
test('thin, the pool missing: lvs decides', verdict, thinRow(), [thin()], {}, undefined);

test('dm verdict: the report keeps the figures an lvs tick would', (t) => {
  const report = emptyReport();
  t.is(dmHeldProblem({ vg: 'vg0' }, thinRow(), [thin(), pool(42.5, 7)] as DmStatus[], report), null);
  t.deepEqual(report, { fillPct: null, pool: { name: 'vg0/pool', data: 42.5, metadata: 7 } });
  const cow = emptyReport();
  dmHeldProblem({ vg: 'vg0', maxFillPct: 90 }, cowRow(), [snap(87.94)] as DmStatus[], cow);
  t.deepEqual(cow, { fillPct: 87.94 });
  dmHeldProblem({ vg: 'vg0' }, cowRow(), [snap(null, 'Invalid')] as DmStatus[], cow);
  t.deepEqual(cow, { fillPct: 100 });
});
