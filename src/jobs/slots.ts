// max_concurrent across processes: N slot lock files <stateDir>/locks/slot-1.lock .. slot-N.lock.
// A run takes any free slot with a non-blocking kernel lock (lock.ts); when all are held it polls
// until one frees up or --wait-timeout passes (BlkError BUSY), or the abort signal fires.
//   loop: for k in 1..N: tryLock(slot-k) -> got it; else sleep 200-400 ms; until deadline
// A slot is released by closing its fd, or by the kernel when the process dies: a killed run
// never keeps a slot. Memory: one fd.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlkError, ExitCode } from '../errors.js';
import { formatAge } from '../units.js';
import { readHolder, tryLock, type Lock } from './lock.js';

export interface SlotOptions {
  stateDir: string;
  max: number;
  /** Seconds to wait for a free slot; 0 fails at once when all are taken. */
  waitTimeout: number;
  job: string;
  signal?: AbortSignal;
  /** Called once when the run has to wait, with the holders of the slots. */
  onWait?: (holders: string) => void;
}

/** A held slot: which one, and how to give it back. */
export interface Slot extends Lock { index: number }

export async function acquireSlot(o: SlotOptions): Promise<Slot> {
  const dir = join(o.stateDir, 'locks');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const deadline = Date.now() + o.waitTimeout * 1000;
  let told = false;
  for (;;) {
    o.signal?.throwIfAborted();
    const slot = tryAll(dir, o);
    if (slot) return slot;
    if (!told) o.onWait?.(holders(dir, o.max));
    told = true;
    if (Date.now() >= deadline) {
      throw new BlkError(ExitCode.BUSY, `all ${o.max} slots (max_concurrent) are busy after waiting ${formatAge(o.waitTimeout)}: ${holders(dir, o.max)}`);
    }
    const left = deadline - Date.now();
    await sleep(Math.min(left, 200 + Math.random() * 200), undefined, { signal: o.signal }).catch(() => {
      o.signal?.throwIfAborted();
    });
  }
}

function tryAll(dir: string, o: SlotOptions): Slot | null {
  for (let k = 1; k <= o.max; k++) {
    const lock = tryLock(slotPath(dir, k), { pid: process.pid, start: new Date().toISOString(), job: o.job });
    if (lock) return Object.assign(lock, { index: k });
  }
  return null;
}

function slotPath(dir: string, k: number): string {
  return join(dir, `slot-${k}.lock`);
}

/** "tools (pid 12), db (pid 34)": who holds the slots, as last written in the slot files. */
function holders(dir: string, max: number): string {
  const list: string[] = [];
  for (let k = 1; k <= max; k++) {
    const h = readHolder(slotPath(dir, k));
    if (h) list.push(`${h.job ?? '?'} (pid ${h.pid})`);
  }
  return list.length ? `held by ${list.join(', ')}` : 'holders unknown';
}
