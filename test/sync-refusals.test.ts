// What the sync engine refuses, and how it fails, on real image files through bin/blkdelta: each
// refusal exits with its code, names the thing that is wrong and leaves source and target as they
// were. Then a real write error (a full tmpfs) and interrupted runs (no server left behind).
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, mkdirSync, statSync, symlinkSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../src/errors.js';
import { BIN_PATH, LocalTransport } from '../src/transport/local.js';
import { Workspace, blkdelta, esc, interruptWithServerFrozen, randomFile, readAt, serverChildren, sha256, syncFiles as sync, touchBlocks } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-refusals-');
test.after.always(() => ws.cleanup());
const res = ws.res;
const fresh = (name: string) => ws.fresh(name);
const pair = (size: number) => ws.pair(size);
const MiB = 1 << 20;

// ---- refusals ----

interface Case { src: string; dst: string; args?: string[] }
const refused = test.macro({
  async exec(t, setup: () => Promise<Case> | Case, exit: number, message: (c: Case) => RegExp) {
    const c = await setup();
    const sums = [c.src, c.dst].map((p) => (existsSync(p) && statSync(p).isFile() ? sha256(p) : undefined));
    const r = await blkdelta('sync', ...(c.args ?? []), c.src, c.dst);
    t.is(r.exitCode, exit, r.stderr);
    t.regex(r.stderr, message(c));
    t.deepEqual([c.src, c.dst].map((p) => (existsSync(p) && statSync(p).isFile() ? sha256(p) : undefined)), sums, 'a refused sync changed a file');
  },
  title: (name) => `refused: ${name}`,
});
const targetRefused = (why: string) => (c: Case) => new RegExp(`target ${esc(c.dst)} refused: ${why}`);

test('target missing', refused, () => ({ ...pair(MiB), dst: fresh('missing.img') }), 5, (c) => new RegExp(`target ${esc(c.dst)} does not exist`));
test('target is a directory', refused, () => ({ ...pair(MiB), dst: ws.dir }), 5, (c) => new RegExp(`target ${esc(c.dst)} is not a regular file or block device`));
test('target is the source (same path)', refused, () => { const { src } = pair(MiB); return { src, dst: src }; }, 5, targetRefused('it is the same device or file as the source'));
test('target is the source via a symlink', refused, () => {
  const { src } = pair(MiB);
  const link = fresh('link.img');
  symlinkSync(src, link);
  return { src, dst: link };
}, 5, targetRefused('it is the same device or file as the source'));
test('target is the source via a symlinked directory', refused, () => {
  const { src } = pair(MiB);
  const dir = fresh('dirlink');
  symlinkSync(ws.dir, dir);
  return { src, dst: join(dir, src.slice(ws.dir.length + 1)) };
}, 5, targetRefused('it is the same device or file as the source'));
test('target is the source via a hard link', refused, () => {
  const { src } = pair(MiB);
  const link = fresh('hard.img');
  linkSync(src, link);
  return { src, dst: link };
}, 5, targetRefused('it is the same device or file as the source'));
test('target is immutable (chattr +i)', refused, async () => {
  const c = pair(MiB);
  touchBlocks(c.dst, 4096, [1]);
  await res.immutable(c.dst);
  return c;
}, 5, targetRefused('it is read-only \\(EPERM\\)'));
test('target file without write permission bits (chmod 444), even for root', refused, () => {
  const c = pair(MiB);
  touchBlocks(c.dst, 4096, [1]);
  chmodSync(c.dst, 0o444);
  return c;
}, 5, targetRefused('the file has no write permission bits \\(mode 0444\\); chmod u\\+w it'));
test('target on a read-only bind mount', refused, async () => {
  const dir = fresh('rw');
  mkdirSync(dir);
  const src = fresh('src.img');
  randomFile(src, MiB);
  randomFile(join(dir, 'dst.img'), MiB);
  const ro = fresh('ro');
  await res.readOnlyBind(dir, ro);
  return { src, dst: join(ro, 'dst.img') };
}, 5, targetRefused('it is read-only \\(EROFS\\)'));
test('dry-run, verify and --patch-out only read the target: they work on an immutable one', async (t) => {
  const { src, dst } = pair(MiB);
  touchBlocks(dst, 4096, [7]);
  await res.immutable(dst);
  const before = sha256(dst);
  t.is((await blkdelta('sync', '-n', '-q', src, dst)).exitCode, 3);
  t.is((await blkdelta('verify', '-q', src, dst)).exitCode, 3);
  const p = await blkdelta('sync', '-q', '--patch-out', fresh('ro.bdp'), src, dst);
  t.is(p.exitCode, 0, p.stderr);
  t.is(sha256(dst), before);
});
test('source missing', refused, () => ({ src: fresh('nope.img'), dst: pair(MiB).dst }), 4, (c) => new RegExp(`source ${esc(c.src)} does not exist`));
test('source is a directory', refused, () => ({ src: ws.dir, dst: pair(MiB).dst }), 4, (c) => new RegExp(`source ${esc(c.src)} is not a regular file or block device`));
for (const bs of ['3000', '256', '32M', '4097']) {
  test(`--block-size ${bs}`, refused, () => ({ ...pair(MiB), args: ['-b', bs] }), 2, () => new RegExp(`--block-size \\d+ is invalid: it must be a power of two`));
}
test('--block-size abc', refused, () => ({ ...pair(MiB), args: ['-b', 'abc'] }), 2, () => /--block-size "abc" is not a size/);

test('a write error on the target (ENOSPC on a full tmpfs) exits 8 naming the target, the byte and the errno; the grown target is truncated back', async (t) => {
  const dir = fresh('full');
  await res.mountTmpfs(dir, '4m');
  const src = fresh('src.img'), dst = join(dir, 'dst.img');
  randomFile(join(dir, 'filler'), 2 * MiB);
  randomFile(src, 3 * MiB); // within the file system's 4 MiB, more than its free space
  randomFile(dst, MiB);
  const r = await blkdelta('sync', '--size-policy', 'grow', src, dst);
  t.is(r.exitCode, 8, r.stderr);
  t.regex(r.stderr, new RegExp(`write error on ${esc(dst)} at byte \\d+: ENOSPC`));
  t.regex(r.stderr, /may be incomplete: run the sync again/);
  t.is(statSync(dst).size, MiB, 'a failed session leaves the target at its size before');
});

test('a source that shrinks during the sync fails with IO naming the source and the byte', async (t) => {
  const { src, dst } = pair(8 * MiB);
  randomFile(dst, 8 * MiB);
  let cut = false;
  const onProgress = (p: { bytesDone: number }) => {
    if (cut || p.bytesDone < 2 * MiB) return;
    cut = true;
    truncateSync(src, 3 * MiB);
  };
  const err = await t.throwsAsync(sync(src, dst, { onProgress }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.IO);
  // the first chunk read after the cut names it: chunks read ahead before it (io/read-ahead.ts) were whole
  const m = new RegExp(`^${esc(src)} ended at byte (\\d+), expected (\\d+) \\(did it shrink\\?\\); target ${esc(dst)} may be incomplete: run the sync again to complete it$`).exec(err!.message);
  t.truthy(m, err!.message);
  const [ended, expected] = [Number(m![1]), Number(m![2])];
  t.true(ended >= 3 * MiB && ended % MiB === 0 && expected === ended + MiB, err!.message);
});

test('--verify catches a block changed behind its back by a concurrent writer: exit 18 naming the range', async (t) => {
  const { src, dst } = pair(4 * MiB);
  const writer = spawn(process.execPath, ['-e', `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(dst)}, 'r+');
    const g = Buffer.alloc(4096, 0xab); for (;;) fs.writeSync(fd, g, 0, 4096, 8192);`], { stdio: 'ignore' });
  t.teardown(() => writer.kill('SIGKILL'));
  while (readAt(dst, 8192, 1)[0] !== 0xab) await new Promise((r) => setTimeout(r, 20));
  // The writer must run between the sync's write and its re-read; on a loaded machine it may not,
  // and the sync then rightly succeeds: try a few times.
  let r = await blkdelta('sync', '--verify', src, dst);
  for (let i = 0; i < 4 && r.exitCode === 0; i++) r = await blkdelta('sync', '--verify', src, dst);
  t.is(r.exitCode, 18, r.stderr);
  t.regex(r.stderr, new RegExp(`verify failed: ${esc(dst)} bytes 8192\\.\\.12288 read back differ from what was written`));
});

test('a server that fails at startup: REMOTE, with its stderr in the message, target untouched', async (t) => {
  const { src, dst } = pair(MiB);
  touchBlocks(dst, 4096, [0]);
  const before = sha256(dst);
  const err = await t.throwsAsync(sync(src, dst, { localTransport: new LocalTransport(['--bogus']) }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.REMOTE);
  // the server may exit before or after HELLO is written (it starts in ~0.1 s): either way its stderr is shown
  t.regex(err!.message, /^local server closed the connection (waiting for WELCOME|before the handshake); its stderr: blkdelta: error: server: unknown argument "--bogus"/);
  t.is(sha256(dst), before);
});

test.serial('a server that has already exited when HELLO is sent (a remote shell that failed fast): its stderr is shown', async (t) => {
  const { src, dst } = pair(MiB);
  const transport = {
    label: 'local server',
    open: async (signal?: AbortSignal) => {
      const channel = await new LocalTransport(['--bogus']).open(signal);
      await new Promise((resolve) => channel.input.once('end', resolve).resume());
      while (children().length) await new Promise((resolve) => setTimeout(resolve, 10)); // all its fds closed
      return channel;
    },
  };
  const err = await t.throwsAsync(sync(src, dst, { localTransport: transport }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.REMOTE);
  t.regex(err!.message, /^local server closed the connection before the handshake; its stderr: blkdelta: error: server: unknown argument "--bogus"/);
});

// ---- interruption ----

const children = serverChildren;

const interrupted = test.macro({
  async exec(t, mode: 'write' | 'patch') {
    const { src, dst } = pair(32 * MiB);
    randomFile(dst, 32 * MiB);
    const before = sha256(dst);
    const patchOut = fresh('interrupted.bdp');
    const ac = new AbortController();
    const reason = new BlkError(ExitCode.INTERRUPTED, 'interrupted by SIGINT');
    // Abort from a timer, as a signal handler does: while the run awaits I/O, not between chunks.
    const onProgress = (p: { bytesDone: number }) => p.bytesDone >= 4 * MiB && setTimeout(() => ac.abort(reason), 1);
    const err = await t.throwsAsync(sync(src, dst, { mode, patchOut, signal: ac.signal, onProgress }));
    t.is(err, reason, 'runSync must reject with the abort reason');
    t.deepEqual(children(), [], 'a server outlived the run');
    if (mode === 'write') {
      t.regex(err!.message, new RegExp(`^interrupted by SIGINT; target ${dst.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} may be incomplete: run the sync again`));
      t.not(sha256(dst), before, 'nothing was written before the abort');
    } else {
      t.is(err!.message, 'interrupted by SIGINT');
      t.false(existsSync(patchOut) || existsSync(patchOut + '.part'), 'an interrupted patch was left behind');
      t.is(sha256(dst), before);
    }
  },
  title: (_p, mode) => `an interrupted ${mode} rejects with the abort reason${mode === 'write' ? ' saying the target may be incomplete' : ', removes the patch'}; no server left`,
});
test.serial(interrupted, 'write');
test.serial(interrupted, 'patch');

test.serial('an abort right after the channel opens (before the first frame is read) rejects with the reason, no crash', async (t) => {
  const { src, dst } = pair(MiB);
  touchBlocks(dst, 4096, [3]);
  const before = sha256(dst);
  const ac = new AbortController();
  const reason = new BlkError(ExitCode.INTERRUPTED, 'interrupted by SIGINT');
  const transport = {
    label: 'local server',
    open: async (signal?: AbortSignal) => {
      const channel = await new LocalTransport().open(signal);
      setTimeout(() => ac.abort(reason), 0);
      return channel;
    },
  };
  const err = await t.throwsAsync(sync(src, dst, { localTransport: transport, signal: ac.signal }));
  t.is(err, reason);
  t.deepEqual(children(), [], 'a server outlived the run');
  t.is(sha256(dst), before);
});

test.serial('SIGINT to blkdelta sync: exit 130, "interrupted by SIGINT", its server gone, target untouched', async (t) => {
  const { src, dst } = pair(32 * MiB);
  randomFile(dst, 32 * MiB);
  const before = sha256(dst);
  const cli = spawn(process.execPath, [BIN_PATH, 'sync', '--no-progress', src, dst], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  cli.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
  t.teardown(() => cli.kill('SIGKILL'));
  // Freeze its server as soon as it exists, so the run cannot finish before the signal arrives.
  let server: number | undefined;
  while (server === undefined && cli.exitCode === null) {
    server = children(cli.pid)[0];
    if (server === undefined) await new Promise((r) => setTimeout(r, 10));
  }
  t.truthy(server, `the sync ended before its server was seen: ${stderr}`);
  t.teardown(() => {
    try {
      process.kill(server!, 'SIGKILL'); // only if the test failed with it still stopped
    } catch { /* gone, as it should be */ }
  });
  await interruptWithServerFrozen(cli, server!, () => stderr);
  t.is(await exited, 130, stderr);
  t.regex(stderr, /interrupted by SIGINT/);
  t.throws(() => process.kill(server!, 0), { code: 'ESRCH' }, 'the server outlived the client');
  t.is(sha256(dst), before);
});
