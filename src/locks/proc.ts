// Is a process that wrote a record or a lock still the same running process? Reads /proc only, so
// it works as any user (the monitoring user too): a pid is the same process when it is alive and
// its start time (clock ticks since boot, /proc/PID/stat field 22) and the boot id match.
import { readFileSync } from 'node:fs';

/** Identity of a process across pid reuse and reboots. */
export interface ProcId { pid: number; startTicks?: number; bootId?: string }

/** True when a process with this pid exists (EPERM: exists, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of /proc/PID/stat (after the ")" that ends the command name), or undefined. */
export function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function selfId(): ProcId {
  return { pid: process.pid, startTicks: startTicks(process.pid), bootId: bootId() };
}

/** True when the process recorded in `id` is still running (not a reused pid, not a past boot). */
export function stillRunning(id: ProcId): boolean {
  if (id.bootId && bootId() && id.bootId !== bootId()) return false;
  if (!isAlive(id.pid)) return false;
  if (id.startTicks === undefined) return true;
  const now = startTicks(id.pid);
  return now === undefined || now === id.startTicks;
}
