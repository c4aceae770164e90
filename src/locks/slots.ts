// max_concurrent across processes: N slot lock files <stateDir>/locks/<prefix>-1.lock .. -N.lock
// (prefix "slot" for `blkdelta run` jobs, "server-slot" for `blkdelta server` sessions).
//   take any free slot at once (tryLock, slot 1..N)
//   none free: tell onWait, then one `flock -x -w WAIT 3` child per slot (flock.ts waitLock), all
//   sleeping in the kernel; the first that locks wins, the others are killed and their fds closed
//   all time out: BlkError BUSY naming the limit and the holders; abort: the abort reason
// Waiting costs no CPU (no polling). A slot is released by closing its fd, or by the kernel when
// the process dies: a killed holder never keeps a slot. Memory: one fd and one child per slot.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import { formatAge } from '../units.js';
import { readHolder, tryLock, waitLock, type Holder, type Lock, type PendingLock } from './flock.js';

export interface SlotOptions {
  stateDir: string;
  max: number;
  /** Seconds to wait for a free slot; 0 fails at once when all are taken. */
  waitTimeout: number;
  job: string;
  /** Lock file names: <prefix>-K.lock (default "slot"). */
  prefix?: string;
  /** What the BUSY message calls the limit (default "max_concurrent"). */
  limitName?: string;
  signal?: AbortSignal;
  /** Called once when the run has to wait, with the holders of the slots. */
  onWait?: (holders: string) => void;
}

/** A held slot: which one, and how to give it back. */
export interface Slot extends Lock { index: number }

/** Takes a slot, waiting (in the kernel) up to waitTimeout; throws BUSY or the abort reason. */
export async function acquireSlot(o: SlotOptions): Promise<Slot> {
  const dir = join(o.stateDir, 'locks');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  o.signal?.throwIfAborted();
  const holder = (): Holder => ({ pid: process.pid, start: new Date().toISOString(), job: o.job });
  for (let k = 1; k <= o.max; k++) {
    const lock = tryLock(slotPath(dir, o, k), holder());
    if (lock) return Object.assign(lock, { index: k });
  }
  o.onWait?.(holders(dir, o));
  const slot = o.waitTimeout > 0 ? await firstOf(dir, o, holder()) : null;
  if (slot) return slot;
  const limit = o.limitName ?? 'max_concurrent';
  throw new BlkError(ExitCode.BUSY, `all ${o.max} slots (${limit}) are busy after waiting ${formatAge(o.waitTimeout)}: ${holders(dir, o)}`);
}

// One waitLock per slot; the first lock wins and the rest are cancelled. null: all timed out.
async function firstOf(dir: string, o: SlotOptions, holder: Holder): Promise<Slot | null> {
  const waits: PendingLock[] = [];
  let won: Slot | null = null;
  try {
    for (let k = 1; k <= o.max; k++) waits.push(waitLock(slotPath(dir, o, k), o.waitTimeout, holder, o.signal));
    await new Promise<void>((resolve, reject) => {
      let left = waits.length;
      waits.forEach((w, i) => w.done.then((lock) => {
        if (lock && !won) won = Object.assign(lock, { index: i + 1 });
        else lock?.release(); // a second slot locked at the same moment: give it back
        if (won || --left === 0) resolve();
      }, reject));
    });
    return won;
  } catch (err) {
    won = null; // aborted: a slot won meanwhile is released below
    throw err;
  } finally {
    for (const w of waits) w.cancel();
    await Promise.allSettled(waits.map((w) => w.done.then((l) => (l && l !== won ? l.release() : undefined))));
  }
}

function slotPath(dir: string, o: SlotOptions, k: number): string {
  return join(dir, `${o.prefix ?? 'slot'}-${k}.lock`);
}

/** "tools (pid 12), db (pid 34)": who holds the slots, as last written in the slot files. */
function holders(dir: string, o: SlotOptions): string {
  const list: string[] = [];
  for (let k = 1; k <= o.max; k++) {
    const h = readHolder(slotPath(dir, o, k));
    if (h) list.push(`${h.job ?? '?'} (pid ${h.pid})`);
  }
  return list.length ? `held by ${list.join(', ')}` : 'holders unknown';
}
