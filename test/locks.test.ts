// Kernel locks (src/locks/flock.ts) across real processes: a waiter's flock child must not outlive
// the waiter, however the waiter dies, and a lock dies with its holder.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tryLock } from '../src/locks/flock.js';
import { childrenOf } from './helpers/sshd.js';

const dir = mkdtempSync(join(tmpdir(), 'blkdelta-locks-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const FLOCK = new URL('../src/locks/flock.js', import.meta.url).href;
const me = { pid: process.pid, start: new Date().toISOString() };
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return ''; // gone
  }
};
const until = async (what: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; !what() && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
  return what();
};

// A node process that waits (up to 300 s) for a lock this test holds, and says when it waits.
function waiter(path: string) {
  const code = `import(${JSON.stringify(FLOCK)}).then((m) => { m.waitLock(${JSON.stringify(path)}, 300, { pid: process.pid, start: '' }); console.log('waiting'); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const waiting = new Promise<void>((r) => child.stdout.once('data', () => r()));
  return { child, waiting };
}

test('a waiter killed with SIGKILL leaves no flock child waiting behind it', async (t) => {
  const path = join(dir, 'a.lock');
  const held = tryLock(path, me);
  t.truthy(held);
  const { child, waiting } = waiter(path);
  try {
    await waiting;
    t.true(await until(() => childrenOf(child.pid!).some((p) => comm(p) === 'flock'), 20_000), 'the waiter sleeps in flock');
    const flocks = childrenOf(child.pid!).filter((p) => comm(p) === 'flock');
    child.kill('SIGKILL');
    t.true(await until(() => flocks.every((p) => comm(p) === ''), 20_000), `flock ${flocks.join(' ')} died with its waiter`);
  } finally {
    child.kill('SIGKILL');
    held?.release();
  }
});

test('a lock dies with its holder: a waiter gets it when the holder is killed', async (t) => {
  const path = join(dir, 'b.lock');
  const code = `import(${JSON.stringify(FLOCK)}).then((m) => { m.tryLock(${JSON.stringify(path)}, { pid: process.pid, start: '' }); console.log('held'); setInterval(() => {}, 1000); });`;
  const holder = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((r) => holder.stdout.once('data', () => r()));
    t.is(tryLock(path, me), null, 'held by the other process');
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    const mine = tryLock(path, me);
    t.truthy(mine, 'free once its holder died');
    mine?.release();
  } finally {
    holder.kill('SIGKILL');
  }
});
