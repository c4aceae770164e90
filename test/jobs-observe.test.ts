// A run you can watch, as real processes on real image files: progress lines under journald,
// `status --json` and `check` during a first run, the metrics file at start and end, kill -9
// then status and metrics, a run stopped while waiting for a slot, `run --all`'s summary.
// Runs are slowed with bwlimit so that they can be watched; every wait polls with a deadline.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { ExitCode } from '../src/errors.js';
import { formatAge } from '../src/units.js';
import type { RunRecord } from '../src/jobs/state.js';
import { jobsEnv, readState, runBlkdelta, sleep, spawnBlkdelta, type JobsEnv } from './helpers/jobs.js';

const MiB = 1024 * 1024;

/** Polls `probe` until it returns a value (not undefined), or fails after `ms`. */
async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(100);
  }
  throw new Error(`${what}: not seen within ${ms} ms`);
}

interface StatusJson { job: string; progress?: RunRecord['progress']; runs: (RunRecord & { killed: boolean })[]; counters?: { runs: number; failures: number } }

async function statusJson(env: JobsEnv, job: string): Promise<StatusJson> {
  const r = await runBlkdelta(['status', job, '--json', '--config', env.config]);
  if (r.code !== 0) throw new Error(`status exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { version: number; jobs: StatusJson[] }).jobs[0]!;
}

const metric = (text: string, name: string, job: string) => {
  const m = new RegExp(`^${name}\\{blkdelta_job="${job}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

test('a first run under journald: progress lines, status --json progress, check WARNING, metrics at start and end', async (t) => {
  // Slow enough to be watched by CLI calls on a loaded machine; stopped once everything was seen.
  const env = jobsEnv(t, ['watch'], { size: 32 * MiB, extra: 'bwlimit = "128K"' });
  const prom = `${env.dir}/blkdelta.prom`;
  const run = spawnBlkdelta(['run', 'watch', '--config', env.config, '--metrics-file', prom], { env: { JOURNAL_STREAM: '8:12345' } });
  let stderr = '';
  run.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));

  // The metrics file exists from the start: running, with the run's start time, before any result.
  const started = await until('metrics file with blkdelta_running 1', () => {
    try {
      const text = readFileSync(prom, 'utf8');
      return metric(text, 'blkdelta_running', 'watch') === 1 ? text : undefined;
    } catch { return undefined; }
  });
  const queued = Date.parse(readState(env, 'watch').runs[0]!.queued!) / 1000;
  t.is(metric(started, 'blkdelta_run_start_timestamp_seconds', 'watch'), queued);
  t.is(metric(started, 'blkdelta_runs_total', 'watch'), 1);
  t.is(metric(started, 'blkdelta_failures_total', 'watch'), 0);
  t.is(metric(started, 'blkdelta_last_run_success', 'watch'), undefined, 'no result is claimed before the first run ends');

  const check = await runBlkdelta(['check', 'watch', '--config', env.config]);
  t.is(check.code, 1, check.stdout);
  t.regex(check.stdout, /^BLKDELTA WARNING - watch: first run in progress: no copy exists yet/);

  // status --json shows bytes moving, in the documented shape.
  const s = await until('status --json with bytes done', async () => {
    const j = await statusJson(env, 'watch');
    return j.progress && j.progress.bytesDone > 0 && j.progress.bytesDone < j.progress.bytesTotal ? j : undefined;
  });
  t.deepEqual(Object.keys(s.progress!).sort(), ['bytesDone', 'bytesTotal', 'etaS', 'phase', 'rateBps']);
  t.is(s.progress!.phase, 'compare');
  t.is(s.progress!.bytesTotal, 32 * MiB);
  t.true(s.progress!.rateBps > 0);
  t.true(typeof s.progress!.etaS === 'number' && s.progress!.etaS > 0);
  const table = await runBlkdelta(['status', 'watch', '--config', env.config]);
  t.regex(table.stdout, new RegExp(`\\nwatch +running \\(pid ${run.child.pid}\\) .* compare \\d+% of 32\\.0 MiB `));

  await until('a progress line on stderr', () => (/^<6>job watch: progress /m.test(stderr) ? true : undefined));
  run.child.kill('SIGTERM');
  const r = await run.done;
  t.is(r.code, ExitCode.INTERRUPTED, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  t.true(lines.every((l) => /^<[3-7]>/.test(l)), r.stderr); // every line carries a journald priority
  t.regex(r.stderr, /^<6>job watch: progress \d+\.\d% [\d.]+ [KM]iB\/32\.0 MiB read [\d.]+ [KM]iB\/s .* ETA \d+:\d\d:\d\d/m);

  const end = readFileSync(prom, 'utf8');
  t.is(metric(end, 'blkdelta_running', 'watch'), 0);
  t.is(metric(end, 'blkdelta_last_run_success', 'watch'), 0);
  t.is(metric(end, 'blkdelta_runs_total', 'watch'), 1);
  t.is(metric(end, 'blkdelta_failures_total', 'watch'), 1);
  t.is(metric(end, 'blkdelta_run_start_timestamp_seconds', 'watch'), undefined);
  const rec = readState(env, 'watch').runs[0]!;
  t.is(rec.outcome, 'interrupted');
  t.is(rec.progress, undefined, 'a finished record carries no progress');
});

test('kill -9 mid-run: status says killed with a duration that stops growing; the next run counts the failure', async (t) => {
  const env = jobsEnv(t, ['k'], { size: 12 * MiB, extra: 'bwlimit = "1M"' });
  const prom = `${env.dir}/k.prom`;
  const a = spawnBlkdelta(['run', 'k', '--config', env.config, '--metrics-file', prom]);
  await until('progress in the record', () => ((readSafe(env, 'k')?.progress?.bytesDone ?? 0) > 0 ? true : undefined));
  a.child.kill('SIGKILL');
  t.is((await a.done).signal, 'SIGKILL');

  const j = await statusJson(env, 'k');
  const dead = j.runs[0]!;
  t.true(dead.killed);
  t.is(j.progress, undefined, 'no live progress for a killed run');
  const lived = (Date.parse(dead.updated!) - Date.parse(dead.start)) / 1000;
  // The duration ends at the record's last sign of life, however long after the kill status runs.
  const row = (await runBlkdelta(['status', 'k', '--config', env.config])).stdout.split('\n')[1]!;
  t.true(row.startsWith('k  '), row);
  t.regex(row, new RegExp(`^k +killed +\\S+ +${formatAge(lived)} `));
  // The metrics file was written at the start: it no longer claims the old state, it says running.
  const stale = readFileSync(prom, 'utf8');
  t.is(metric(stale, 'blkdelta_running', 'k'), 1);
  const check = await runBlkdelta(['check', 'k', '--config', env.config]);
  t.is(check.code, 2);
  t.regex(check.stdout, /was killed \(pid \d+ is gone\)/);

  const b = await runBlkdelta(['run', 'k', '--config', env.config, '--metrics-file', prom]);
  t.is(b.code, ExitCode.OK, b.stderr);
  const after = readFileSync(prom, 'utf8');
  t.is(metric(after, 'blkdelta_running', 'k'), 0);
  t.is(metric(after, 'blkdelta_runs_total', 'k'), 2);
  t.is(metric(after, 'blkdelta_failures_total', 'k'), 1, 'the killed run counts as a failure once detected');
});

test('a run waiting for a slot shows "waiting"; SIGTERM while waiting records "cancelled", target untouched, check not CRITICAL', async (t) => {
  const env = jobsEnv(t, ['hog', 'queued'], { size: 6 * MiB, globals: 'max_concurrent = 1\nwait_timeout = "10m"' });
  // hog holds the only slot in its pre_run hook (slot taken, nothing synced) until the test releases it
  const release = `${env.dir}/release`;
  const hold = `pre_run = ["/bin/sh", "-c", "while [ ! -e '${release}' ]; do sleep 0.1; done"]\nhook_timeout = "1h"\n`;
  writeFileSync(env.config, readFileSync(env.config, 'utf8').replace('[jobs.hog]\n', () => `[jobs.hog]\n${hold}`));
  const first = await runBlkdelta(['run', 'queued', '--config', env.config]);
  t.is(first.code, ExitCode.OK, first.stderr);
  writeFileSync(env.image('queued', 'src'), Buffer.alloc(6 * MiB, 7)); // so that a run would have something to write
  const before = readFileSync(env.image('queued', 'dst'));

  const hog = spawnBlkdelta(['run', 'hog', '--config', env.config]);
  t.teardown(() => { writeFileSync(release, ''); hog.child.kill('SIGKILL'); }); // a failed assertion must not leave hog waiting forever
  await until('hog holds the slot', () => (readSafe(env, 'hog')?.progress?.phase === 'hook' ? true : undefined));
  const q = spawnBlkdelta(['run', 'queued', '--config', env.config]);
  t.teardown(() => q.child.kill('SIGKILL'));
  const waiting = await until('queued waits', async () => {
    const j = await statusJson(env, 'queued');
    return j.runs[0]?.outcome === 'running' && j.progress?.phase === 'waiting' ? j : undefined;
  });
  t.is(waiting.runs[0]!.process.pid, q.child.pid!);
  const table = await runBlkdelta(['status', 'queued', '--config', env.config]);
  t.regex(table.stdout, new RegExp(`\\nqueued +waiting \\(pid ${q.child.pid}\\) .*waiting for a slot`));
  const during = await runBlkdelta(['check', 'queued', '--config', env.config]);
  t.is(during.code, 0, during.stdout);
  t.regex(during.stdout, /^BLKDELTA OK - queued: waiting for a max_concurrent slot for /);

  q.child.kill('SIGTERM');
  const rq = await q.done;
  t.is(rq.code, ExitCode.INTERRUPTED, rq.stderr);
  const rec = readState(env, 'queued').runs[0]!;
  t.is(rec.outcome, 'cancelled');
  t.is(rec.targetState, 'consistent');
  t.is(rec.exitCode, ExitCode.INTERRUPTED);
  t.regex(rec.error!, /^interrupted by SIGTERM while waiting for a max_concurrent slot; the target was not touched$/);
  t.deepEqual(readFileSync(env.image('queued', 'dst')), before);
  const check = await runBlkdelta(['check', 'queued', '--config', env.config]);
  t.is(check.code, 1, check.stdout);
  t.regex(check.stdout, /^BLKDELTA WARNING - queued: last run was stopped at \S+: interrupted by SIGTERM while waiting/);
  writeFileSync(release, '');
  t.is((await hog.done).code, ExitCode.OK);
});

test('run --all: a summary table on stdout, exit with the highest code; --json gives every record', async (t) => {
  const env = jobsEnv(t, ['one', 'two', 'three'], { size: MiB });
  const cfg = readFileSync(env.config, 'utf8').replace(env.image('two', 'src'), `${env.dir}/missing.img`);
  writeFileSync(env.config, cfg);
  const r = await runBlkdelta(['run', '--all', '--config', env.config]);
  t.is(r.code, ExitCode.SOURCE, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.regex(lines[0]!, /^JOB +OUTCOME +EXIT +DURATION +CHANGED +SENT +TARGET +PROBLEM$/);
  t.regex(lines[1]!, /^one +success +0 +\S+ +1\.0 MiB +1\.0 MiB +consistent$/);
  t.regex(lines[2]!, /^two +failed +4 +\S+ +consistent +source .*missing\.img does not exist/);
  t.regex(lines[3]!, /^three +success +0 /);
  t.is(lines.length, 4);
  t.regex(r.stderr, /1 of 3 jobs did not succeed: two \(exit 4\)/);

  const j = await runBlkdelta(['run', '--all', '--json', '--config', env.config]);
  t.is(j.code, ExitCode.SOURCE);
  const parsed = JSON.parse(j.stdout) as { version: number; jobs: RunRecord[] };
  t.is(parsed.version, 1);
  t.deepEqual(parsed.jobs.map((x) => [x.job, x.outcome, x.exitCode]), [['one', 'success', 0], ['two', 'failed', 4], ['three', 'success', 0]]);
  const single = await runBlkdelta(['run', 'one', '--json', '--config', env.config]);
  t.is(single.code, 0, single.stderr);
  t.is((JSON.parse(single.stdout) as { jobs: RunRecord[] }).jobs[0]!.outcome, 'success');
});

function readSafe(env: JobsEnv, job: string): RunRecord | undefined {
  try {
    return readState(env, job).runs[0];
  } catch {
    return undefined;
  }
}

