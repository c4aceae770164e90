// Kernel file locks (flock semantics) without a native addon: open the lock file, run `flock` with
// that fd as the child's fd 3. The lock belongs to the open file description, which this process
// keeps open, so it stays held after flock exits and vanishes when the fd is closed or the
// process dies, however it dies: a stale lock never blocks a later holder.
//   tryLock(path)              open -> `flock -xn 3` -> exit 0: ours; exit 1: held by another
//   waitLock(path, s, signal)  open -> `flock -x -w S 3`: the child sleeps in the kernel's flock()
//                              until the lock is free (ours) or S seconds pass (null); abort kills
//                              the child (by PID) and closes the fd. No polling: no CPU while waiting.
//                              The child runs under `setpriv --pdeathsig KILL` (util-linux, like
//                              flock): the kernel kills it when this process dies, however it dies.
// Holders write {pid, start, job} into the file after locking, for "held by" messages.
// An interruption leaves the lock file with the last holder's pid: harmless, the lock is gone; a
// waiter's flock child dies with it. Memory: one fd per held or awaited lock.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync, constants } from 'node:fs';
import { BlkError, ExitCode, describe } from '../errors.js';

export interface Holder { pid: number; start: string; job?: string }

export interface Lock {
  readonly path: string;
  /** Drops the lock (closes the fd). Safe to call twice. */
  release(): void;
}

/** Takes an exclusive lock on `path` without waiting: the Lock, or null when another holds it. */
export function tryLock(path: string, holder: Holder): Lock | null {
  return withFd(path, (fd) => {
    const r = spawnSync('flock', ['-xn', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
    if (r.error) throw flockMissing(path, r.error);
    return outcome(path, r.status, r.signal, r.stderr);
  }, holder);
}

/** A lock being waited for: `done` settles with the Lock, null (timeout), or the abort reason. */
export interface PendingLock { done: Promise<Lock | null>; cancel(): void }

/**
 * Waits up to `seconds` in the kernel for an exclusive lock on `path` (one sleeping child, no
 * polling). cancel() or `signal` kills the child and closes the fd; a late success is dropped.
 */
export function waitLock(path: string, seconds: number, holder: Holder, signal?: AbortSignal): PendingLock {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  const argv = ['--pdeathsig', 'KILL', '--', 'flock', '-x', '-w', String(seconds), '3'];
  const child = spawn('setpriv', argv, { stdio: ['ignore', 'ignore', 'pipe', fd] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let cancelled = false;
  const cancel = () => {
    cancelled = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', cancel, { once: true });
  const done = new Promise<Lock | null>((resolve, reject) => {
    child.once('error', (err) => reject(flockMissing(path, err)));
    child.once('close', (code, sig) => {
      signal?.removeEventListener('abort', cancel);
      try {
        if (cancelled) throw signal?.aborted ? signal.reason : new BlkError(ExitCode.INTERNAL, `lock wait on ${path} cancelled`);
        resolve(outcome(path, code, sig, stderr) ? held(path, fd, holder) : (closeSync(fd), null));
      } catch (err) {
        closeSync(fd);
        reject(err);
      }
    });
  });
  if (signal?.aborted) cancel();
  return { done, cancel };
}

/** true: locked; false: held by another (or timed out); anything else is an error. */
function outcome(path: string, status: number | null, signal: NodeJS.Signals | null, stderr: string): boolean {
  if (status === 0) return true;
  if (status === 1) return false;
  throw new BlkError(ExitCode.INTERNAL, `flock ${path} failed (exit ${status ?? signal}): ${stderr.trim()}`);
}

function flockMissing(path: string, err: Error): BlkError {
  const hint = (err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (flock and setpriv are in util-linux: apt-get install util-linux)' : '';
  return new BlkError(ExitCode.INTERNAL, `cannot run flock for ${path}: ${describe(err)}${hint}`, { cause: err });
}

// Opens path, runs lock(fd); on success the fd becomes the held Lock, else it is closed.
function withFd(path: string, lock: (fd: number) => boolean, holder: Holder): Lock | null {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    if (lock(fd)) return held(path, fd, holder);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  closeSync(fd);
  return null;
}

// A locked fd as a Lock, with the holder written into the file.
function held(path: string, fd: number, holder: Holder): Lock {
  ftruncateSync(fd, 0);
  writeSync(fd, JSON.stringify(holder) + '\n', 0);
  let open = true;
  return {
    path,
    release() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
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
