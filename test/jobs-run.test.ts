// `blkdelta run` as real processes on real image files: the job lock (race, SIGKILLed holder),
// max_concurrent across processes, and records left by runs killed at random points.
// Runs are slowed with bwlimit so that they overlap; nothing here measures speed.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { ExitCode } from '../src/errors.js';
import { jobsEnv, readState, runBlkdelta, sleep, spawnBlkdelta, type JobsEnv, type Spawned } from './helpers/jobs.js';

const MiB = 1024 * 1024;

/**
 * Polls until cond() holds, for as long as the run is alive: no fixed deadline that a loaded
 * machine could miss (ava's timeout is the backstop). Throws when the run ended first.
 */
async function whileAlive(run: Spawned, what: string, cond: () => boolean, everyMs = 50): Promise<void> {
  let ended = false;
  void run.done.then(() => (ended = true), () => (ended = true));
  while (!ended) {
    if (cond()) return;
    await sleep(everyMs);
  }
  if (cond()) return;
  throw new Error(`the run ended before ${what}: ${(await run.done).stderr}`);
}

const attempt = (f: () => boolean) => () => {
  try {
    return f();
  } catch {
    return false; // not written yet
  }
};

/** Waits until the job's record says a run has begun its sync (start set after the slot). */
function waitRunning(env: JobsEnv, job: string, run: Spawned): Promise<void> {
  return whileAlive(run, `job ${job} was seen running`, attempt(() => {
    const r = readState(env, job).runs[0];
    return r?.outcome === 'running' && r.start !== r.queued;
  }));
}

/** Waits until the job's record was written by the run's process. */
function waitRecordOf(env: JobsEnv, job: string, run: Spawned): Promise<void> {
  return whileAlive(run, `a record of pid ${run.child.pid}`, attempt(() => readState(env, job).runs[0]?.process.pid === run.child.pid), 20);
}

test('two processes race for one job: exactly one runs, the other exits LOCKED naming the holder', async (t) => {
  const env = jobsEnv(t, ['race'], { size: 2 * MiB, extra: 'bwlimit = "1M"' });
  const a = spawnBlkdelta(['run', 'race', '--config', env.config]);
  const b = spawnBlkdelta(['run', 'race', '--config', env.config]);
  const [ra, rb] = await Promise.all([a.done, b.done]);
  const codes = [ra.code, rb.code].sort();
  t.deepEqual(codes, [ExitCode.OK, ExitCode.LOCKED], `${ra.stderr}\n${rb.stderr}`);
  const [winner, loser] = ra.code === ExitCode.OK ? [a, rb] : [b, ra];
  const state = readState(env, 'race');
  t.is(state.runs.length, 1);
  t.is(state.runs[0]!.outcome, 'success');
  t.is(state.runs[0]!.process.pid, winner.child.pid!);
  t.regex(loser.stderr, new RegExp(`job race is already running: locked by process ${winner.child.pid}, running since ${state.runs[0]!.queued!.replace(/\./g, '\\.')}`));
  const refused = JSON.parse(readFileSync(`${env.stateDir}/race.refused.json`, 'utf8'));
  t.is(refused.outcome, 'refused');
  t.is(refused.exitCode, ExitCode.LOCKED);
  t.deepEqual(readFileSync(env.image('race', 'dst')), readFileSync(env.image('race', 'src')));
});

test('a holder killed with SIGKILL does not block the next run; its record says it was killed', async (t) => {
  const env = jobsEnv(t, ['victim'], { size: 4 * MiB, extra: 'bwlimit = "512K"' });
  const a = spawnBlkdelta(['run', 'victim', '--config', env.config]);
  await waitRunning(env, 'victim', a);
  a.child.kill('SIGKILL');
  const ra = await a.done;
  t.is(ra.signal, 'SIGKILL');
  const check = await runBlkdelta(['check', 'victim', '--config', env.config]);
  t.is(check.code, 2);
  t.regex(check.stdout, new RegExp(`^BLKDELTA CRITICAL - victim: the run started .* was killed \\(pid ${a.child.pid} is gone\\)`));
  const status = await runBlkdelta(['status', 'victim', '--config', env.config]);
  t.regex(status.stdout, /\nvictim +killed /);

  const b = await runBlkdelta(['run', 'victim', '--config', env.config, '--wait-timeout', '0']);
  t.is(b.code, ExitCode.OK, b.stderr);
  const runs = readState(env, 'victim').runs;
  t.deepEqual(runs.map((r) => r.outcome), ['success', 'running']);
  t.is(runs[1]!.process.pid, a.child.pid!);
  t.deepEqual(readFileSync(env.image('victim', 'dst')), readFileSync(env.image('victim', 'src')));
  const ok = await runBlkdelta(['check', 'victim', '--config', env.config]);
  t.is(ok.code, 0, ok.stdout);
});

test('six jobs with max_concurrent 2 started together: never more than two run at once, all six finish', async (t) => {
  const jobs = ['j1', 'j2', 'j3', 'j4', 'j5', 'j6'];
  const env = jobsEnv(t, jobs, { size: 2 * MiB, extra: 'bwlimit = "2M"', globals: 'max_concurrent = 2\nwait_timeout = "5m"' });
  const runs = await Promise.all(jobs.map((j) => spawnBlkdelta(['run', j, '--config', env.config]).done));
  for (const r of runs) t.is(r.code, ExitCode.OK, r.stderr);
  const spans = jobs.map((j) => {
    const r = readState(env, j).runs[0]!;
    t.is(r.outcome, 'success');
    return [Date.parse(r.start), Date.parse(r.end!)] as const;
  });
  const events = spans.flatMap(([s, e]) => [[s, 1], [e, -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of events) most = Math.max(most, (now += d));
  t.is(most, 2, `spans: ${JSON.stringify(spans)}`); // 2, not 1: the runs did overlap
  for (const j of jobs) t.deepEqual(readFileSync(env.image(j, 'dst')), readFileSync(env.image(j, 'src')));
});

test('a job over the limit with --wait-timeout 0 exits BUSY and records it', async (t) => {
  // 16 MiB at 512 KiB/s: about 30 s for the poll to see 'long' running on a loaded machine
  const env = jobsEnv(t, ['long', 'late'], { size: 16 * MiB, extra: 'bwlimit = "512K"', globals: 'max_concurrent = 1' });
  const a = spawnBlkdelta(['run', 'long', '--config', env.config]);
  await waitRunning(env, 'long', a);
  // 'long' holds its slot while stopped: 'late' finds it busy however slowly it starts
  a.child.kill('SIGSTOP');
  t.teardown(() => a.child.kill('SIGCONT'));
  const b = await runBlkdelta(['run', 'late', '--config', env.config, '--wait-timeout', '1s']);
  a.child.kill('SIGCONT');
  t.is(b.code, ExitCode.BUSY);
  t.regex(b.stderr, /all 1 slots \(max_concurrent\) are busy after waiting 1s: held by long \(pid \d+\)/);
  const late = readState(env, 'late').runs[0]!;
  t.is(late.outcome, 'refused');
  t.is(late.exitCode, ExitCode.BUSY);
  t.is((await a.done).code, ExitCode.OK);
});

test('runs killed at random points leave a record that says so, never a half-written file', async (t) => {
  const env = jobsEnv(t, ['rnd'], { size: 2 * MiB, extra: 'bwlimit = "1M"\nhistory = 50' });
  const kills: string[] = [];
  let midRun = 0;
  for (let i = 0; i < 8; i++) {
    const sig = i % 2 ? 'SIGTERM' : 'SIGKILL';
    const p = spawnBlkdelta(['run', 'rnd', '--config', env.config]);
    // Most kills land while the run is syncing (after its record appears), some at start-up.
    if (i % 4 !== 3) await waitRecordOf(env, 'rnd', p).catch(() => undefined);
    await sleep(Math.floor(Math.random() * 1500));
    p.child.kill(sig);
    const r = await p.done;
    kills.push(`${sig}->${r.code ?? r.signal}`);
    let state;
    try {
      state = readState(env, 'rnd'); // throws on a half-written file
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // killed before its first record
      throw err;
    }
    const last = state.runs[0]!;
    if (last.process.pid !== p.child.pid) continue; // killed before it took the lock: no record of its own
    midRun++;
    if (r.code === ExitCode.OK) {
      t.is(last.outcome, 'success');
    } else if (sig === 'SIGKILL') {
      // stays "running" (check reports it killed), unless the kill landed after the run had
      // recorded its result and before the process exited (a wider window on a loaded machine)
      t.true(last.outcome === 'running' || (last.outcome === 'success' && last.end !== undefined), `${last.outcome} after ${kills.join(' ')}`);
      t.is(last.process.pid, p.child.pid);
    } else {
      // a SIGTERM after the run recorded its success leaves that success, and exit 0 (above)
      t.is(r.code, ExitCode.INTERRUPTED, r.stderr);
      t.is(last.outcome, 'interrupted');
      t.is(last.exitCode, ExitCode.INTERRUPTED);
      t.true(['dirty', 'consistent'].includes(last.targetState));
    }
  }
  t.log(kills.join(' '));
  t.true(midRun >= 4, `only ${midRun} of 8 kills hit a run that had written its record`);
  const fin = await runBlkdelta(['run', 'rnd', '--config', env.config]);
  t.is(fin.code, ExitCode.OK, fin.stderr);
  t.deepEqual(readdirSync(env.stateDir).filter((n) => n.includes('.tmp-')), []);
  t.deepEqual(readFileSync(env.image('rnd', 'dst')), readFileSync(env.image('rnd', 'src')));
});

test('SIGTERMs sent without pause once a run has printed its result never take its exit status', async (t) => {
  // Node's own teardown closes its signal handles (restoring the default action) before the
  // process exits; blkdelta exits before that teardown. Without it, all 10 of these died by the signal.
  const env = jobsEnv(t, ['done'], { size: MiB });
  for (let i = 0; i < 10; i++) {
    const p = spawnBlkdelta(['run', 'done', '--config', env.config, '--json']);
    let timer: NodeJS.Timeout | undefined;
    p.child.stdout!.on('data', () => (timer ??= setInterval(() => p.child.kill('SIGTERM'), 1)));
    const r = await p.done;
    clearInterval(timer);
    t.truthy(timer, `the run printed nothing: ${r.stderr}`);
    t.is(r.signal, null, `run ${i} was killed by ${r.signal}`);
    t.is(r.code, ExitCode.OK, r.stderr);
    t.is(readState(env, 'done').runs[0]!.outcome, 'success');
  }
});

test('run --all runs every job in order; metrics file written', async (t) => {
  const env = jobsEnv(t, ['a1', 'a2'], { size: MiB, globals: '' });
  const prom = `${env.dir}/blkdelta.prom`;
  const r = await runBlkdelta(['run', '--all', '--config', env.config, '--metrics-file', prom]);
  t.is(r.code, 0, r.stderr);
  const [a1, a2] = [readState(env, 'a1').runs[0]!, readState(env, 'a2').runs[0]!];
  t.true(Date.parse(a1.end!) <= Date.parse(a2.start));
  const text = readFileSync(prom, 'utf8');
  t.regex(text, /^blkdelta_last_run_success\{blkdelta_job="a1"\} 1$/m);
  t.regex(text, new RegExp(`^blkdelta_last_run_compared_bytes\\{blkdelta_job="a2"\\} ${MiB}$`, 'm'));
  t.regex(text, /^# TYPE blkdelta_target_dirty gauge$/m);
});

test('a failing job: record failed with exit code and error, target untouched is consistent', async (t) => {
  const env = jobsEnv(t, ['bad'], { size: MiB });
  const cfg = readFileSync(env.config, 'utf8').replace(env.image('bad', 'src'), `${env.dir}/missing.img`);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(env.config, cfg);
  const r = await runBlkdelta(['run', 'bad', '--config', env.config]);
  t.is(r.code, ExitCode.SOURCE, r.stderr);
  const last = readState(env, 'bad').runs[0]!;
  t.is(last.outcome, 'failed');
  t.is(last.exitCode, ExitCode.SOURCE);
  t.regex(last.error!, /missing\.img/);
  t.is(last.targetState, 'consistent');
  const check = await runBlkdelta(['check', 'bad', '--config', env.config]);
  t.is(check.code, 2);
});
