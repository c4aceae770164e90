// Kernel file locks (flock semantics) without a native addon: open the lock file, run
// `flock -xn 3` with that fd as the child's fd 3. The lock belongs to the open file description,
// which this process keeps open, so it stays held after flock exits and vanishes when the fd is
// closed or the process dies, however it dies: a stale lock never blocks a later run.
//   tryLock(path): open -> flock -xn 3 -> exit 0: ours, write holder {pid, start}; exit 1: held
//   lockJob(dir, job): tryLock, or BlkError LOCKED naming the holder's pid and start time
// An interruption leaves the lock file with the last holder's pid: harmless, the lock is gone.
// Memory: one fd per held lock.
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode, describe } from '../errors.js';
import { isAlive } from './proc.js';

export interface Holder { pid: number; start: string; job?: string }

export interface Lock {
  readonly path: string;
  /** Drops the lock (closes the fd). Safe to call twice. */
  release(): void;
}

/** Takes an exclusive lock on `path` without waiting: the Lock, or null when another holds it. */
export function tryLock(path: string, holder: Holder): Lock | null {
  let fd: number | null = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    if (!flock(fd, path)) {
      closeSync(fd);
      fd = null;
      return null;
    }
    ftruncateSync(fd, 0);
    writeSync(fd, JSON.stringify(holder) + '\n', 0);
  } catch (err) {
    if (fd !== null) closeSync(fd);
    throw err;
  }
  const held = fd;
  let open = true;
  return {
    path,
    release() {
      if (!open) return;
      open = false;
      closeSync(held);
    },
  };
}

/** Runs `flock -xn 3` on the fd: true when it got the lock, false when another holds it. */
function flock(fd: number, path: string): boolean {
  const r = spawnSync('flock', ['-xn', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
  if (r.error) {
    const hint = (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (flock is in util-linux: apt-get install util-linux)' : '';
    throw new BlkError(ExitCode.INTERNAL, `cannot run flock for ${path}: ${describe(r.error)}${hint}`, { cause: r.error });
  }
  if (r.status === 0) return true;
  if (r.status === 1) return false;
  throw new BlkError(ExitCode.INTERNAL, `flock ${path} failed (exit ${r.status ?? r.signal}): ${r.stderr.trim()}`);
}

/** The holder written in a lock file, or null when unreadable or not (yet) written. */
export function readHolder(path: string): Holder | null {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Holder;
    return typeof h.pid === 'number' && typeof h.start === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** The job's lock in <stateDir>/locks, or BlkError LOCKED naming the process that holds it. */
export function lockJob(stateDir: string, job: string, start: Date): Lock {
  const dir = join(stateDir, 'locks');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, `${job}.lock`);
  const lock = tryLock(path, { pid: process.pid, start: start.toISOString(), job });
  if (lock) return lock;
  const h = holderOfHeld(path);
  const who = h ? `process ${h.pid}, running since ${h.start}` : 'another process (it has not written its pid yet)';
  throw new BlkError(ExitCode.LOCKED, `job ${job} is already running: locked by ${who} (${path})`);
}

/** A held lock's holder; the holder writes its pid just after locking, so retry briefly. */
function holderOfHeld(path: string): Holder | null {
  for (let i = 0; i < 20; i++) {
    const h = readHolder(path);
    if (h && isAlive(h.pid)) return h;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
  }
  return readHolder(path);
}
