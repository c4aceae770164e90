// Hooks as real processes around real runs: the environment each hook sees, a pre_run that fails
// or times out (the run is not started, the target untouched, on_failure told), on_failure after
// a failed sync, a failing post_run turning a success into a warning, and bounded output.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { BIN, jobsEnv, readState, runBlkdelta, sleep, spawnBlkdelta, type JobsEnv } from './helpers/jobs.js';

const MiB = 1024 * 1024;

/** A hook that appends its BLKDELTA_* environment to `file` as "KEY=value" lines, then exits `code`. */
function envDumper(file: string, code = 0): string {
  return `["/bin/sh", "-c", "env | grep ^BLKDELTA_ | sort >> '${file}'; echo '--' >> '${file}'; exit ${code}"]`;
}

function dumps(file: string): Record<string, string>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('--\n').filter((b) => b.trim()).map((b) =>
    Object.fromEntries(b.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])));
}

function setJob(env: JobsEnv, job: string, lines: string): void {
  writeFileSync(env.config, readFileSync(env.config, 'utf8').replace(`[jobs.${job}]\n`, () => `[jobs.${job}]\n${lines}\n`));
}

test('pre_run and post_run see the run\'s facts; a success stays a success', async (t) => {
  const env = jobsEnv(t, ['h'], { size: MiB });
  const pre = join(env.dir, 'pre.env');
  const post = join(env.dir, 'post.env');
  setJob(env, 'h', `pre_run = ${envDumper(pre)}\npost_run = ${envDumper(post)}\non_failure = ${envDumper(join(env.dir, 'fail.env'))}`);
  const r = await runBlkdelta(['run', 'h', '--config', env.config]);
  t.is(r.code, ExitCode.OK, r.stderr);
  const [p] = dumps(pre);
  t.like(p, { BLKDELTA_HOOK: 'pre_run', BLKDELTA_JOB: 'h', BLKDELTA_OUTCOME: 'running', BLKDELTA_SOURCE: env.image('h', 'src'), BLKDELTA_TARGET: env.image('h', 'dst') });
  t.false('BLKDELTA_EXIT_CODE' in p!);
  const [q] = dumps(post);
  t.like(q, { BLKDELTA_HOOK: 'post_run', BLKDELTA_JOB: 'h', BLKDELTA_OUTCOME: 'success', BLKDELTA_EXIT_CODE: '0', BLKDELTA_TARGET_STATE: 'consistent',
    BLKDELTA_BYTES_COMPARED: String(MiB), BLKDELTA_BYTES_CHANGED: String(MiB), BLKDELTA_BYTES_WRITTEN: String(MiB) });
  t.regex(q!.BLKDELTA_DURATION_S!, /^\d+(\.\d+)?$/);
  t.deepEqual(dumps(join(env.dir, 'fail.env')), [], 'on_failure does not run after a success');
  const rec = readState(env, 'h').runs[0]!;
  t.is(rec.outcome, 'success');
  t.deepEqual(rec.hooks!.map((h) => [h.name, h.exitCode, h.timedOut, h.error]), [['pre_run', 0, false, undefined], ['post_run', 0, false, undefined]]);
});

const preRunFails = test.macro({
  async exec(t, hook: string, extra: string, want: { message: RegExp; timedOut: boolean }) {
    const env = jobsEnv(t, ['p'], { size: MiB });
    const fail = join(env.dir, 'fail.env');
    const post = join(env.dir, 'post.env');
    setJob(env, 'p', `pre_run = ${hook}\n${extra}\npost_run = ${envDumper(post)}\non_failure = ${envDumper(fail)}`);
    const t0 = Date.now();
    const r = await runBlkdelta(['run', 'p', '--config', env.config]);
    t.is(r.code, ExitCode.HOOK, r.stderr);
    t.regex(r.stderr, want.message);
    t.deepEqual(readFileSync(env.image('p', 'dst')), Buffer.alloc(MiB), 'the target was not touched');
    const rec = readState(env, 'p').runs[0]!;
    t.is(rec.outcome, 'failed');
    t.is(rec.exitCode, ExitCode.HOOK);
    t.is(rec.targetState, 'consistent');
    t.regex(rec.error!, want.message);
    t.is(rec.hooks![0]!.name, 'pre_run');
    t.is(rec.hooks![0]!.timedOut, want.timedOut);
    t.deepEqual(dumps(post), [], 'post_run does not run when pre_run failed');
    const [f] = dumps(fail);
    t.like(f, { BLKDELTA_HOOK: 'on_failure', BLKDELTA_OUTCOME: 'failed', BLKDELTA_EXIT_CODE: String(ExitCode.HOOK), BLKDELTA_TARGET_STATE: 'consistent' });
    t.regex(f!.BLKDELTA_ERROR!, want.message);
    const check = await runBlkdelta(['check', 'p', '--config', env.config]);
    t.is(check.code, 2);
    t.log(`took ${Date.now() - t0} ms`);
  },
  title: (title) => `pre_run ${title}: the run is not started, recorded failed with exit ${ExitCode.HOOK}, on_failure runs`,
});
test('exits 3', preRunFails, '["/bin/sh", "-c", "echo cannot freeze the database >&2; exit 3"]', '',
  { message: /pre_run hook \/bin\/sh exited with 3 \(last output: cannot freeze the database\); the run was not started/, timedOut: false });
test('times out', preRunFails, '["/bin/sleep", "600"]', 'hook_timeout = 1',
  { message: /pre_run hook \/bin\/sleep timed out after 1s \(hook_timeout\) and was killed; the run was not started/, timedOut: true });
test('is missing', preRunFails, '["/nonexistent/freeze"]', '',
  { message: /pre_run hook \/nonexistent\/freeze could not be started: .*ENOENT/, timedOut: false });

test('on_failure after a failed sync: told the outcome and exit code; post_run runs too', async (t) => {
  const env = jobsEnv(t, ['f'], { size: MiB });
  const fail = join(env.dir, 'fail.env');
  const post = join(env.dir, 'post.env');
  writeFileSync(env.config, readFileSync(env.config, 'utf8').replace(env.image('f', 'src'), `${env.dir}/missing.img`));
  setJob(env, 'f', `post_run = ${envDumper(post)}\non_failure = ${envDumper(fail)}`);
  const r = await runBlkdelta(['run', 'f', '--config', env.config]);
  t.is(r.code, ExitCode.SOURCE, r.stderr);
  const [f] = dumps(fail);
  t.like(f, { BLKDELTA_HOOK: 'on_failure', BLKDELTA_OUTCOME: 'failed', BLKDELTA_EXIT_CODE: String(ExitCode.SOURCE), BLKDELTA_TARGET_STATE: 'consistent' });
  t.regex(f!.BLKDELTA_ERROR!, /missing\.img does not exist/);
  t.like(dumps(post)[0], { BLKDELTA_OUTCOME: 'failed' });
  t.deepEqual(readState(env, 'f').runs[0]!.hooks!.map((h) => h.name), ['post_run', 'on_failure']);
});

test('a failing post_run turns a success into a warning (exit 0), and check says WARNING', async (t) => {
  const env = jobsEnv(t, ['w'], { size: MiB });
  setJob(env, 'w', 'post_run = ["/bin/sh", "-c", "echo thaw failed; exit 5"]');
  const r = await runBlkdelta(['run', 'w', '--config', env.config]);
  t.is(r.code, ExitCode.OK, r.stderr);
  t.regex(r.stderr, /job w: post_run: thaw failed/);
  const rec = readState(env, 'w').runs[0]!;
  t.is(rec.outcome, 'warning');
  t.deepEqual(rec.warnings, ['post_run hook /bin/sh exited with 5 (last output: thaw failed)']);
  t.deepEqual(readFileSync(env.image('w', 'dst')), readFileSync(env.image('w', 'src')), 'the copy itself is complete');
  const check = await runBlkdelta(['check', 'w', '--config', env.config]);
  t.is(check.code, 1, check.stdout);
  t.regex(check.stdout, /^BLKDELTA WARNING - w: last run at \S+ completed with a warning: post_run hook \/bin\/sh exited with 5/);
});

test('hook output goes to the log line by line, bounded to 64 KiB per hook', async (t) => {
  const env = jobsEnv(t, ['o'], { size: MiB });
  // 4000 lines of 100 characters (about 400 KB), then one more line on stderr
  setJob(env, 'o', 'pre_run = ["/bin/sh", "-c", "i=0; while [ $i -lt 4000 ]; do printf \'%099d\\\\n\' $i; i=$((i+1)); done; echo last >&2"]');
  const r = await runBlkdelta(['run', 'o', '--config', env.config]);
  t.is(r.code, ExitCode.OK, r.stderr);
  const logged = r.stderr.split('\n').filter((l) => l.startsWith('blkdelta: job o: pre_run: '));
  t.true(logged.length >= 600 && logged.length <= 660, `${logged.length} lines logged`);
  t.is(logged[0], `blkdelta: job o: pre_run: ${'0'.repeat(99)}`);
  t.regex(r.stderr, /blkdelta: warning: job o: pre_run: \d+ more bytes of output not logged \(limit 65536\)/);
  t.true(r.stderr.length < 120 * 1024, `stderr is ${r.stderr.length} bytes`);
});

test('config check lists the hooks and warns about a hook program that cannot be run', async (t) => {
  const env = jobsEnv(t, ['c'], { size: 4096 });
  const notExecutable = env.image('c', 'src'); // mode 0644
  setJob(env, 'c', `pre_run = ["/nonexistent/freeze"]\npost_run = ["${notExecutable}"]\non_failure = ["logger", "-t", "blkdelta"]\nhook_timeout = "90s"`);
  const r = await runBlkdelta(['config', 'check', '--config', env.config]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^ {2}c: .*; hooks pre_run, post_run, on_failure \(timeout 1m 30s\)$/m);
  t.regex(r.stderr, /warning: job c: pre_run hook \/nonexistent\/freeze cannot be run: ENOENT/);
  t.true(r.stderr.includes(`warning: job c: post_run hook ${notExecutable} cannot be run: EACCES`), r.stderr);
  t.notRegex(r.stderr, /on_failure/, 'a program looked up in PATH is not checked');
});

test('no shell: arguments reach the hook as written, $VARS and ; included', async (t) => {
  const env = jobsEnv(t, ['n'], { size: 4096 });
  setJob(env, 'n', 'pre_run = ["/bin/echo", "$BLKDELTA_JOB;", "rm", "-rf", "`x`"]');
  const r = await runBlkdelta(['run', 'n', '--config', env.config]);
  t.is(r.code, ExitCode.OK, r.stderr);
  t.regex(r.stderr, /^blkdelta: job n: pre_run: \$BLKDELTA_JOB; rm -rf `x`$/m);
});

test('SIGTERM during pre_run: the hook is stopped, the run recorded interrupted with the target untouched, on_failure runs', async (t) => {
  const env = jobsEnv(t, ['s'], { size: MiB });
  const fail = join(env.dir, 'fail.env');
  const pid = join(env.dir, 'hook.pid');
  setJob(env, 's', `pre_run = ["/bin/sh", "-c", "echo $$ > '${pid}'; exec sleep 600"]\non_failure = ${envDumper(fail)}`);
  const run = spawnBlkdelta(['run', 's', '--config', env.config]);
  const end = Date.now() + 120_000;
  while (!existsSync(pid) || readFileSync(pid, 'utf8').trim() === '') {
    if (Date.now() > end) throw new Error('pre_run did not start');
    await sleep(100);
  }
  const hookPid = Number(readFileSync(pid, 'utf8'));
  run.child.kill('SIGTERM');
  const r = await run.done;
  t.is(r.code, ExitCode.INTERRUPTED, r.stderr);
  t.throws(() => process.kill(hookPid, 0), { code: 'ESRCH' }, 'the hook process is gone');
  const rec = readState(env, 's').runs[0]!;
  t.is(rec.outcome, 'interrupted');
  t.is(rec.targetState, 'consistent');
  t.regex(rec.hooks![0]!.error!, /pre_run hook \/bin\/sh was stopped: the run was interrupted/);
  t.deepEqual(readFileSync(env.image('s', 'dst')), Buffer.alloc(MiB));
  t.like(dumps(fail)[0], { BLKDELTA_OUTCOME: 'interrupted', BLKDELTA_EXIT_CODE: String(ExitCode.INTERRUPTED) });
});

// bin/blkdelta starts Node without NODE_EXTRA_CA_CERTS (parsing a CA bundle costs every process
// ~40 ms of CPU, and blkdelta speaks no TLS) and puts it back for its children. Run through the
// shebang itself, as an installed blkdelta is: Node warns at start-up about an extra CA file it
// cannot load, so a missing one shows whether Node was given it.
const caEnv = test.macro({
  async exec(t, ca: string | undefined) {
    const env = jobsEnv(t, ['c'], { size: MiB });
    const seen = join(env.dir, 'ca.env');
    setJob(env, 'c', `post_run = ["/bin/sh", "-c", "env | grep -E '^(NODE_EXTRA_CA_CERTS|BLKDELTA_EXTRA_CA_CERTS)=' | sort > '${seen}'; true"]`);
    const { NODE_EXTRA_CA_CERTS: _inherited, ...base } = process.env;
    const child = spawn(BIN, ['run', 'c', '--config', env.config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, JOURNAL_STREAM: '', ...(ca === undefined ? {} : { NODE_EXTRA_CA_CERTS: ca }) } });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.resume();
    const code = await new Promise((resolve, reject) => child.once('error', reject).once('close', resolve));
    t.is(code, ExitCode.OK, stderr);
    t.notRegex(stderr, /extra certs/i, 'Node was started without NODE_EXTRA_CA_CERTS');
    t.is(readFileSync(seen, 'utf8'), ca === undefined ? '' : `NODE_EXTRA_CA_CERTS=${ca}\n`, 'the hook gets NODE_EXTRA_CA_CERTS as it was, and nothing of ours');
    t.deepEqual(readFileSync(env.image('c', 'dst')), readFileSync(env.image('c', 'src')));
  },
  title: (title) => `NODE_EXTRA_CA_CERTS ${title}: Node starts without it, the hooks get it as given`,
});
test('set (a file that does not exist, with a space)', caEnv, '/nonexistent/blkdelta test ca.pem');
test('unset', caEnv, undefined);
