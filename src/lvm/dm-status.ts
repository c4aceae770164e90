// Pure parser for `dmsetup status --noflush DEV...`: the cheap reading of a held snapshot's fill
// (one ioctl per device, no LVM lock, no device scan) that the snapshot poller uses between the
// lvs checks before and after a run. Formats (kernel Documentation/admin-guide/device-mapper;
// real outputs in fixtures/lvm/dm-status-transcript.txt), one line per device, "NAME: " in front
// when several devices are asked for:
//   START LEN snapshot USED/TOTAL META   (sectors; USED counts META) | Invalid | Overflow | Merge failed
//   START LEN thin-pool TRANS MUSED/MTOTAL DUSED/DTOTAL HELD rw|ro|out_of_data_space DISCARD
//                       error_if_no_space|queue_if_no_space needs_check|- [LOWATER] | Fail | Error
//   START LEN thin MAPPED HIGHEST|- | Fail
// Percentages are rounded as lvs prints them (2 decimals, never 0.00 or 100.00 unless exact), so the
// figures and messages are those of an lvs tick. Anything else throws SNAPSHOT: the caller then
// falls back to lvs. Nothing here runs a command; memory: the few lines of one call.
import { BlkError, ExitCode } from '../errors.js';

/** A COW snapshot: invalid (overflowed), or its fill in percent as lvs' snap_percent shows it. */
export interface SnapshotStatus { target: 'snapshot'; state: 'valid' | 'Invalid' | 'Overflow' | 'Merge failed'; fillPct: number | null }
/** A thin pool: data and metadata fill (null when failed), its mode and the needs_check flag. */
export interface PoolStatus {
  target: 'thin-pool';
  state: 'rw' | 'ro' | 'out_of_data_space' | 'Fail' | 'Error';
  data: number | null;
  metadata: number | null;
  needsCheck: boolean;
}
/** A thin LV: alive or failed (its pool failed). */
export interface ThinStatus { target: 'thin'; state: 'ok' | 'Fail' }
export type DmStatus = SnapshotStatus | PoolStatus | ThinStatus;

const bad = (why: string) => new BlkError(ExitCode.SNAPSHOT, `unexpected dmsetup status output: ${why}`);
const N = '(\\d{1,20})';

/**
 * used/total in percent exactly as lvs prints it (libdm dm_make_percent: an int32 of millionths,
 * truncated; dm_percent_to_round_float: a float, never 0 or 100 unless exact; then "%.2f", which
 * rounds the float's exact value half to even: 928/1024 is 90.62).
 */
export function lvmPercent(used: number, total: number): number {
  if (total <= 0 || used >= total) return 100;
  if (used <= 0) return 0;
  const p = Math.min(99_999_999, Math.max(1, Math.trunc(1e8 * (used / total))));
  if (p < 10_000) return 0.01;
  if (p > 1e8 - 10_000) return 99.99;
  const x = Math.fround(Math.fround(p) / 1e6) * 100; // exact in a double
  const n = Math.floor(x);
  const up = x - n > 0.5 || (x - n === 0.5 && n % 2 === 1);
  return (up ? n + 1 : n) / 100;
}

function ratio(usedS: string, totalS: string, what: string): [number, number] {
  const [used, total] = [Number(usedS), Number(totalS)];
  if (total <= 0 || used > total) throw bad(`${what} ${usedS}/${totalS}`);
  return [used, total];
}

function parseSnapshot(args: string): SnapshotStatus {
  if (args === 'Invalid' || args === 'Overflow' || args === 'Merge failed') return { target: 'snapshot', state: args, fillPct: null };
  const m = new RegExp(`^${N}/${N} ${N}$`).exec(args);
  if (!m) throw bad(`snapshot "${args.slice(0, 80)}"`);
  const [used, total] = ratio(m[1]!, m[2]!, 'snapshot sectors');
  const meta = Number(m[3]);
  if (meta > used) throw bad(`snapshot metadata ${m[3]} over its used ${m[1]}`);
  return { target: 'snapshot', state: 'valid', fillPct: used === meta ? 0 : lvmPercent(used, total) }; // lvs: only metadata is 0%
}

function parsePool(args: string): PoolStatus {
  if (args === 'Fail' || args === 'Error') return { target: 'thin-pool', state: args, data: null, metadata: null, needsCheck: false };
  const m = new RegExp(`^${N} ${N}/${N} ${N}/${N} (?:-|\\d{1,20}) (rw|ro|out_of_data_space)((?: \\S+){0,4})$`).exec(args);
  if (!m) throw bad(`thin-pool "${args.slice(0, 120)}"`);
  const meta = ratio(m[2]!, m[3]!, 'thin-pool metadata blocks');
  const data = ratio(m[4]!, m[5]!, 'thin-pool data blocks');
  return {
    target: 'thin-pool', state: m[6] as PoolStatus['state'], data: lvmPercent(...data), metadata: lvmPercent(...meta),
    needsCheck: m[7]!.split(' ').includes('needs_check'),
  };
}

function parseThin(args: string): ThinStatus {
  if (args === 'Fail') return { target: 'thin', state: 'Fail' };
  if (!new RegExp(`^${N} (?:${N}|-)$`).test(args)) throw bad(`thin "${args.slice(0, 80)}"`);
  return { target: 'thin', state: 'ok' };
}

const TARGETS: Record<string, (args: string) => DmStatus> = { snapshot: parseSnapshot, 'thin-pool': parsePool, thin: parseThin };

/** One status line without the device-name prefix ("0 32768 snapshot 2072/16384 24"). */
export function parseDmStatusLine(line: string): DmStatus {
  const m = /^\d{1,20} \d{1,20} (\S+) ?(.*)$/.exec(line.trimEnd());
  if (!m) throw bad(`"${line.slice(0, 80)}"`);
  const parse = TARGETS[m[1]!];
  if (!parse) throw bad(`target "${m[1]!.slice(0, 40)}" (not a snapshot, thin pool or thin LV)`);
  return parse(m[2]!);
}

/**
 * The statuses of `names`, in order, from the stdout of `dmsetup status --noflush ...names`: one
 * line per device (prefixed "NAME: " when there are several). A missing, extra or repeated
 * device, or a device of several segments, throws.
 */
export function parseDmStatus(stdout: string, names: readonly string[]): DmStatus[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (names.length === 0 || lines.length !== names.length) throw bad(`${lines.length} lines for ${names.length} devices`);
  if (names.length === 1) return [parseDmStatusLine(lines[0]!)];
  return names.map((name) => {
    const prefix = `${name}: `;
    const mine = lines.filter((l) => l.startsWith(prefix));
    if (mine.length !== 1) throw bad(`${mine.length} lines for ${name}`);
    return parseDmStatusLine(mine[0]!.slice(prefix.length));
  });
}

/** dm name of an LV (LVM doubles '-' in the VG and LV names and joins them with one '-'). */
export function dmName(vg: string, lv: string): string {
  const dm = (s: string) => s.replace(/-/g, '--');
  return `${dm(vg)}-${dm(lv)}`;
}

/** argv of the poll: no flush (a thin pool's status would otherwise commit its metadata). */
export const dmStatusArgv = (names: readonly string[]): string[] => ['dmsetup', 'status', '--noflush', ...names];
