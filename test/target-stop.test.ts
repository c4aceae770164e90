// The target side stops as a whole: its two loops stop together (together/untilStopped), and the
// --verify journal's temp file goes on every exit path, SIGINT to a real `blkdelta sync --verify`
// included.
import test from 'ava';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, readdirSync, statSync, writeSync } from 'node:fs';
import { setImmediate as turn } from 'node:timers/promises';
import { ExitCode } from '../src/errors.js';
import { together, untilStopped } from '../src/engine/target.js';
import { BIN_PATH } from '../src/transport/local.js';
import { Workspace, interruptWithServerFrozen, randomFile, serverChildren } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-stop-');
test.after.always(() => ws.cleanup());

// A loop that counts steps until stopped; `settled` says whether it has returned or thrown.
function counter() {
  const c = { steps: 0, settled: false };
  const loop = async (stop: AbortSignal) => {
    try {
      for (;;) {
        stop.throwIfAborted();
        c.steps++;
        await turn();
      }
    } finally {
      c.settled = true;
    }
  };
  return { c, loop };
}

const failAfter = (n: number, msg: string) => async (stop: AbortSignal) => {
  for (let i = 0; i < n; i++) {
    stop.throwIfAborted();
    await turn();
  }
  throw new Error(msg);
};

test('together: when one loop fails, the other is stopped and has settled before the error is thrown', async (t) => {
  for (const order of ['a fails', 'b fails'] as const) {
    const { c, loop } = counter();
    const p = order === 'a fails' ? together(failAfter(3, 'read error'), loop) : together(loop, failAfter(3, 'record error'));
    const err = await t.throwsAsync(p);
    t.regex(err!.message, order === 'a fails' ? /read error/ : /record error/);
    t.true(c.settled, 'the other loop no longer runs');
    const steps = c.steps;
    await turn();
    await turn();
    t.is(c.steps, steps, 'no step after the failure was reported');
  }
});

test('together: both succeed → both results', async (t) => {
  t.deepEqual(await together(async () => 1, async () => 'two'), [1, 'two']);
});

test('together: the first error wins when both fail', async (t) => {
  const err = await t.throwsAsync(together(failAfter(1, 'first'), failAfter(5, 'second')));
  t.is(err!.message, 'first');
});

test('untilStopped: a wait that never ends is given up when stop aborts', async (t) => {
  const stop = new AbortController();
  const p = untilStopped(new Promise(() => { /* a read from a peer that never answers */ }), stop.signal);
  stop.abort(new Error('the other loop failed'));
  await t.throwsAsync(p, { message: 'the other loop failed' });
  const late = new AbortController();
  late.abort(new Error('already'));
  await t.throwsAsync(untilStopped(Promise.reject(new Error('ignored')), late.signal), { message: 'already' });
});

test('SIGINT during `blkdelta sync --verify` removes the verify journal from TMPDIR (exit 130)', async (t) => {
  const MiB = 1 << 20;
  const tmp = ws.fresh('tmpdir');
  mkdirSync(tmp);
  const src = ws.fresh('src.img'), dst = ws.fresh('dst.img');
  randomFile(src, 128 * MiB);
  randomFile(dst, 128 * MiB);
  // every other 4 KiB block the same: 16384 separate records, so the journal (4096 entries in
  // memory) spills to its temp file at the 4097th and the run goes on for 12,000 more
  const same: number[] = [];
  for (let b = 0; b < 32768; b += 2) same.push(b);
  copyBlocks(src, dst, same);
  const child = spawn(process.execPath, [BIN_PATH, 'sync', '--verify', '--no-progress', src, dst], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let seen = false;
  while (!seen && child.exitCode === null) {
    seen = readdirSync(tmp).some((n) => n.startsWith('blkdelta-journal-'));
    if (!seen) await new Promise((r) => setTimeout(r, 5));
  }
  t.true(seen, `the journal spilled to ${tmp} before the run ended: ${stderr}`);
  // The journal is in the target side, the client's local server: freeze it so that the run
  // cannot finish before the client has taken the signal, however slow the machine is.
  const [server] = serverChildren(child.pid!);
  t.truthy(server, 'the local server is running');
  t.teardown(() => {
    try {
      process.kill(server!, 'SIGKILL'); // only if the test failed with it still stopped
    } catch { /* gone, as it should be */ }
  });
  await interruptWithServerFrozen(child, server!, () => stderr);
  t.is(await exited, ExitCode.INTERRUPTED, stderr);
  t.deepEqual(readdirSync(tmp), [], 'nothing left in TMPDIR');
  t.true(statSync(dst).size === 128 * MiB);
});

function copyBlocks(from: string, to: string, blocks: number[]): void {
  // the blocks listed become equal in both files; the rest stay different (two random files)
  const a = openSync(from, 'r'), b = openSync(to, 'r+');
  const buf = Buffer.allocUnsafe(4096);
  try {
    for (const blk of blocks) {
      readSync(a, buf, 0, 4096, blk * 4096);
      writeSync(b, buf, 0, 4096, blk * 4096);
    }
  } finally {
    closeSync(a);
    closeSync(b);
  }
}
