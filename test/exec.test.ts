// runProgram/startProgram (src/exec.ts) against real programs (sh, true, a missing path): every
// way a program can end, the timeout's signals, cancel, the output bounds, a grandchild that
// keeps the output open, and a timer that is overdue when the exit has already arrived.
import test from 'ava';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAX_CAPTURE, howEnded, runProgram, startProgram, type ProgramOptions, type ProgramResult } from '../src/exec.js';

const dir = mkdtempSync(join(tmpdir(), 'blkdelta-exec-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

interface Row { argv: string[]; o?: ProgramOptions; want: Partial<ProgramResult>; how: RegExp }
const sh = (script: string, o?: ProgramOptions) => ({ argv: ['/bin/sh', '-c', script], ...(o ? { o } : {}) });
const rows: Record<string, Row> = {
  'exit 0: output captured, one final newline stripped': { ...sh('printf "a\\nb\\n\\n"; echo err >&2'), want: { ok: true, exitCode: 0, stdout: 'a\nb\n', stderr: 'err', timedOut: false, canceled: false, truncated: false }, how: /^exit 0$/ },
  'exit 3: not ok, its status and stderr kept': { ...sh('echo cannot freeze >&2; exit 3'), want: { ok: false, exitCode: 3, stderr: 'cannot freeze' }, how: /^exit 3$/ },
  'killed by a signal: no exit status': { ...sh('kill -TERM $$; sleep 5'), want: { ok: false, exitCode: undefined, signal: 'SIGTERM' }, how: /^killed by SIGTERM$/ },
  'a missing program: spawnError ENOENT': { argv: ['/nonexistent/blkdelta-prog'], want: { ok: false, exitCode: undefined, stdout: '' }, how: /ENOENT/ },
  'env: added to this process\'s environment': { ...sh('echo "$BLKDELTA_X $PATH"', { env: { BLKDELTA_X: 'a b;c' } }), want: { ok: true, stdout: `a b;c ${process.env.PATH}` }, how: /^exit 0$/ },
  'timeout: killSignal (default SIGTERM)': { ...sh('exec sleep 30', { timeoutMs: 100 }), want: { ok: false, timedOut: true, signal: 'SIGTERM' }, how: /^timed out$/ },
  'timeout, SIGINT ignored, never force-killed: it is waited for and its status kept': {
    // the deadline leaves sh time to set its trap on a loaded machine; the loop outlasts it
    ...sh('trap "echo INT" INT; i=0; while [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; echo done', { timeoutMs: 1500, killSignal: 'SIGINT', forceKillAfterMs: false }),
    want: { ok: false, timedOut: true, exitCode: 0, stdout: 'INT\ndone' }, how: /^timed out$/,
  },
  'timeout, SIGTERM ignored: SIGKILL forceKillAfterMs later': {
    ...sh('trap "" TERM; while :; do sleep 0.1; done', { timeoutMs: 1500, forceKillAfterMs: 300 }), want: { ok: false, timedOut: true, signal: 'SIGKILL' }, how: /^timed out$/,
  },
  'a signal aborted before the start: canceled, killed at once': {
    ...sh('exec sleep 30', { signal: AbortSignal.abort() }), want: { ok: false, canceled: true, timedOut: false, signal: 'SIGTERM' }, how: /interrupted/,
  },
  'output over MAX_CAPTURE: the rest dropped, truncated': { ...sh(`head -c ${MAX_CAPTURE + 4096} /dev/zero | tr '\\0' x`), want: { ok: true, truncated: true }, how: /^exit 0$/ },
};

for (const [title, row] of Object.entries(rows)) {
  test(`runProgram: ${title}`, async (t) => {
    const r = await runProgram(row.argv[0]!, row.argv.slice(1), row.o);
    t.like(r, row.want);
    for (const k of ['exitCode', 'signal'] as const) if (k in row.want && row.want[k] === undefined) t.is(r[k], undefined, k);
    t.regex(howEnded(r), row.how);
    if (row.want.truncated) t.is(r.stdout.length, MAX_CAPTURE);
  });
}

test('a program that is not executable: spawnError EACCES, said in howEnded', async (t) => {
  const f = join(dir, 'not-executable');
  writeFileSync(f, '#!/bin/sh\nexit 0\n');
  chmodSync(f, 0o644);
  const r = await runProgram(f, []);
  t.false(r.ok);
  t.is(r.spawnError?.code, 'EACCES');
  t.regex(howEnded(r), /EACCES/);
});

test('cancel while running: canceled, stopped with killSignal, howEnded says interrupted', async (t) => {
  const ac = new AbortController();
  const ready = join(dir, 'started');
  const run = startProgram('/bin/sh', ['-c', `echo started; touch ${ready}; exec sleep 30`], { signal: ac.signal });
  while (!existsSync(ready)) await sleep(20); // aborted once it has written its line, however slow the machine
  ac.abort();
  const r = await run.done;
  t.like(r, { ok: false, canceled: true, timedOut: false, signal: 'SIGTERM', stdout: 'started' });
  t.is(howEnded(r), 'stopped: the run was interrupted');
  t.is(howEnded({ ...r, canceled: false, timedOut: true }, 30_000), 'timed out after 30 s');
});

test('merged: stdout and stderr arrive on one stream, which ends; nothing is captured', async (t) => {
  const run = startProgram('/bin/sh', ['-c', 'echo one; echo two >&2; echo three'], { merged: true });
  const parts: Buffer[] = [];
  for await (const c of run.output!) parts.push(c as Buffer);
  const r = await run.done;
  t.deepEqual(Buffer.concat(parts).toString().split('\n').filter(Boolean).sort(), ['one', 'three', 'two']);
  t.like(r, { ok: true, stdout: '', stderr: '' });
});

test('merged, a missing program: the stream ends and the result says ENOENT', async (t) => {
  const run = startProgram('/nonexistent/blkdelta-hook', [], { merged: true });
  const parts: Buffer[] = [];
  for await (const c of run.output!) parts.push(c as Buffer);
  const r = await run.done;
  t.is(Buffer.concat(parts).length, 0);
  t.is(r.spawnError?.code, 'ENOENT');
});

test('a grandchild that keeps the output open: the result comes after the exit and STDIO_GRACE_MS, with the output so far', async (t) => {
  const pidFile = join(dir, 'grandchild.pid');
  const r = await runProgram('/bin/sh', ['-c', `sleep 600 & echo $! > ${pidFile}; echo hi`]);
  try {
    t.like(r, { ok: true, exitCode: 0, stdout: 'hi' });
  } finally {
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  }
});

test('a timer overdue when the exit already arrived (this process had no CPU): the exit wins, not "timed out"', async (t) => {
  const done = runProgram('/bin/true', [], { timeoutMs: 20 });
  // without turning the event loop: wait until the child is a zombie (exited, not yet reaped), then past the deadline
  for (let waited = 0; !exitedChild('true') && waited < 60_000; waited += 10) sleepSync(10);
  sleepSync(100);
  const r = await done;
  t.false(r.timedOut);
  t.like(r, { ok: true, exitCode: 0 });
});

/** A child of this process named comm that has exited and is not yet reaped (state Z). */
function exitedChild(comm: string): boolean {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).some((pid) => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return status.includes(`Name:\t${comm}\n`) && status.includes(`PPid:\t${process.pid}\n`) && /^State:\tZ/m.test(status);
    } catch {
      return false; // gone meanwhile
    }
  });
}
