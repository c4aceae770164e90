// The connection dies mid-stream: the per-connection sshd process is SIGKILLed while a sync
// (slowed by --bwlimit so that it is surely running) pushes or pulls. The run must fail with
// exit 9 saying the target may be incomplete, the remote server must exit by itself (no orphan
// left spinning), and a rerun must converge to an identical target.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { sha256 } from './helpers/images.js';
import { runBlkdelta, spawnBlkdelta } from './helpers/jobs.js';
import { BLKDELTA_BIN, childrenOf, startSshd, type TestSshd } from './helpers/sshd.js';

const SIZE = 48 * 1024 * 1024;
let sshd: TestSshd;
const root = mkdtempSync(join(tmpdir(), 'blkdelta-drop-'));
test.before(async () => {
  sshd = await startSshd();
});
test.after.always(async () => {
  await sshd?.stop();
  rmSync(root, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function firstBlockNonZero(file: string): boolean {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(4096);
  readSync(fd, b, 0, b.length, 0);
  closeSync(fd);
  return b.some((x) => x !== 0);
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);

const drop = test.macro(async (t: ExecutionContext, direction: 'push' | 'pull') => {
  const dir = mkdtempSync(join(root, `${direction}-`));
  const source = join(dir, 'src.img');
  const target = join(dir, 'dst.img');
  writeFileSync(source, randomBytes(SIZE));
  writeFileSync(target, Buffer.alloc(SIZE));
  const remote = (p: string) => `ssh://127.0.0.1:${sshd.port}${p}`;
  const ends = direction === 'push' ? [source, remote(target)] : [remote(source), target];
  const ssh = ['-i', sshd.userKey.privatePath, '--known-hosts', sshd.knownHosts, '--remote-cmd', BLKDELTA_BIN, '--no-progress'];
  const env = { SSH_AUTH_SOCK: '' };

  const run = spawnBlkdelta(['sync', ...ssh, '--bwlimit', '6M', ...ends], { env });
  await until('the first written block', () => firstBlockNonZero(target));
  const sessions = sshd.sessionPids();
  t.true(sessions.length > 0, 'an sshd session process serves the run');
  const remoteProcs = sessions.flatMap((pid) => childrenOf(pid));
  t.true(remoteProcs.length > 0, 'the remote server runs under the session');
  for (const pid of sessions) process.kill(pid, 'SIGKILL');

  const failed = await run.done;
  t.is(failed.code, ExitCode.REMOTE, failed.stderr);
  t.regex(failed.stderr, /lost|closed/, 'says the connection went away');
  t.true(failed.stderr.includes('incomplete'), failed.stderr);
  t.true(failed.stderr.includes(target), 'names the target');
  t.not(sha256(target), sha256(source), 'the run really was cut short');

  await until('the remote server to exit on its own', () => !remoteProcs.some(alive), 60_000); // a bound, not a measure: generous for a loaded host

  const rerun = await runBlkdelta(['sync', ...ssh, ...ends], { env });
  t.is(rerun.code, 0, rerun.stderr);
  t.is(sha256(target), sha256(source));
});

test.serial('connection killed mid-stream while pushing', drop, 'push');
test.serial('connection killed mid-stream while pulling', drop, 'pull');

test.serial('SIGINT during an SSH push: exit 130, the remote server exits, the connection closes', async (t) => {
  const dir = mkdtempSync(join(root, 'int-'));
  const source = join(dir, 'src.img');
  const target = join(dir, 'dst.img');
  writeFileSync(source, randomBytes(SIZE));
  writeFileSync(target, Buffer.alloc(SIZE));
  const ssh = ['-i', sshd.userKey.privatePath, '--known-hosts', sshd.knownHosts, '--remote-cmd', BLKDELTA_BIN, '--no-progress'];
  const run = spawnBlkdelta(['sync', ...ssh, '--bwlimit', '6M', source, `ssh://127.0.0.1:${sshd.port}${target}`], { env: { SSH_AUTH_SOCK: '' } });
  await until('the first written block', () => firstBlockNonZero(target));
  const remoteProcs = sshd.sessionPids().flatMap((pid) => [pid, ...childrenOf(pid)]);
  t.true(remoteProcs.length >= 2, 'a session and its server are running');
  run.child.kill('SIGINT');
  const r = await run.done;
  t.is(r.code, ExitCode.INTERRUPTED, r.stderr);
  t.true(r.stderr.includes('incomplete'), r.stderr);
  await until('the session and the remote server to end', () => !remoteProcs.some(alive), 60_000); // a bound, not a measure: generous for a loaded host
});
