// The monitoring check across every state: the pure evaluation (table), then the real command on
// real state dirs (corrupt record, unreadable dir as the unprivileged "nobody", bad arguments).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluateJob, formatCheck } from '../src/jobs/check.js';
import type { ReadResult, RunRecord } from '../src/jobs/state.js';
import { runBlkdelta } from './helpers/jobs.js';

const NOW = new Date('2026-11-21T12:00:00Z');
const TH = { warningAge: 36 * 3600, criticalAge: 48 * 3600, maxDuration: 6 * 3600 };
const ago = (h: number) => new Date(NOW.getTime() - h * 3600_000).toISOString();
const bytes = { compared: 1073741824, changed: 1048576, sent: 1100000, written: 1048576 };

function rec(outcome: RunRecord['outcome'], endedHoursAgo: number, more: Partial<RunRecord> = {}): RunRecord {
  return {
    job: 'tools', outcome, start: ago(endedHoursAgo + 0.5), end: outcome === 'running' ? undefined : ago(endedHoursAgo),
    durationS: outcome === 'running' ? undefined : 1800, process: { pid: 4242, startTicks: 7 }, host: 'h',
    source: '/dev/vg0/tools', target: '/backup/tools.img', exitCode: outcome === 'success' ? 0 : 8,
    targetState: 'consistent', bytes: outcome === 'success' ? bytes : undefined, ...more,
  };
}
const ok = (runs: RunRecord[], extra: Partial<Extract<ReadResult, { kind: 'ok' }>> = {}): ReadResult =>
  ({ kind: 'ok', state: { version: 1, job: 'tools', runs, lastSuccess: runs.find((r) => r.outcome === 'success') }, ...extra });

const PERF_OK = "'age'=36000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;";

const check = test.macro({
  exec(t: ExecutionContext, read: ReadResult, alive: boolean, want: { status: number; line: string }) {
    const c = evaluateJob('tools', read, TH, NOW, () => alive);
    const out = formatCheck([c]);
    t.is(out.status as number, want.status);
    t.is(out.text, want.line);
  },
  title: (title) => `check: ${title}`,
});

test('ok', check, ok([rec('success', 10)]), false, { status: 0,
  line: `BLKDELTA OK - tools: last success 10h 0m ago (${ago(10)}), 1.0 MiB changed of 1.0 GiB in 30m 0s | ${PERF_OK}` });
test('old success: warning', check, ok([rec('success', 40)]), false, { status: 1,
  line: `BLKDELTA WARNING - tools: last success 1d 16h ago (${ago(40)}), older than warning_age 1d 12h | 'age'=144000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('very old success: critical', check, ok([rec('success', 50)]), false, { status: 2,
  line: `BLKDELTA CRITICAL - tools: last success 2d 2h ago (${ago(50)}), older than critical_age 2d 0h | 'age'=180000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('failed after a recent success: critical', check,
  ok([rec('failed', 1, { error: 'connection to store2 lost', exitCode: 9 }), rec('success', 10)]), false, { status: 2,
    line: `BLKDELTA CRITICAL - tools: last run failed at ${ago(1)}: connection to store2 lost (exit 9) | 'age'=36000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('failed and target dirty: critical, both said', check,
  ok([rec('failed', 1, { error: 'EIO', targetState: 'dirty' }), rec('success', 10)]), false, { status: 2,
    line: `BLKDELTA CRITICAL - tools: last run failed at ${ago(1)}: EIO (exit 8); target /backup/tools.img is dirty (a write was cut short; it is not a usable copy until the next successful run) | 'age'=36000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('snapshot not removed: critical', check,
  ok([rec('success', 2, { snapshot: { name: 'vg0/tools-snap', removed: false, error: 'lvremove: in use' } })]), false, { status: 2,
    line: `BLKDELTA CRITICAL - tools: snapshot vg0/tools-snap was not removed: lvremove: in use | 'age'=7200s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('running too long: warning', check, ok([rec('running', 7), rec('success', 30)]), true, { status: 1,
  line: `BLKDELTA WARNING - tools: running for 7h 30m (pid 4242), longer than max_duration 6h 0m | 'age'=108000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('running within max_duration: ok', check, ok([rec('running', 0), rec('success', 24)]), true, { status: 0,
  line: `BLKDELTA OK - tools: running for 30m 0s (pid 4242); last success 1d 0h ago (${ago(24)}), 1.0 MiB changed of 1.0 GiB in 30m 0s | 'age'=86400s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('running record of a killed process: critical', check, ok([rec('running', 2), rec('success', 24)]), false, { status: 2,
  line: `BLKDELTA CRITICAL - tools: the run started ${ago(2.5)} was killed (pid 4242 is gone) before it finished; the target may be dirty | 'age'=86400s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('refused by max_concurrent: warning', check, ok([rec('refused', 1, { error: 'all 2 slots are busy', exitCode: 17 }), rec('success', 20)]), false, { status: 1,
  line: `BLKDELTA WARNING - tools: last run refused at ${ago(1)}: all 2 slots are busy (exit 17) | 'age'=72000s;129600;172800;0; 'duration'=1800s;21600;;0; 'compared'=1073741824B;;;0; 'changed'=1048576B;;;0; 'sent'=1100000B;;;0; 'written'=1048576B;;;0;` });
test('never succeeded: critical', check, ok([rec('failed', 1, { error: 'no such file' })]), false, { status: 2,
  line: `BLKDELTA CRITICAL - tools: last run failed at ${ago(1)}: no such file (exit 8); no successful run on record | 'duration'=1800s;21600;;0;` });
test('first run in progress: warning, never ok (no copy exists yet)', check, ok([rec('running', 0)]), true, { status: 1,
  line: 'BLKDELTA WARNING - tools: first run in progress: no copy exists yet' });
test('first run waiting for a slot: warning', check, ok([rec('running', 0, { progress: { phase: 'waiting', bytesDone: 0, bytesTotal: 0, rateBps: 0, etaS: null } })]), true, { status: 1,
  line: 'BLKDELTA WARNING - tools: first run in progress: no copy exists yet' });
test('waiting for a slot after a success: ok, says it waits', check,
  ok([rec('running', 0, { queued: ago(0.25), progress: { phase: 'waiting', bytesDone: 0, bytesTotal: 0, rateBps: 0, etaS: null } }), rec('success', 10)]), true, { status: 0,
    line: `BLKDELTA OK - tools: waiting for a max_concurrent slot for 15m 0s (pid 4242); last success 10h 0m ago (${ago(10)}), 1.0 MiB changed of 1.0 GiB in 30m 0s | ${PERF_OK}` });
test('stopped while waiting for a slot: warning, not critical', check,
  ok([rec('cancelled', 1, { exitCode: 130, error: 'interrupted by SIGTERM while waiting for a max_concurrent slot; the target was not touched' }), rec('success', 10)]), false, { status: 1,
    line: `BLKDELTA WARNING - tools: last run was stopped at ${ago(1)}: interrupted by SIGTERM while waiting for a max_concurrent slot; the target was not touched | ${PERF_OK}` });
test('torn copy: warning even though the run completed', check,
  tornState(), false, { status: 1,
    line: `BLKDELTA WARNING - tools: last run at ${ago(10)} completed with a warning: copy may be torn: source /dev/loop3 was mounted read-write at /mnt | ${PERF_OK}` });

/** As putRecord leaves it: a torn run is the last completed copy (freshness), and a warning. */
function tornState(): ReadResult {
  const r = rec('warning', 10, { exitCode: 0, bytes, warnings: ['copy may be torn: source /dev/loop3 was mounted read-write at /mnt'] });
  return { kind: 'ok', state: { version: 1, job: 'tools', runs: [r], lastSuccess: r } };
}
test('failed pre_run hook: critical', check,
  ok([rec('failed', 1, { exitCode: 19, error: 'pre_run hook /usr/local/bin/freeze exited with 3; the run was not started' }), rec('success', 10)]), false, { status: 2,
    line: `BLKDELTA CRITICAL - tools: last run failed at ${ago(1)}: pre_run hook /usr/local/bin/freeze exited with 3; the run was not started (exit 19) | ${PERF_OK}` });
test('no record: unknown', check, { kind: 'missing', path: '/var/lib/blkdelta/tools.json' }, false, { status: 3,
  line: 'BLKDELTA UNKNOWN - tools: no record in /var/lib/blkdelta/tools.json (never run?)' });
test('corrupt record: unknown', check, { kind: 'corrupt', path: '/s/tools.json', reason: 'not valid JSON (Unexpected end of JSON input)' }, false, { status: 3,
  line: 'BLKDELTA UNKNOWN - tools: record /s/tools.json is corrupt: not valid JSON (Unexpected end of JSON input)' });
test('unreadable state: unknown', check, { kind: 'unreadable', path: '/s/tools.json', reason: 'EACCES, permission denied' }, false, { status: 3,
  line: 'BLKDELTA UNKNOWN - tools: cannot read /s/tools.json: EACCES, permission denied' });

test('--all: the worst status wins, one long-output line per job, prefixed perfdata', (t) => {
  const a = evaluateJob('a', ok([rec('success', 1)]), TH, NOW, () => false);
  const b = evaluateJob('b', { kind: 'missing', path: '/s/b.json' }, TH, NOW, () => false);
  const c = evaluateJob('c', ok([rec('failed', 1, { error: 'EIO' }), rec('success', 5)]), TH, NOW, () => false);
  const out = formatCheck([a, b, c]);
  t.is(out.status, 2);
  const lines = out.text.split('\n');
  t.regex(lines[0]!, /^BLKDELTA CRITICAL - 3 jobs, 1 critical, 0 warning, 1 unknown; b: no record in \/s\/b.json \(never run\?\); c: last run failed at .*: EIO \(exit 8\) \| 'a_age'=3600s;129600;172800;0; /);
  t.regex(lines[0]!, / 'c_age'=18000s;/);
  t.deepEqual(lines.slice(1).map((l) => l.split(':')[0]), ['OK a', 'UNKNOWN b', 'CRITICAL c']);
});

// The command itself, on real files.
function stateDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('command: corrupt record file -> UNKNOWN, exit 3', async (t) => {
  const dir = stateDir(t);
  writeFileSync(join(dir, 'tools.json'), '{"version":1,"job":"tools","runs":[{"outc');
  const r = await runBlkdelta(['check', 'tools', '--state-dir', dir, '--config', join(dir, 'none.toml')]);
  t.is(r.code, 3);
  t.regex(r.stdout, /^BLKDELTA UNKNOWN - tools: record .*tools\.json is corrupt: not valid JSON/);
});

test('command: no record -> UNKNOWN, exit 3', async (t) => {
  const dir = stateDir(t);
  const r = await runBlkdelta(['check', 'tools', '--state-dir', dir, '--config', join(dir, 'none.toml')]);
  t.is(r.code, 3);
  t.is(r.stdout, `BLKDELTA UNKNOWN - tools: no record in ${join(dir, 'tools.json')} (never run?)\n`);
});

test('command: state dir unreadable for the monitoring user (nobody) -> UNKNOWN, exit 3', async (t) => {
  const dir = stateDir(t);
  const state = join(dir, 'state');
  mkdirSync(state, { mode: 0o700 });
  chmodSync(dir, 0o755);
  writeFileSync(join(state, 'tools.json'), JSON.stringify({ version: 1, job: 'tools', runs: [rec('success', 1)] }));
  const r = await runBlkdelta(['check', 'tools', '--state-dir', state, '--config', join(dir, 'none.toml')], { user: 'nobody' });
  t.is(r.code, 3, r.stderr);
  t.is(r.stdout, `BLKDELTA UNKNOWN - tools: cannot read ${join(state, 'tools.json')}: EACCES, permission denied, open '${join(state, 'tools.json')}'\n`);
  const all = await runBlkdelta(['check', '--all', '--state-dir', state, '--config', join(dir, 'none.toml')], { user: 'nobody' });
  t.is(all.code, 3);
  t.regex(all.stdout, /^BLKDELTA UNKNOWN - cannot read state dir .*: EACCES/);
});

test('command: readable records work as the monitoring user, thresholds from options', async (t) => {
  const dir = stateDir(t);
  chmodSync(dir, 0o755);
  const r1 = rec('success', 0.1, { end: new Date(Date.now() - 3 * 3600_000).toISOString() });
  writeFileSync(join(dir, 'tools.json'), JSON.stringify({ version: 1, job: 'tools', lastSuccess: r1, runs: [r1] }), { mode: 0o644 });
  const r = await runBlkdelta(['check', 'tools', '--state-dir', dir, '-w', '2h', '-c', '1d', '--config', join(dir, 'none.toml')], { user: 'nobody' });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stdout, /^BLKDELTA WARNING - tools: last success 3h 0m ago .*, older than warning_age 2h 0m \| 'age'=108\d\ds;7200;86400;0; /);
});

const badArgs = test.macro({
  async exec(t: ExecutionContext, args: string[], want: RegExp) {
    const r = await runBlkdelta(['check', ...args, '--state-dir', '/nonexistent']);
    t.is(r.code, 3);
    t.regex(r.stdout, want);
  },
  title: (_t, args: string[]) => `command: bad arguments -> UNKNOWN, exit 3: ${args.join(' ')}`,
});
test(badArgs, ['-w', '36x', 'tools'], /^BLKDELTA UNKNOWN - --warning-age 36x: "36x" is not a duration/);
test(badArgs, [], /^BLKDELTA UNKNOWN - name one job, or use --all/);
test(badArgs, ['tools', '--bogus'], /^BLKDELTA UNKNOWN - check: unknown option --bogus/);

test('status: table and --json from a state dir, killed runs marked', async (t) => {
  const dir = stateDir(t);
  // above pid_max: never alive; its last sign of life 15 minutes after its start
  const dead = { ...rec('running', 1), process: { pid: 2 ** 22 + 7, startTicks: 1 }, updated: ago(1.25) };
  const good = rec('success', 5);
  writeFileSync(join(dir, 'tools.json'), JSON.stringify({ version: 1, job: 'tools', lastSuccess: good, runs: [dead, good] }));
  const table = await runBlkdelta(['status', '--state-dir', dir, '-n', '2']);
  t.is(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.regex(lines[0]!, /^JOB +OUTCOME +START +DURATION +COMPARED +CHANGED +SENT +TARGET +LAST SUCCESS +PROGRESS +ERROR$/);
  t.regex(lines[1]!, /^tools +killed +\S+ +15m 0s /); // ends at its last sign of life, not now
  t.regex(lines[2]!, /^tools +success +\S+ +30m 0s +1\.0 GiB +1\.0 MiB +1\.0 MiB +consistent /);
  const json = await runBlkdelta(['status', 'tools', '--json', '--state-dir', dir]);
  const parsed = (JSON.parse(json.stdout) as { version: number; jobs: { job: string; runs: { outcome: string; killed: boolean }[] }[] }).jobs;
  t.deepEqual(parsed[0]!.runs.map((r) => [r.outcome, r.killed]), [['running', true], ['success', false]]);
});
