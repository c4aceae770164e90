// The only place that runs lvm. Each call: runProgram (exec.ts) with stdin ignored (no TTY: lvm never waits on a
// prompt; builders pass -y), LVM_SUPPRESS_FD_WARNINGS=1, DM_DISABLE_UDEV kept when the caller set
// it. Output is small (one JSON report; over exec.ts's MAX_CAPTURE, 16 MiB, the call fails).
// Timeouts (LVM can hang waiting for a VG lock): a report (lvs, dmsetup status) is killed, harmlessly. A command
// that changes the VG (lvcreate, lvremove, lvchange, lvconvert) is only sent SIGINT, which lvm
// honours where giving up is safe (a lock wait) and holds back inside its critical sections; it
// is then waited for, however long that takes. It is never SIGTERMed or SIGKILLed: killed between
// the suspend and the resume of a snapshot's origin, lvcreate leaves the production LV suspended,
// and every read and write of it hangs until someone runs `dmsetup resume`.
// A non-zero exit, a timeout or a missing binary becomes BlkError SNAPSHOT naming the command
// and carrying its stderr; a command that finished with exit 0 after the SIGINT succeeded.
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { TAG_OWNER, lvsArgv, removeArgv } from './argv.js';
import { parseLvs, type LvRow } from './report.js';

export const DEFAULT_LVM_TIMEOUT_MS = 60_000;

/** A failed lvm command: SNAPSHOT, with the command and its stderr. */
export class LvmError extends BlkError {
  readonly argv: readonly string[];
  readonly stderr: string;
  constructor(argv: readonly string[], message: string, stderr: string) {
    super(ExitCode.SNAPSHOT, message);
    this.name = 'LvmError';
    this.argv = argv;
    this.stderr = stderr;
  }
}

export interface LvmResult {
  stdout: string;
  stderr: string;
}

/** Commands that only report: safe to kill. */
const REPORTS = new Set(['lvs', 'vgs', 'pvs']);
const isReport = (argv: readonly string[]) => REPORTS.has(argv[0]!) || (argv[0] === 'dmsetup' && argv[1] === 'status');

/** Runs one lvm command (argv from argv.ts); throws SNAPSHOT with the command and its stderr. */
export async function runLvm(argv: readonly string[], timeoutMs = DEFAULT_LVM_TIMEOUT_MS): Promise<LvmResult> {
  const [cmd, ...args] = argv as [string, ...string[]];
  const shown = argv.join(' ');
  log.debug(`running ${shown}`);
  const t0 = Date.now();
  const { MAX_CAPTURE, howEnded, runProgram } = await import('../exec.js'); // loaded on first use: a sync without LVM stays small
  const report = isReport(argv);
  const r = await runProgram(cmd, args, {
    timeoutMs,
    killSignal: report ? 'SIGTERM' : 'SIGINT',
    forceKillAfterMs: report ? 5_000 : false,
    env: { LVM_SUPPRESS_FD_WARNINGS: '1', LC_ALL: 'C' },
  });
  const stderr = r.stderr.trim();
  log.debug(`${cmd} ended after ${Date.now() - t0} ms`);
  if (r.timedOut && !report && r.exitCode === 0) {
    log.warn(`${shown} took over ${timeoutMs / 1000} s; asked to give up (SIGINT), it finished its change instead, which stands`);
    return { stdout: r.stdout, stderr };
  }
  if (r.timedOut) {
    const how = report ? '' : ', and gave up when asked (SIGINT)';
    throw new LvmError(argv, `${shown} did not finish within ${timeoutMs / 1000} s${how} (LVM may be waiting for a VG lock)${stderr ? `: ${stderr}` : ''}`, stderr);
  }
  if (!r.ok) {
    const why = r.spawnError?.code ?? howEnded(r);
    const hint = r.spawnError?.code === 'ENOENT' ? ' (is lvm2 installed? apt-get install lvm2)' : '';
    throw new LvmError(argv, `${shown} failed (${why})${hint}${stderr ? `: ${stderr}` : ''}`, stderr);
  }
  if (r.truncated) throw new LvmError(argv, `${shown}: its output is over ${MAX_CAPTURE / 2 ** 20} MiB, more than blkdelta reads`, stderr);
  if (stderr) log.debug(`${cmd}: ${stderr}`);
  return { stdout: r.stdout, stderr };
}

/** lvs for some VGs or VG/LVs (none: all), parsed into rows. */
export async function listLvs(names: readonly string[] = [], timeoutMs?: number): Promise<LvRow[]> {
  const { stdout } = await runLvm(lvsArgv(names), timeoutMs);
  return parseLvs(stdout);
}

/** One LV's row, or null when lvs says it does not exist (exit 5, "Failed to find"). */
export async function findLv(vg: string, name: string, timeoutMs?: number): Promise<LvRow | null> {
  const rows = await listLvs([vg], timeoutMs);
  return rows.find((r) => r.name === name) ?? null;
}

export interface RemoveOptions {
  timeoutMs?: number;
  /** Waits between attempts (ms): lvremove fails while the device is still open. */
  retryDelaysMs?: readonly number[];
}

export const DEFAULT_RETRY_DELAYS_MS = [500, 1_000, 2_000, 4_000] as const;

/**
 * Removes one of blkdelta's own LVs, retrying; refuses (SNAPSHOT) an LV without the blkdelta
 * tag. Throws SNAPSHOT naming the LV and the last lvremove error when every attempt failed.
 */
export async function removeOwned(row: LvRow, o: RemoveOptions = {}): Promise<void> {
  const id = `${row.vg}/${row.name}`;
  if (!row.tags.includes(TAG_OWNER)) throw new BlkError(ExitCode.SNAPSHOT, `refusing to remove ${id}: it has no "${TAG_OWNER}" tag`);
  const delays = o.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      await runLvm(removeArgv(row.vg, row.name), o.timeoutMs);
      return;
    } catch (err) {
      if ((await findLv(row.vg, row.name, o.timeoutMs).catch(() => row)) === null) return; // gone after all
      if (attempt >= delays.length) {
        throw new BlkError(ExitCode.SNAPSHOT, `snapshot ${id} could not be removed after ${attempt + 1} attempts (${(err as Error).message}); remove it by hand: lvremove -y ${id}`, { cause: err });
      }
      log.warn(`lvremove ${id} failed (attempt ${attempt + 1}), retrying: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, delays[attempt]));
    }
  }
}
