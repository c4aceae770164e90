// The LVM options of `blkdelta sync` and the wrapper that runs a sync inside a source snapshot.
//   --snapshot VG/LV [--snapshot-size S] [--snapshot-max-fill PCT] [--job NAME]
//   --target-snapshot [--keep N]
// With --snapshot the source is the snapshot, so SRC is omitted: `sync --snapshot vg0/lv DST`
// (yargs fills the first positional, `src`, with DST; snapshotEnds puts it back).
// runWithSnapshots(argv, signal, run) calls run(sourceDevice, signal') inside withSourceSnapshot
// (or directly without --snapshot) and returns the snapshot report for the result record.
import type { Argv } from 'yargs';
import { BlkError, ExitCode } from '../errors.js';
import { checkJobName, defaultJobName, parseVgLv, sizeArgs } from './argv.js';
import { withSourceSnapshot, type SnapshotReport } from './snapshot.js';
import { rotateTargetSnapshots, takeTargetSnapshot, type TargetSnapshotInfo } from './target-snapshot.js';

export interface SnapshotArgs {
  snapshot?: string;
  'snapshot-size'?: string;
  'snapshot-max-fill'?: number;
  job?: string;
  'target-snapshot'?: boolean;
  'target-snapshot-size'?: string;
  keep?: number;
}

/** Adds the LVM options to a yargs builder. */
export function snapshotOptions<T>(y: Argv<T>) {
  return y
    .option('snapshot', { type: 'string', group: 'LVM:', describe: 'sync from a temporary snapshot of this source LV (VG/LV); omit SRC' })
    .option('snapshot-size', { type: 'string', group: 'LVM:', describe: 'COW snapshot size: 10G, 512M or 20%ORIGIN (default: thin snapshot for a thin LV, else 20%ORIGIN)' })
    .option('snapshot-max-fill', { type: 'number', group: 'LVM:', describe: 'abort when the COW snapshot is fuller than PCT percent (polled during the run)' })
    .option('job', { type: 'string', group: 'LVM:', describe: 'job name in snapshot names and tags (default: VG-LV of --snapshot, or of the target)' })
    .option('target-snapshot', { type: 'boolean', group: 'LVM:', describe: 'snapshot the target LV before the first write (keeps the last good copy)' })
    .option('target-snapshot-size', { type: 'string', group: 'LVM:', describe: 'COW size of the target snapshot when the target is not thin (default 20%ORIGIN)' })
    .option('keep', { type: 'number', group: 'LVM:', describe: 'target snapshots to keep after a successful run (default 1; a local target only: a remote server keeps by its own policy)' })
    .example('blkdelta sync --snapshot vg0/data /dev/backup/data', 'sync from a snapshot of vg0/data, then remove it')
    .example('blkdelta sync --snapshot vg0/data --snapshot-size 2G --snapshot-max-fill 80 backup@store:/dev/bk/data --target-snapshot', 'COW snapshot, early abort; the server keeps target copies by its policy');
}

/** SRC and DST after --snapshot (which replaces SRC); throws USAGE for contradictory options. */
export function snapshotEnds(a: SnapshotArgs & { src?: string; dst?: string }): { src: string; dst: string } {
  for (const o of ['keep', 'target-snapshot-size'] as const) {
    if (a[o] !== undefined && !a['target-snapshot']) throw new BlkError(ExitCode.USAGE, `--${o} needs --target-snapshot`);
  }
  if (!a.snapshot) {
    for (const o of ['snapshot-size', 'snapshot-max-fill'] as const) {
      if (a[o] !== undefined) throw new BlkError(ExitCode.USAGE, `--${o} needs --snapshot VG/LV`);
    }
    if (!a.src || !a.dst) throw new BlkError(ExitCode.USAGE, 'name SRC and DST (or --snapshot VG/LV and DST)');
    return { src: a.src, dst: a.dst };
  }
  const { vg, lv } = parseVgLv(a.snapshot);
  if (a.src && a.dst) {
    throw new BlkError(ExitCode.USAGE, `with --snapshot ${a.snapshot} the snapshot is the source: give only DST, not "${a.src}" and "${a.dst}"`);
  }
  const dst = a.dst ?? a.src;
  if (!dst) throw new BlkError(ExitCode.USAGE, 'name the target DST');
  if (a['snapshot-size'] !== undefined) sizeArgs(a['snapshot-size']);
  return { src: `/dev/${vg}/${lv}`, dst };
}

/** The job name: --job, else VG-LV of --snapshot, else derived from the target path. */
export function jobNameOf(a: SnapshotArgs, dst: string): string {
  if (a.job !== undefined) return checkJobName(a.job);
  if (a.snapshot) {
    const { vg, lv } = parseVgLv(a.snapshot);
    return defaultJobName(vg, lv);
  }
  const path = dst.replace(/^ssh:\/\/[^/]*/, '').replace(/^[^/]*:(?=\/)/, '').replace(/^\/dev\/(mapper\/)?/, '');
  return checkJobName(path.replace(/[^A-Za-z0-9+_.-]+/g, '-').slice(-64).replace(/^[^A-Za-z0-9]+/, '') || 'target');
}

/** What the target side needs for --target-snapshot (undefined without it). */
export function targetSnapshotOf(a: SnapshotArgs, dst: string): { job: string; keep: number; size?: string } | undefined {
  if (!a['target-snapshot']) return undefined;
  const keep = a.keep ?? 1;
  if (!Number.isInteger(keep) || keep < 0) throw new BlkError(ExitCode.USAGE, `--keep must be a whole number >= 0, got ${a.keep}`);
  if (a['target-snapshot-size'] !== undefined) sizeArgs(a['target-snapshot-size']);
  return { job: jobNameOf(a, dst), keep, size: a['target-snapshot-size'] };
}

/**
 * --target-snapshot for a remote target only asks its server for a snapshot of this job: the
 * server's [server.target_snapshot] sets size and retention, so --keep and --target-snapshot-size
 * are refused (USAGE) rather than silently ignored.
 */
export function remoteSnapshotRequest(a: SnapshotArgs, job: string): { job: string } {
  for (const o of ['keep', 'target-snapshot-size'] as const) {
    if (a[o] !== undefined) throw new BlkError(ExitCode.USAGE, `--${o} cannot be used with a remote target: its server keeps target snapshots by its own [server.target_snapshot] policy (docs/ssh.md)`);
  }
  return { job };
}

/**
 * Runs run(snapshotDevice, signal) inside a source snapshot with --snapshot, else
 * run(undefined, signal) (the caller reads SRC). Errors from a snapshot run carry the report
 * (snapshotReportOf in snapshot.ts).
 */
export async function runWithSnapshots<T>(a: SnapshotArgs & { src?: string; dst?: string }, signal: AbortSignal,
  run: (snapshotDevice: string | undefined, signal: AbortSignal) => Promise<T>): Promise<{ value: T; snapshot?: SnapshotReport }> {
  const ends = snapshotEnds(a);
  if (!a.snapshot) return { value: await run(undefined, signal) };
  const { vg, lv } = parseVgLv(a.snapshot);
  const spec = { vg, lv, job: jobNameOf(a, ends.dst), size: a['snapshot-size'], maxFillPct: a['snapshot-max-fill'] };
  const { value, report } = await withSourceSnapshot(spec, signal, run);
  return { value, snapshot: report };
}

export interface TargetSnapshotReport extends TargetSnapshotInfo {
  kept: string[];
  removed: string[];
}

/**
 * --target-snapshot for a target LV on this host: snapshot it before run() (the first write),
 * and after run() succeeded rotate to `keep` copies. A failed run prunes nothing: its snapshot
 * stays, tagged pending, as the last good copy. (A remote target's server does the same.)
 */
export async function withTargetSnapshot<T>(spec: { job: string; keep: number; size?: string } | undefined, device: string,
  run: () => Promise<T>): Promise<{ value: T; target?: TargetSnapshotReport }> {
  if (!spec) return { value: await run() };
  const taken = await takeTargetSnapshot(device, spec);
  const value = await run();
  const rotated = await rotateTargetSnapshots(device, spec);
  return { value, target: { ...taken, ...rotated } };
}
