// The pure parts of observable runs and hooks, one row per case: progress rate/ETA, the hook
// environment, why a hook counts as failed, the run counters, the hook keys of the config file,
// and the metrics text (label blkdelta_job, counters, a first run in progress).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { BlkError, ExitCode } from '../src/errors.js';
import { parseConfig } from '../src/jobs/config.js';
import { hookEnv, hookProblem } from '../src/jobs/hooks.js';
import { renderMetrics, type MetricsRow } from '../src/jobs/metrics.js';
import { countRun, type HookRecord, type JobState, type RunRecord } from '../src/jobs/state.js';
import { RunTracker, progressOf } from '../src/jobs/tracker.js';

const MiB = 1024 * 1024;

const progress = test.macro({
  exec(t: ExecutionContext, p: { done: number; total: number; ms: number }, want: { rateBps: number; etaS: number | null }) {
    const r = progressOf('compare', { bytesDone: p.done, bytesTotal: p.total, bytesDiffering: 0, elapsedMs: p.ms });
    t.deepEqual(r, { phase: 'compare', bytesDone: p.done, bytesTotal: p.total, ...want });
  },
  title: (title) => `progressOf: ${title}`,
});
test('half way at 1 MiB/s', progress, { done: 4 * MiB, total: 8 * MiB, ms: 4000 }, { rateBps: MiB, etaS: 4 });
test('nothing yet: rate 0, eta unknown', progress, { done: 0, total: 8 * MiB, ms: 1500 }, { rateBps: 0, etaS: null });
test('no time elapsed: rate 0, eta unknown', progress, { done: 10, total: 100, ms: 0 }, { rateBps: 0, etaS: null });
test('done: eta 0', progress, { done: 8 * MiB, total: 8 * MiB, ms: 2000 }, { rateBps: 4 * MiB, etaS: 0 });
test('empty device: eta 0', progress, { done: 0, total: 0, ms: 10 }, { rateBps: 0, etaS: 0 });
test('eta rounds up', progress, { done: 3, total: 10, ms: 1000 }, { rateBps: 3, etaS: 3 });
test('huge device (16 TiB) at 500 MB/s', progress, { done: 0.5e12, total: 16 * 2 ** 40, ms: 1000e3 }, { rateBps: 500e6, etaS: 34185 });

const base: RunRecord = {
  job: 'tools', outcome: 'running', start: '2026-11-27T01:00:00.000Z', process: { pid: 7 }, host: 'h',
  source: '/dev/vg0/tools', target: 'backup@store:/dev/backup/tools', targetState: 'unknown',
};

const env = test.macro({
  exec(t: ExecutionContext, name: HookRecord['name'], rec: RunRecord, want: Record<string, string>) {
    t.deepEqual(hookEnv(name, rec), want);
  },
  title: (title) => `hookEnv: ${title}`,
});
const always = { BLKDELTA_JOB: 'tools', BLKDELTA_SOURCE: '/dev/vg0/tools', BLKDELTA_TARGET: 'backup@store:/dev/backup/tools', BLKDELTA_START: '2026-11-27T01:00:00.000Z' };
test('pre_run: only what is known before the sync', env, 'pre_run', base,
  { ...always, BLKDELTA_HOOK: 'pre_run', BLKDELTA_OUTCOME: 'running', BLKDELTA_TARGET_STATE: 'unknown' });
test('post_run after a success: bytes, snapshots, exit code 0', env, 'post_run', {
  ...base, outcome: 'success', exitCode: 0, end: '2026-11-27T01:10:00.000Z', durationS: 600, targetState: 'consistent',
  bytes: { compared: 100, changed: 10, sent: 12, written: 0 }, snapshot: { name: 'vg0/tools-snap', removed: true },
  targetSnapshot: { name: 'backup/tools-t1', reused: false, kept: [] },
}, {
  ...always, BLKDELTA_HOOK: 'post_run', BLKDELTA_OUTCOME: 'success', BLKDELTA_TARGET_STATE: 'consistent', BLKDELTA_EXIT_CODE: '0',
  BLKDELTA_END: '2026-11-27T01:10:00.000Z', BLKDELTA_DURATION_S: '600', BLKDELTA_BYTES_COMPARED: '100', BLKDELTA_BYTES_CHANGED: '10',
  BLKDELTA_BYTES_SENT: '12', BLKDELTA_BYTES_WRITTEN: '0', BLKDELTA_SNAPSHOT: 'vg0/tools-snap', BLKDELTA_TARGET_SNAPSHOT: 'backup/tools-t1',
});
test('on_failure: error and dirty target', env, 'on_failure', { ...base, outcome: 'failed', exitCode: 8, error: 'EIO, read error', targetState: 'dirty' }, {
  ...always, BLKDELTA_HOOK: 'on_failure', BLKDELTA_OUTCOME: 'failed', BLKDELTA_TARGET_STATE: 'dirty', BLKDELTA_EXIT_CODE: '8', BLKDELTA_ERROR: 'EIO, read error',
});
test('post_run after a torn copy: the warnings', env, 'post_run', { ...base, outcome: 'warning', exitCode: 0, warnings: ['copy may be torn: a', 'b'] }, {
  ...always, BLKDELTA_HOOK: 'post_run', BLKDELTA_OUTCOME: 'warning', BLKDELTA_TARGET_STATE: 'unknown', BLKDELTA_EXIT_CODE: '0', BLKDELTA_WARNINGS: 'copy may be torn: a; b',
});

const problem = test.macro({
  exec(t: ExecutionContext, h: Partial<HookRecord>, spawnError: string | undefined, canceled: boolean, want: string | undefined) {
    t.is(hookProblem({ name: 'pre_run', argv: ['/x'], timedOut: false, durationS: 1, ...h }, 30, spawnError, canceled), want);
  },
  title: (title) => `hookProblem: ${title}`,
});
test('exit 0: fine', problem, { exitCode: 0 }, undefined, false, undefined);
test('exit 1', problem, { exitCode: 1 }, 'Command failed with exit code 1', false, 'exited with 1');
test('exit 255', problem, { exitCode: 255 }, undefined, false, 'exited with 255');
test('timed out (killed by SIGTERM)', problem, { timedOut: true, signal: 'SIGTERM' }, 'timed out', false, 'timed out after 30s (hook_timeout) and was killed');
test('interrupted run', problem, { signal: 'SIGTERM' }, 'canceled', true, 'was stopped: the run was interrupted');
test('killed by a signal of its own', problem, { signal: 'SIGSEGV' }, 'signal', false, 'was killed by SIGSEGV');
test('program missing', problem, {}, 'spawn /nope ENOENT', false, 'could not be started: spawn /nope ENOENT');

const counters = test.macro({
  exec(t: ExecutionContext, prev: RunRecord | undefined, old: { runs: number; failures: number } | undefined, rec: RunRecord, want: { runs: number; failures: number }) {
    const state: JobState = { version: 1, job: 'tools', runs: prev ? [prev] : [], counters: old };
    t.deepEqual(countRun(state, rec), want);
  },
  title: (title) => `countRun: ${title}`,
});
const mine = { ...base, queued: base.start };
const other = { ...base, process: { pid: 99 }, queued: '2026-11-26T01:00:00.000Z' };
test('first record ever: one run', counters, undefined, undefined, mine, { runs: 1, failures: 0 });
test('own progress rewrite: nothing counted', counters, mine, { runs: 1, failures: 0 }, { ...mine, progress: { phase: 'compare', bytesDone: 1, bytesTotal: 2, rateBps: 1, etaS: 1 } }, { runs: 1, failures: 0 });
test('own final success', counters, mine, { runs: 4, failures: 1 }, { ...mine, outcome: 'success' }, { runs: 4, failures: 1 });
test('own final failure', counters, mine, { runs: 4, failures: 1 }, { ...mine, outcome: 'failed' }, { runs: 4, failures: 2 });
test('own final interrupted', counters, mine, { runs: 4, failures: 1 }, { ...mine, outcome: 'interrupted' }, { runs: 4, failures: 2 });
test('own final refused (BUSY)', counters, mine, { runs: 4, failures: 1 }, { ...mine, outcome: 'refused' }, { runs: 4, failures: 2 });
test('own final cancelled while waiting: no failure', counters, mine, { runs: 4, failures: 1 }, { ...mine, outcome: 'cancelled' }, { runs: 4, failures: 1 });
test('own final warning: no failure', counters, mine, { runs: 4, failures: 1 }, { ...mine, outcome: 'warning' }, { runs: 4, failures: 1 });
test('new run after a killed one: the kill is a failure', counters, other, { runs: 4, failures: 1 }, mine, { runs: 5, failures: 2 });
test('new run after a finished one', counters, { ...other, outcome: 'success' }, { runs: 4, failures: 1 }, mine, { runs: 5, failures: 1 });
test('record file from before counters existed', counters, { ...other, outcome: 'success' }, undefined, mine, { runs: 1, failures: 0 });

const JOB = '[jobs.tools]\nsource = "/srv/a.img"\ntarget = "/srv/b.img"\n';
const hookKey = test.macro({
  exec(t: ExecutionContext, line: string, want: string) {
    const err = t.throws(() => parseConfig(JOB + line + '\n', 'c.toml'), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.CONFIG);
    t.is(err?.message, want);
  },
  title: (title) => `hook key refused: ${title}`,
});
test('a string, not an array', hookKey, 'pre_run = "/bin/true"',
  'c.toml:4:1: jobs.tools.pre_run: expected a command as an array of strings, like ["/usr/local/bin/x", "arg"], got string "/bin/true"');
test('empty array', hookKey, 'post_run = []', 'c.toml:4:1: jobs.tools.post_run: must name a program: the array is empty');
test('a number in the array', hookKey, 'on_failure = ["/bin/echo", 3]', 'c.toml:4:1: jobs.tools.on_failure: element 1 is integer 3, expected a string');
test('a NUL character', hookKey, 'pre_run = ["/bin/x\\u0000y"]', 'c.toml:4:1: jobs.tools.pre_run: element 0 contains a NUL character');
test('empty program', hookKey, 'pre_run = ["", "x"]', 'c.toml:4:1: jobs.tools.pre_run: the program (element 0) must not be empty');
test('a table', hookKey, 'pre_run = { cmd = "x" }',
  'c.toml:4:1: jobs.tools.pre_run: expected a command as an array of strings, like ["/usr/local/bin/x", "arg"], got a table');
test('a boolean', hookKey, 'pre_run = true',
  'c.toml:4:1: jobs.tools.pre_run: expected a command as an array of strings, like ["/usr/local/bin/x", "arg"], got boolean true');
test('hook_timeout zero', hookKey, 'hook_timeout = 0', 'c.toml:4:1: jobs.tools.hook_timeout: 0 is below the minimum 1');
test('hook_timeout negative', hookKey, 'hook_timeout = -5', 'c.toml:4:1: jobs.tools.hook_timeout: "-5" is not a duration (must be >= 0 seconds)');
test('hook_timeout huge', hookKey, 'hook_timeout = "30d"', 'c.toml:4:1: jobs.tools.hook_timeout: 2592000 is above the maximum 86400');
test('hook_timeout wrong type', hookKey, 'hook_timeout = true',
  'c.toml:4:1: jobs.tools.hook_timeout: expected a duration (seconds, or a string like "36h"), got boolean true');

test('hooks: a job inherits [defaults] and overrides one; hook_timeout defaults to 5 minutes', (t) => {
  const cfg = parseConfig(`[defaults]\npre_run = ["/usr/local/bin/freeze", "--all"]\non_failure = ["/usr/local/bin/page"]\n\n${JOB}on_failure = ["/bin/true"]\n\n[jobs.db]\nsource = "/a"\ntarget = "/b"\nhook_timeout = "90s"\n`, 'c.toml');
  t.deepEqual(cfg.jobs.map((j) => j.hooks), [
    { pre_run: ['/usr/local/bin/freeze', '--all'], post_run: undefined, on_failure: ['/bin/true'], timeout: 300 },
    { pre_run: ['/usr/local/bin/freeze', '--all'], post_run: undefined, on_failure: ['/usr/local/bin/page'], timeout: 90 },
  ]);
});

const metric = test.macro({
  exec(t: ExecutionContext, rows: MetricsRow[], want: string[], absent: RegExp[] = []) {
    const text = renderMetrics(rows);
    const values = text.split('\n').filter((l) => l && !l.startsWith('#'));
    for (const w of want) t.true(values.includes(w), `missing ${w} in\n${values.join('\n')}`);
    for (const a of absent) t.false(a.test(text), `unexpected ${a}`);
    t.false(/\{job=/.test(text), 'the label is blkdelta_job, never job');
  },
  title: (title) => `metrics: ${title}`,
});
const running = { ...mine, queued: '2026-11-27T01:00:00.000Z' };
test('first run in progress: running 1, its start, counters, no last-run figures', metric,
  [{ job: 'tools', running: true, current: running, counters: { runs: 1, failures: 0 } }],
  ['blkdelta_running{blkdelta_job="tools"} 1', 'blkdelta_run_start_timestamp_seconds{blkdelta_job="tools"} 1795741200',
    'blkdelta_runs_total{blkdelta_job="tools"} 1', 'blkdelta_failures_total{blkdelta_job="tools"} 0'],
  [/blkdelta_last_run_success\{/, /blkdelta_last_success_timestamp_seconds\{/]);
test('a run in progress: its last sign of life and bytes done of total', metric,
  [{ job: 'tools', running: true, current: { ...running, updated: '2026-11-27T01:05:00.000Z', progress: { phase: 'compare', bytesDone: 4096, bytesTotal: 8192, rateBps: 1, etaS: 1 } } }],
  ['blkdelta_run_updated_timestamp_seconds{blkdelta_job="tools"} 1795741500', 'blkdelta_run_done_bytes{blkdelta_job="tools"} 4096',
    'blkdelta_run_total_bytes{blkdelta_job="tools"} 8192']);
test('a run no longer alive (killed): no progress figures', metric,
  [{ job: 'tools', running: false, current: { ...running, updated: '2026-11-27T01:05:00.000Z', progress: { phase: 'compare', bytesDone: 4096, bytesTotal: 8192, rateBps: 1, etaS: 1 } } }],
  ['blkdelta_running{blkdelta_job="tools"} 0'], [/blkdelta_run_updated_timestamp_seconds\{/, /blkdelta_run_done_bytes\{/, /blkdelta_run_total_bytes\{/]);
test('finished torn copy: warning 1, success 0', metric,
  [{ job: 'tools', running: false, last: { ...base, outcome: 'warning', exitCode: 0, end: '2026-11-27T01:10:00.000Z' }, counters: { runs: 3, failures: 1 } }],
  ['blkdelta_last_run_success{blkdelta_job="tools"} 0', 'blkdelta_last_run_warning{blkdelta_job="tools"} 1', 'blkdelta_running{blkdelta_job="tools"} 0',
    'blkdelta_runs_total{blkdelta_job="tools"} 3', 'blkdelta_failures_total{blkdelta_job="tools"} 1'],
  [/blkdelta_run_start_timestamp_seconds\{/]);
test('a job name with a quote is escaped', metric,
  [{ job: 'a"b', running: false, last: { ...base, job: 'a"b', outcome: 'success', exitCode: 0 } }],
  ['blkdelta_last_run_success{blkdelta_job="a\\"b"} 1']);
test('counters are typed counter', metric, [], [], [/# TYPE blkdelta_runs_total gauge/, /# TYPE blkdelta_failures_total gauge/]);

test('RunTracker: phase changes and the first byte report are written at once, later reports at most every everyMs', (t) => {
  const saved: RunRecord[] = [];
  const tr = new RunTracker((r) => saved.push(r), base, 60_000);
  const p = (done: number) => ({ bytesDone: done, bytesTotal: 100, bytesDiffering: 0, elapsedMs: 1000 });
  tr.phase('snapshot');
  tr.phase('compare');
  tr.bytes(p(10), 'compare'); // first report: the total is known now
  tr.bytes(p(20), 'compare'); // within everyMs: kept, not written
  tr.bytes(p(30), 'compare');
  tr.bytes(p(100), 'verify'); // phase change: written
  t.deepEqual(saved.map((r) => [r.progress!.phase, r.progress!.bytesDone]), [['snapshot', 0], ['compare', 0], ['compare', 10], ['verify', 100]]);
  t.is(tr.record.progress!.bytesDone, 100);
  t.true(saved.every((r) => typeof r.updated === 'string' && !Number.isNaN(Date.parse(r.updated))));
  tr.phase('cleanup');
  t.deepEqual(saved.at(-1)!.progress, { phase: 'cleanup', bytesDone: 100, bytesTotal: 100, rateBps: 100, etaS: 0 }, 'cleanup keeps the bytes compared');
});

test('RunTracker: everyMs 0 writes every report; a failing write never throws', (t) => {
  let calls = 0;
  const tr = new RunTracker(() => { calls++; throw new Error('EROFS, read-only file system'); }, base, 0);
  t.notThrows(() => {
    tr.phase('compare');
    for (let i = 1; i <= 5; i++) tr.bytes({ bytesDone: i, bytesTotal: 5, bytesDiffering: 0, elapsedMs: i }, 'compare');
  });
  t.is(calls, 6);
  t.is(tr.record.progress!.bytesDone, 5, 'the record in memory stays current');
});
