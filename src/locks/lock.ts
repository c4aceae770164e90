// One job at a time: <stateDir>/locks/<job>.lock, a kernel lock (flock.ts tryLock) that
// vanishes when its process dies, however it dies: a stale lock never blocks a later run.
//   lockJob(dir, job): tryLock, or BlkError LOCKED naming the holder's pid and start time
// An interruption leaves the lock file with the last holder's pid: harmless, the lock is gone.
// Memory: one fd per held lock.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import { readHolder, tryLock, type Holder, type Lock } from './flock.js';
import { isAlive } from './proc.js';

export type { Holder, Lock };

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
