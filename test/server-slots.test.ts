// The server end of max_concurrent and of server-owned snapshots, against a real `blkdelta server`
// process spoken to frame by frame (test/helpers: none faked): a session over the limit gets a
// WAIT frame (clients with the wait cap), waits in the kernel (a flock child, no CPU), ends its
// wait at stdin EOF or SIGTERM leaving no child, times out with ERROR 17 naming the limit; a
// protocol-1 HELLO that sets keep/size is refused (12), as is a snapshot request to a server
// without [server.target_snapshot]; nothing is written in any of these cases.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { CAPS, PROTOCOL_MAGIC } from '../src/proto/messages.js';
import { FrameReader, FrameWriter, Msg, msgName, type Frame } from '../src/proto/wire.js';
import { childrenOf } from './helpers/sshd.js';
import { BIN } from './helpers/jobs.js';

const root = mkdtempSync(join(tmpdir(), 'blkdelta-srvslots-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

interface Server { child: ChildProcess; reader: FrameReader; writer: FrameWriter; exit: Promise<number | null>; stderr: () => string }

function startServer(args: string[]): Server {
  const child = spawn(process.execPath, [BIN, 'server', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  // not 'close': that waits for stdout too, which the FrameReader stops reading after the last frame
  const exit = Promise.all([new Promise<number | null>((r) => child.once('exit', (code) => r(code))), new Promise((r) => child.stderr!.once('end', r))]).then(([code]) => code);
  return { child, reader: new FrameReader(child.stdout!), writer: new FrameWriter(child.stdin!), exit, stderr: () => err };
}

function hello(path: string, extra: Record<string, unknown> = {}, caps: string[] = [...CAPS]) {
  return { magic: PROTOCOL_MAGIC, version: 1, caps, role: 'target', path, write: true, ...extra };
}

async function next(s: Server): Promise<Frame & { json: Record<string, unknown> }> {
  const f = await s.reader.next();
  if (!f) throw new Error(`server closed; stderr: ${s.stderr()}`);
  return { ...f, json: f.payload.length ? JSON.parse(f.payload.toString('utf8')) as Record<string, unknown> : {} };
}

/**
 * A state dir, a 1 MiB target in an allowed dir, and hold(): another process (bash holding
 * `flock` on the server's slot 1, as a server session would) until release() kills it by PID.
 */
function setup(t: import('ava').ExecutionContext): { state: string; target: string; allow: string; hold: () => Promise<{ pid: number; release: () => Promise<void> }> } {
  const dir = mkdtempSync(join(root, 'case-'));
  const state = join(dir, 'state');
  const target = join(dir, 'img', 'dst.img');
  mkdirSync(join(dir, 'img'));
  writeFileSync(target, Buffer.alloc(1 << 20, 7));
  const holders: ChildProcess[] = [];
  t.teardown(() => holders.forEach((h) => h.kill('SIGKILL')));
  return {
    state, target, allow: `${join(dir, 'img')}/*`,
    hold: async () => {
      mkdirSync(join(state, 'locks'), { recursive: true });
      const lock = join(state, 'locks', 'server-slot-1.lock');
      const h = spawn('bash', ['-c', 'exec 9<>"$1"; flock -x 9; printf \'{"pid":%d,"start":"now","job":"test-holder"}\\n\' $$ >&9; echo locked; exec sleep 3600', 'hold', lock],
        { stdio: ['ignore', 'pipe', 'inherit'] });
      holders.push(h);
      await new Promise((r) => h.stdout!.once('data', r));
      const gone = new Promise<void>((r) => h.once('exit', () => r()));
      return { pid: h.pid!, release: async () => { h.kill('SIGTERM'); await gone; } };
    },
  };
}

const flockChildren = (pid: number) => childrenOf(pid).filter((p) => {
  try { return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'flock'; } catch { return false; }
});
/** The server's flock children, once it has started them (WAIT goes out just before). */
async function waitersOf(s: Server): Promise<number[]> {
  for (;;) {
    const pids = flockChildren(s.child.pid!);
    if (pids.length || s.child.exitCode !== null) return pids;
    await new Promise((r) => setTimeout(r, 20));
  }
}
const alive = (pid: number) => existsSync(`/proc/${pid}`);

test('over the limit: WAIT frame, a sleeping flock child, then WELCOME once the slot frees', async (t) => {
  const c = setup(t);
  const held = await c.hold();
  const s = startServer(['--allow', c.allow, '--max-concurrent', '1', '--wait-timeout', '10m', '--state-dir', c.state]);
  await s.writer.sendJson(Msg.HELLO, hello(c.target));
  const w = await next(s);
  t.is(msgName(w.type), 'WAIT');
  t.deepEqual(w.json, { maxConcurrent: 1, waitTimeout: 600, holders: `held by test-holder (pid ${held.pid})` });
  const waiters = await waitersOf(s);
  t.is(waiters.length, 1, 'one blocking flock per slot');
  await held.release();

  const welcome = await next(s);
  t.is(msgName(welcome.type), 'WELCOME', s.stderr());
  t.false(waiters.some(alive), 'the flock child is gone once the slot is taken');
  s.child.stdin!.end();
  t.is(await s.exit, ExitCode.REMOTE, s.stderr()); // the client left before START
});

test('a client without the wait cap gets no WAIT frame, only WELCOME when the slot frees', async (t) => {
  const c = setup(t);
  const held = await c.hold();
  const s = startServer(['--allow', c.allow, '--max-concurrent', '1', '--wait-timeout', '10m', '--state-dir', c.state]);
  await s.writer.sendJson(Msg.HELLO, hello(c.target, {}, ['lz4', 'zero', 'grow', 'verify']));
  const first = next(s);
  await waitersOf(s);
  await held.release();
  t.is(msgName((await first).type), 'WELCOME', s.stderr());
  s.child.stdin!.end();
  t.is(await s.exit, ExitCode.REMOTE, s.stderr());
});

for (const how of ['stdin EOF', 'SIGTERM'] as const) {
  test(`${how} while waiting ends the wait at once and leaves no flock child`, async (t) => {
    const c = setup(t);
    const held = await c.hold();
    const s = startServer(['--allow', c.allow, '--max-concurrent', '1', '--wait-timeout', '7d', '--state-dir', c.state]);
    await s.writer.sendJson(Msg.HELLO, hello(c.target));
    t.is(msgName((await next(s)).type), 'WAIT');
    const waiters = await waitersOf(s);
    t.is(waiters.length, 1);
    const t0 = Date.now();
    const exited = new Promise((r) => s.child.once('exit', r));
    if (how === 'stdin EOF') s.child.stdin!.end();
    else s.child.kill('SIGTERM');
    await exited;
    t.log(`${how}: the server exited ${Date.now() - t0} ms after`);
    const code = await s.exit;
    t.is(code, how === 'SIGTERM' ? ExitCode.INTERRUPTED : ExitCode.REMOTE, s.stderr());
    t.regex(s.stderr(), how === 'SIGTERM' ? /interrupted by SIGTERM/ : /the client went away while waiting for a slot/);
    t.false(waiters.some(alive), `flock children left: ${waiters.filter(alive).join(' ')}`);
    t.deepEqual(readFileSync(c.target), Buffer.alloc(1 << 20, 7));
  });
}

test('wait_timeout 0: ERROR 17 naming the server\'s limit and the holder, nothing opened', async (t) => {
  const c = setup(t);
  const held = await c.hold();
  const cfg = join(c.state, '..', 'server.toml');
  writeFileSync(cfg, `[server]\nallow = ["${c.allow}"]\nmax_concurrent = 1\nwait_timeout = 0\nstate_dir = "${c.state}"\n`);
  const s = startServer(['--config', cfg]);
  await s.writer.sendJson(Msg.HELLO, hello(c.target));
  const wait = await next(s);
  t.is(msgName(wait.type), 'WAIT');
  const e = await next(s);
  t.is(msgName(e.type), 'ERROR');
  t.is(e.json.code, ExitCode.BUSY);
  t.regex(String(e.json.message), /all 1 slots \(the server's max_concurrent = 1\) are busy after waiting 0s: held by test-holder/);
  t.is(await s.exit, ExitCode.BUSY);
});

const refused = test.macro({
  async exec(t, extra: Record<string, unknown>, config: string, code: number, message: RegExp) {
    const c = setup(t);
    const cfg = join(c.state, '..', 'server.toml');
    writeFileSync(cfg, `[server]\nallow = ["${c.allow}"]\n${config}`);
    const s = startServer(['--config', cfg]);
    await s.writer.sendJson(Msg.HELLO, hello(c.target, extra));
    const e = await next(s);
    t.is(msgName(e.type), 'ERROR');
    t.is(e.json.code, code);
    t.regex(String(e.json.message), message);
    s.child.stdin!.end();
    t.is(await s.exit, code);
    t.deepEqual(readFileSync(c.target), Buffer.alloc(1 << 20, 7), 'nothing written');
  },
  title: (given) => `refused: ${given}`,
});
const POLICY = '[server.target_snapshot]\nkeep_last = 3\n';
test('a protocol-1 HELLO setting keep 0 and a size (the old client)', refused, { targetSnapshot: { job: 'j', keep: 0, size: '99%ORIGIN' } }, POLICY,
  ExitCode.PERMISSION, /sets the target snapshot's retention and size itself \(HELLO.targetSnapshot\).*upgrade blkdelta on the client/);
test('a protocol-1 HELLO setting keep to a server without a policy', refused, { targetSnapshot: { job: 'j', keep: 5 } }, '',
  ExitCode.PERMISSION, /HELLO.targetSnapshot/);
test('a snapshot request to a server without [server.target_snapshot]', refused, { policySnapshot: { job: 'j' } }, '',
  ExitCode.PERMISSION, /no \[server.target_snapshot\] policy/);
test('policySnapshot not an object', refused, { policySnapshot: 'yes' }, POLICY, ExitCode.REMOTE, /field policySnapshot must be an object/);
test('policySnapshot.job not a string', refused, { policySnapshot: { job: 7 } }, POLICY, ExitCode.REMOTE, /field policySnapshot must be an object/);
test('policySnapshot.job invalid', refused, { policySnapshot: { job: '../x' } }, POLICY, ExitCode.REMOTE, /policySnapshot.job: job name "..\/x" is invalid/);
test('policySnapshot when not writing', refused, { policySnapshot: {}, write: false }, POLICY, ExitCode.REMOTE, /only for a target that is written/);
test('a server with a policy applies it: a file target cannot be snapshotted (13), nothing written', async (t) => {
  const c = setup(t);
  const cfg = join(c.state, '..', 'server.toml');
  writeFileSync(cfg, `[server]\nallow = ["${c.allow}"]\nstate_dir = "${c.state}"\n${POLICY}`);
  const s = startServer(['--config', cfg]);
  await s.writer.sendJson(Msg.HELLO, hello(c.target, { policySnapshot: { job: 'nightly' } }));
  const e = await next(s); // refused before WELCOME: the server reads the target LV's label for it
  t.is(msgName(e.type), 'ERROR', JSON.stringify(e.json));
  t.is(e.json.code, ExitCode.SNAPSHOT);
  t.regex(String(e.json.message), /need an LVM logical volume as target/);
  s.child.stdin!.end();
  await s.exit;
  t.deepEqual(readFileSync(c.target), Buffer.alloc(1 << 20, 7));
});
