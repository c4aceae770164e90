// Reading a kept copy without changing it: a thin copy is inactive (activation skip), so for the
// time of fn it is activated (lvchange -ay -K: no metadata change) and its block device set
// read-only in the kernel (blockdev --setro) before anything opens it, then deactivated after, on
// every path. (LVM's read_only_volume_list cannot be used: a read-only thin table fails to load,
// "reload ioctl failed: Invalid argument", measured on the VM lane.) A COW copy is always active
// and is only opened read-only. Interrupted: a thin copy may stay active and read-only, harmless;
// the next `history` call or run of the job reads lvs afresh.
import { BlkError, ExitCode, describe } from '../errors.js';
import { log } from '../log.js';
import { activateArgv, deactivateArgv } from '../lvm/argv.js';
import type { Copy } from '../lvm/copies.js';
import { runLvm } from '../lvm/lvm.js';

/** Runs fn(devicePath) with the copy readable; throws SNAPSHOT when it cannot be activated. */
export async function withReadableCopy<T>(c: Copy, fn: (device: string) => Promise<T>): Promise<T> {
  const { vg, name } = c.row;
  const path = c.row.path || `/dev/${vg}/${name}`;
  if (c.torn) throw new BlkError(ExitCode.SNAPSHOT_OVERFLOW, `copy ${vg}/${name} overflowed: it is torn and cannot be read as a copy`);
  const activate = !c.row.attr.active;
  if (activate) await runLvm(activateArgv(vg, name));
  try {
    if (activate) await setReadOnly(path);
    return await fn(path);
  } finally {
    if (activate) {
      await runLvm(deactivateArgv(vg, name)).catch((err) => log.error(`cannot deactivate copy ${vg}/${name} again: ${describe(err)}`));
    }
  }
}

/** blockdev --setro: the kernel refuses every write to the device until it is deactivated. */
async function setReadOnly(path: string): Promise<void> {
  const { howEnded, runProgram } = await import('../exec.js');
  const timeoutMs = 30_000;
  const r = await runProgram('blockdev', ['--setro', path], { timeoutMs });
  if (!r.ok) throw new BlkError(ExitCode.SNAPSHOT, `cannot make ${path} read-only (blockdev --setro): ${(r.stderr || howEnded(r, timeoutMs)).trim()}`);
}
