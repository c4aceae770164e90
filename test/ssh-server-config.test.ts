// `blkdelta server --config FILE` as an authorized_keys forced command, against a real sshd on
// 127.0.0.1 and the real CLI: allow list, read-only, an empty allow list refused, the server's
// snapshot policy winning over the client (which may only ask), and max_concurrent: three pushes
// at once to max_concurrent 1 (wait_timeout 0: one succeeds, two exit 17; with a wait: all three
// succeed, one after the other, as the sessions' own log shows), and what the waiting costs in CPU.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { readHolder } from '../src/locks/flock.js';
import { makePair, sha256, type ImagePair } from './helpers/images.js';
import { runBlkdelta, spawnBlkdelta, type Run } from './helpers/jobs.js';
import { makeKey, type TestKey } from './helpers/keys.js';
import { BLKDELTA_BIN, childrenOf, startSshd, type TestSshd } from './helpers/sshd.js';

let sshd: TestSshd;
const root = mkdtempSync(join(tmpdir(), 'blkdelta-srvcfg-ssh-'));
const allowed = join(root, 'allowed');
const keys: Record<string, TestKey> = {};
const stateOf = (name: string) => join(root, `state-${name}`);
const logOf = (name: string) => join(root, `server-${name}.log`);

/** One key per server config; each key's forced command is `blkdelta server --config <its file>`. */
const CONFIGS: Record<string, string> = {
  rw: `allow = ["${allowed}/*/*"]\n`,
  ro: `allow = ["${allowed}/*/*"]\nread_only = true\n`,
  empty: 'allow = []\n',
  policy: `allow = ["${allowed}/*/*"]\nstate_dir = "${stateOf('policy')}"\n[server.target_snapshot]\nkeep_last = 3\nsize = "10%ORIGIN"\n`,
  busy: `allow = ["${allowed}/*/*"]\nmax_concurrent = 1\nwait_timeout = 0\nstate_dir = "${stateOf('busy')}"\n`,
  queue: `allow = ["${allowed}/*/*"]\nmax_concurrent = 1\nwait_timeout = "10m"\nstate_dir = "${stateOf('queue')}"\n`,
};

test.before(async () => {
  sshd = await startSshd();
  mkdirSync(allowed);
  const lines = Object.entries(CONFIGS).map(([name, body]) => {
    const file = join(root, `${name}.toml`);
    writeFileSync(file, `[server]\n${body}`);
    keys[name] = makeKey(sshd.dir, `user_${name}`);
    return `restrict,command="${BLKDELTA_BIN} server --config ${file} 2>>${logOf(name)}" ${keys[name]!.publicLine}\n`;
  });
  writeFileSync(sshd.authorizedKeys, lines.join(''));
});
test.after.always(async () => {
  await sshd?.stop();
  rmSync(root, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
const url = (path: string) => `ssh://127.0.0.1:${sshd.port}${path}`;
const sshArgs = (key: string) => ['-i', keys[key]!.privatePath, '--known-hosts', sshd.knownHosts, '--no-progress'];
const cli = (args: string[]): Promise<Run> => runBlkdelta(args, { env: { SSH_AUTH_SOCK: '' } });
const pairIn = (dir: string, blocks?: number): ImagePair => makePair(mkdtempSync(join(dir, 'p-')), blocks, 9);

test('allow list: a target inside is written, one outside is refused (12) and untouched', async (t) => {
  const p = pairIn(allowed);
  const ok = await cli(['sync', ...sshArgs('rw'), p.source, url(p.target)]);
  t.is(ok.code, 0, ok.stderr);
  t.is(sha256(p.target), sha256(p.source));
  const q = pairIn(root);
  const before = sha256(q.target);
  const out = await cli(['sync', ...sshArgs('rw'), q.source, url(q.target)]);
  t.is(out.code, ExitCode.PERMISSION, out.stderr);
  t.regex(out.stderr, /refused by the server: device .* is outside the server's --allow list/);
  t.is(sha256(q.target), before);
});

test('read_only = true: a push is refused (12), a pull and a verify work', async (t) => {
  const p = pairIn(allowed);
  const before = sha256(p.target);
  const push = await cli(['sync', ...sshArgs('ro'), p.source, url(p.target)]);
  t.is(push.code, ExitCode.PERMISSION, push.stderr);
  t.regex(push.stderr, /cannot be written: the server runs with --read-only/);
  t.is(sha256(p.target), before);
  const local = join(mkdtempSync(join(root, 'pull-')), 'copy.img');
  writeFileSync(local, Buffer.alloc(readFileSync(p.source).length));
  const pull = await cli(['sync', ...sshArgs('ro'), url(p.source), local]);
  t.is(pull.code, 0, pull.stderr);
  t.is(sha256(local), sha256(p.source));
  const verify = await cli(['verify', ...sshArgs('ro'), local, url(p.source)]);
  t.is(verify.code, 0, verify.stderr);
});

test('allow = [] in the server config: the server refuses to start (15 in its log), the client exits 9 and nothing is written', async (t) => {
  const p = pairIn(allowed);
  const before = sha256(p.target);
  const r = await cli(['sync', ...sshArgs('empty'), p.source, url(p.target)]);
  t.is(r.code, ExitCode.REMOTE, r.stderr);
  t.is(sha256(p.target), before);
  t.regex(readFileSync(logOf('empty'), 'utf8'), /empty\.toml:2:1: server\.allow: is empty: list the device paths clients may open/);
});

test('target snapshots: the server\'s policy decides; a client cannot set keep or size', async (t) => {
  const p = pairIn(allowed);
  const before = sha256(p.target);
  const keep = await cli(['sync', ...sshArgs('policy'), '--target-snapshot', '--keep', '0', p.source, url(p.target)]);
  t.is(keep.code, ExitCode.USAGE, keep.stderr);
  t.regex(keep.stderr, /--keep cannot be used with a remote target: its server keeps target snapshots by its own \[server.target_snapshot\] policy/);
  const size = await cli(['sync', ...sshArgs('policy'), '--target-snapshot', '--target-snapshot-size', '99%ORIGIN', p.source, url(p.target)]);
  t.is(size.code, ExitCode.USAGE, size.stderr);
  const none = await cli(['sync', ...sshArgs('rw'), '--target-snapshot', p.source, url(p.target)]);
  t.is(none.code, ExitCode.PERMISSION, none.stderr);
  t.regex(none.stderr, /the client asks for a target snapshot, but this server has no \[server.target_snapshot\] policy/);
  // with a policy the server applies it: this image file is no LV, so its snapshot fails before any write
  const applied = await cli(['sync', ...sshArgs('policy'), '--target-snapshot', '--job', 'nightly', p.source, url(p.target)]);
  t.is(applied.code, ExitCode.SNAPSHOT, applied.stderr);
  t.regex(applied.stderr, /need an LVM logical volume as target/);
  t.is(sha256(p.target), before);
});


/** A random source and a zeroed target of `mib` MiB: every block travels. */
function fullCopy(mib: number): ImagePair {
  const dir = mkdtempSync(join(allowed, 'f-'));
  const p = { source: join(dir, 'src.img'), target: join(dir, 'dst.img'), differing: mib * 256 };
  writeFileSync(p.source, randomBytes(mib * MiB));
  writeFileSync(p.target, Buffer.alloc(mib * MiB));
  return p;
}

/** The live pid written in a slot file by the session holding it (waits until there is one). */
async function slotHolder(state: string): Promise<number> {
  const slot = join(state, 'locks', 'server-slot-1.lock');
  for (;;) {
    const h = existsSync(slot) ? readHolder(slot) : null;
    if (h && existsSync(`/proc/${h.pid}`)) return h.pid;
    await new Promise((r) => setTimeout(r, 50)); // ava's timeout bounds this
  }
}

test('max_concurrent 1, wait_timeout 0: of three pushes at once exactly one succeeds, two exit 17 naming the limit', async (t) => {
  const pairs = [0, 1, 2].map(() => fullCopy(8));
  const runs = pairs.map((p) => spawnBlkdelta(['sync', ...sshArgs('busy'), '--bwlimit', '1M', p.source, url(p.target)], { env: { SSH_AUTH_SOCK: '' } }));
  // Stop the session that won the slot until the other two are done, so that a slow start of one
  // of them under load cannot find the slot free again (SIGSTOP/SIGCONT by the pid it recorded).
  const winner = await slotHolder(stateOf('busy'));
  process.kill(winner, 'SIGSTOP');
  let stopped = true;
  t.teardown(() => { if (stopped) process.kill(winner, 'SIGCONT'); });
  const settled = runs.map((r) => r.done.then((x) => x));
  await until(() => runs.filter((r) => r.child.exitCode !== null).length >= 2);
  process.kill(winner, 'SIGCONT');
  stopped = false;
  const done = await Promise.all(settled);
  t.deepEqual(done.map((r) => r.code).sort((x, y) => x! - y!), [0, ExitCode.BUSY, ExitCode.BUSY], done.map((r) => r.stderr).join('\n'));
  for (const [i, r] of done.entries()) {
    if (r.code === 0) t.is(sha256(pairs[i]!.target), sha256(pairs[i]!.source));
    else {
      t.regex(r.stderr, /all 1 slots \(the server's max_concurrent = 1\) are busy after waiting 0s: held by /);
      t.deepEqual(readFileSync(pairs[i]!.target), Buffer.alloc(8 * MiB), 'a refused push writes nothing');
    }
  }
});

/** utime+stime in clock ticks (1/100 s) of these processes, by pid (gone: absent). */
function cpuTicks(pids: number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, Number(f[11]) + Number(f[12]));
    } catch { /* exited */ }
  }
  return out;
}

/**
 * Waits for cond while every run is alive; ava's timeout bounds it (no timeout of its own to
 * decide an outcome under load). A run that ended first fails the wait with its stderr.
 */
async function until(cond: () => boolean, runs: { done: Promise<{ code: number | null; stderr: string }> }[] = []): Promise<void> {
  let ended: { code: number | null; stderr: string } | undefined;
  for (const r of runs) void r.done.then((res) => (ended ??= res), () => undefined);
  while (!cond()) {
    if (ended) throw new Error(`a run ended (exit ${ended.code}) before the awaited state: ${ended.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('max_concurrent 1 with a wait: three pushes all succeed one after the other; waiting costs ~no CPU', async (t) => {
  const pairs = [0, 1, 2].map(() => fullCopy(4));
  const push = (p: ImagePair) => spawnBlkdelta(['sync', ...sshArgs('queue'), '--bwlimit', '4M', p.source, url(p.target)], { env: { SSH_AUTH_SOCK: '' } });
  const a = push(pairs[0]!);
  await slotHolder(stateOf('queue'));
  process.kill(a.child.pid!, 'SIGSTOP'); // A keeps its session (and the slot) while B and C wait
  let stopped = true;
  t.teardown(() => { if (stopped) process.kill(a.child.pid!, 'SIGCONT'); });
  const b = push(pairs[1]!);
  const c = push(pairs[2]!);
  const stderrOf = (s: typeof b) => { let e = ''; s.child.stderr!.on('data', (d: Buffer) => (e += d.toString())); return () => e; };
  const [eb, ec] = [stderrOf(b), stderrOf(c)];
  await until(() => /waiting for a slot on ssh /.test(eb()) && /waiting for a slot on ssh /.test(ec()), [b, c]);
  t.regex(eb(), /waiting for a slot on ssh \S+127\.0\.0\.1:\d+ \(the server's max_concurrent = 1, wait_timeout 10m/);

  const pids = () => [b.child.pid!, c.child.pid!, ...childrenOf(sshd.pid)];
  const t0 = cpuTicks(pids());
  const w0 = Date.now();
  await new Promise((r) => setTimeout(r, 10_000)); // the measurement window, not a condition
  const t1 = cpuTicks(pids());
  const wall = (Date.now() - w0) / 1000;
  let ticks = 0;
  for (const [pid, v] of t1) if (t0.has(pid)) ticks += v - t0.get(pid)!;
  const cpu = ticks / 100;
  t.log(`CPU of 2 waiting clients + the sshd tree (their servers, flock children, A's idle server) over ${wall.toFixed(1)} s: ${cpu.toFixed(2)} s`);
  // a rate, not a total: on a loaded machine the 10 s window stretched to 73 s once
  t.true(cpu / wall < 0.03, `waiting used ${cpu} s of CPU in ${wall} s (limit 3% of one core)`);

  process.kill(a.child.pid!, 'SIGCONT');
  stopped = false;
  const runs = await Promise.all([a.done, b.done, c.done]);
  for (const [i, r] of runs.entries()) {
    t.is(r.code, 0, r.stderr);
    t.is(sha256(pairs[i]!.target), sha256(pairs[i]!.source));
  }
  // the sessions' log: "taken" and "released" strictly alternate, so no two sessions overlapped
  const events = readFileSync(logOf('queue'), 'utf8').split('\n').filter((l) => / slot 1 (of 1 taken|released)/.test(l)).map((l) => (l.includes('taken') ? '+' : '-'));
  t.is(events.join(''), '+-+-+-');
});
