// VM entry point for test/lvm-vm.test.ts: runs withSourceSnapshot with an fn that leaves the
// snapshot device open, so every lvremove attempt fails ("in use"). Case 1: fn succeeds, then
// the removal fails. Case 2: fn fails (IO), then the removal fails too. Prints one JSON line per
// case: the exit code and message of the error thrown and the snapshot report it carries.
// usage: node dist/test/vm/hold-open.js VG LV     (the process exit closes the fds)
import { openSync } from 'node:fs';
import { BlkError, ExitCode, exitCodeOf } from '../../src/errors.js';
import { snapshotReportOf, withSourceSnapshot } from '../../src/lvm/snapshot.js';

const [vg = '', lv = ''] = process.argv.slice(2);
const held: number[] = [];

async function attempt(job: string, fail: boolean): Promise<void> {
  try {
    await withSourceSnapshot({ vg, lv, job, size: '4M', retryDelaysMs: [100, 200] }, new AbortController().signal, async (dev) => {
      held.push(openSync(dev, 'r'));
      if (fail) throw new BlkError(ExitCode.IO, 'simulated read error');
      return 0;
    });
    console.log(JSON.stringify({ job, code: 0 }));
  } catch (err) {
    console.log(JSON.stringify({ job, code: exitCodeOf(err), message: (err as Error).message, report: snapshotReportOf(err) }));
  }
}

await attempt('holdopen-ok', false);
await attempt('holdopen-fail', true);
