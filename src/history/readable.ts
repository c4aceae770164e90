// Reading a kept copy without changing it: a thin copy is inactive (activation skip), so it is
// activated read-only for the time of fn (lvchange -ay -K with a one-command
// read_only_volume_list: no metadata change) and deactivated after, on every path. A COW copy is
// always active and is only read. Interrupted: a thin copy may stay active read-only, harmless;
// the next use deactivates it again.
import { BlkError, ExitCode, describe } from '../errors.js';
import { log } from '../log.js';
import { activateReadOnlyArgv, deactivateArgv } from '../lvm/argv.js';
import type { Copy } from '../lvm/copies.js';
import { runLvm } from '../lvm/lvm.js';

/** Runs fn(devicePath) with the copy readable; throws SNAPSHOT when it cannot be activated. */
export async function withReadableCopy<T>(c: Copy, fn: (device: string) => Promise<T>): Promise<T> {
  const { vg, name, path } = c.row;
  if (c.torn) throw new BlkError(ExitCode.SNAPSHOT_OVERFLOW, `copy ${vg}/${name} overflowed: it is torn and cannot be read as a copy`);
  const activate = !c.row.attr.active;
  if (activate) await runLvm(activateReadOnlyArgv(vg, name));
  try {
    return await fn(path || `/dev/${vg}/${name}`);
  } finally {
    if (activate) {
      await runLvm(deactivateArgv(vg, name)).catch((err) => log.error(`cannot deactivate copy ${vg}/${name} again: ${describe(err)}`));
    }
  }
}
