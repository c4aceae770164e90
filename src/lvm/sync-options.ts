// The LVM options of `blkdelta sync` and the wrapper that runs a sync inside a source snapshot.
//   --snapshot VG/LV [--snapshot-size S] [--snapshot-max-fill PCT] [--pool-max-fill PCT] [--job NAME]
//   --snapshot [user@]host:VG/LV | ssh://user@host:port/VG/LV   (a pull: the server snapshots,
//     under its own policy, so size and fill limits are the server's)
//   --target-snapshot [--keep N]
// With --snapshot the source is the snapshot, so SRC is omitted: `sync --snapshot vg0/lv DST`
// (yargs fills the first positional, `src`, with DST; snapshotEnds puts it back).
// runWithSnapshots(argv, signal, run) calls run(sourceDevice, signal') inside withSourceSnapshot
// (or directly without --snapshot) and returns the snapshot report for the result record.
// The modules that run lvm (snapshot.ts, target-snapshot.ts) load only when a snapshot is asked
// for: a plain sync does not pay for them (start-up CPU).
import type { Argv } from 'yargs';
import { BlkError, ExitCode } from '../errors.js';
import { formatRemote, parseEndpoint, type RemoteEndpoint } from '../transport/address.js';
import { checkJobName, checkPercent, defaultJobName, jobNameOfPath, parseVgLv, sizeArgs } from './argv.js';
import type { SnapshotReport } from './snapshot-report.js';
import { DEFAULT_SAMPLE_BLOCKS } from './thin-delta.js';
import type { IncrementalSpec } from './incremental.js';
import { parseDuration } from '../units.js';
import type { CopyFingerprint } from './copy-tags.js';
import type { TargetSnapshotInfo } from './target-snapshot.js';
import { DEFAULT_STATE_DIR } from '../paths.js';
import { MAX_SAMPLE } from '../ranges.js';

export interface SnapshotArgs {
  snapshot?: string;
  'snapshot-size'?: string;
  'snapshot-max-fill'?: number;
  'pool-max-fill'?: number;
  job?: string;
  'target-snapshot'?: boolean;
  'target-snapshot-size'?: string;
  keep?: number;
  incremental?: boolean;
  'sample-blocks'?: number;
  'full-compare-every'?: string;
  'state-dir'?: string;
}

/** Adds the LVM options to a yargs builder. */
export function snapshotOptions<T>(y: Argv<T>) {
  return y
    .option('snapshot', { type: 'string', group: 'LVM:', describe: "sync from a temporary snapshot of this source LV (VG/LV, or [user@]host:VG/LV to pull from a snapshot made by that host's server); omit SRC" })
    .option('snapshot-size', { type: 'string', group: 'LVM:', describe: 'COW snapshot size: 10G, 512M or 20%ORIGIN (default: thin snapshot for a thin LV, else 20%ORIGIN)' })
    .option('snapshot-max-fill', { type: 'number', group: 'LVM:', describe: 'abort when the COW snapshot is fuller than PCT percent (polled during the run)' })
    .option('pool-max-fill', { type: 'number', group: 'LVM:', describe: 'thin snapshot: refuse, or stop and remove it, when its thin pool is PCT percent full, data or metadata (default 90)' })
    .option('job', { type: 'string', group: 'LVM:', describe: 'job name in snapshot names and tags (default: VG-LV of --snapshot, or of the target)' })
    .option('target-snapshot', { type: 'boolean', group: 'LVM:', describe: 'snapshot the target LV before the first write (keeps the last good copy)' })
    .option('target-snapshot-size', { type: 'string', group: 'LVM:', describe: 'COW size of the target snapshot when the target is not thin (default 20%ORIGIN)' })
    .option('keep', { type: 'number', group: 'LVM:', describe: 'target snapshots to keep after a successful run (default 1; a local target only: a remote server keeps by its own policy)' })
    .option('incremental', { type: 'boolean', group: 'LVM:', describe: 'with --snapshot of a thin LV: keep a base snapshot and read only the blocks changed since it (falls back to a full compare, saying why)' })
    .option('sample-blocks', { type: 'number', group: 'LVM:', describe: `--incremental: blocks compared at random outside the changed ranges (default ${DEFAULT_SAMPLE_BLOCKS}; any differing one forces a full compare)` })
    .option('full-compare-every', { type: 'string', group: 'LVM:', describe: '--incremental: force a full compare when the last one is older than this (e.g. 7d)' })
    .option('state-dir', { type: 'string', group: 'LVM:', describe: '--incremental: where the base record is kept (default /var/lib/blkdelta)' })
    .example('blkdelta sync --snapshot vg0/data /dev/backup/data', 'sync from a snapshot of vg0/data, then remove it')
    .example('blkdelta sync --snapshot vg0/thin --incremental /dev/backup/thin', 'read only what changed since the last run (thin LV)')
    .example('blkdelta sync --snapshot root@store1:vg0/data /dev/backup/data', "pull from a snapshot the server on store1 makes under its policy")
    .example('blkdelta sync --snapshot vg0/data --snapshot-size 2G --snapshot-max-fill 80 backup@store:/dev/bk/data --target-snapshot', 'COW snapshot, early abort; the server keeps target copies by its policy');
}

/** --snapshot's LV, and the host that makes it for a pull ([user@]host:VG/LV, ssh://user@host:port/VG/LV). */
export interface SnapshotSpec {
  vg: string;
  lv: string;
  /** A pull: the server on this host snapshots /dev/VG/LV (path is that origin). */
  remote?: RemoteEndpoint;
}

/** Parses --snapshot: VG/LV, /dev/VG/LV, or a remote form; throws USAGE naming what is wrong. */
export function parseSnapshotSpec(spec: string): SnapshotSpec {
  const url = spec.startsWith('ssh://');
  const colon = url ? -1 : remoteColon(spec);
  if (!url && colon < 0) return parseVgLv(spec);
  const head = url ? spec : spec.slice(0, colon + 1);
  const lvPart = url ? '' : spec.slice(colon + 1);
  const e = parseEndpoint(url ? spec : `${head}/dev/${lvPart.replace(/^\/(dev\/)?/, '')}`);
  if (e.kind !== 'remote') throw new BlkError(ExitCode.USAGE, `--snapshot "${spec}": expected [user@]host:VG/LV`);
  const { vg, lv } = parseVgLv(e.path.replace(/^\/(dev\/)?/, ''));
  return { vg, lv, remote: { ...e, path: `/dev/${vg}/${lv}` } };
}

// The ':' that ends "[user@]host:" in --snapshot (before the first '/'), or -1 for a local VG/LV.
function remoteColon(s: string): number {
  if (s.startsWith('/') || s.startsWith('.')) return -1;
  const close = s.startsWith('[') || /@\[/.test(s) ? s.indexOf(']') : -1;
  const colon = s.indexOf(':', close + 1);
  const slash = s.indexOf('/');
  return colon >= 0 && (slash < 0 || colon < slash) ? colon : -1;
}

/** The endpoint text of a pull's source (resolveEnds parses it again). */
function remoteText(e: RemoteEndpoint): string {
  return `ssh://${e.user ? encodeURIComponent(e.user) + '@' : ''}${formatRemote({ ...e, user: undefined })}${e.path}`;
}

/** SRC and DST after --snapshot (which replaces SRC); throws USAGE for contradictory options. */
export function snapshotEnds(a: SnapshotArgs & { src?: string; dst?: string }): { src: string; dst: string } {
  for (const o of ['keep', 'target-snapshot-size'] as const) {
    if (a[o] !== undefined && !a['target-snapshot']) throw new BlkError(ExitCode.USAGE, `--${o} needs --target-snapshot`);
  }
  checkPercent('--pool-max-fill', a['pool-max-fill']);
  if (!a.snapshot) {
    for (const o of ['snapshot-size', 'snapshot-max-fill'] as const) {
      if (a[o] !== undefined) throw new BlkError(ExitCode.USAGE, `--${o} needs --snapshot VG/LV`);
    }
    if (a['pool-max-fill'] !== undefined && !a['target-snapshot']) throw new BlkError(ExitCode.USAGE, '--pool-max-fill needs --snapshot VG/LV or --target-snapshot');
    if (!a.src || !a.dst) throw new BlkError(ExitCode.USAGE, 'name SRC and DST (or --snapshot VG/LV and DST)');
    return { src: a.src, dst: a.dst };
  }
  const spec = parseSnapshotSpec(a.snapshot);
  if (a.src && a.dst) {
    throw new BlkError(ExitCode.USAGE, `with --snapshot ${a.snapshot} the snapshot is the source: give only DST, not "${a.src}" and "${a.dst}"`);
  }
  const dst = a.dst ?? a.src;
  if (!dst) throw new BlkError(ExitCode.USAGE, 'name the target DST');
  if (spec.remote) return { src: remoteText(spec.remote), dst: remoteOnly(a, spec.remote, dst) };
  if (a['snapshot-size'] !== undefined) sizeArgs(a['snapshot-size']);
  return { src: `/dev/${spec.vg}/${spec.lv}`, dst };
}

/** A pull's snapshot follows the server's policy: the client's size and fill options are refused. */
function remoteOnly(a: SnapshotArgs, e: RemoteEndpoint, dst: string): string {
  const theirs = (['snapshot-size', 'snapshot-max-fill', 'pool-max-fill'] as const)
    .filter((o) => a[o] !== undefined && (o !== 'pool-max-fill' || !a['target-snapshot'])); // a local target's may apply
  if (theirs.length) {
    throw new BlkError(ExitCode.USAGE,
      `--${theirs[0]} cannot be used with --snapshot ${a.snapshot}: the server on ${formatRemote(e)} snapshots under its own policy ([server.source_snapshot])`);
  }
  return dst;
}

/** The job name: --job, else VG-LV of --snapshot, else derived from the target path. */
export function jobNameOf(a: SnapshotArgs, dst: string): string {
  if (a.job !== undefined) return checkJobName(a.job);
  if (a.snapshot) {
    const { vg, lv } = parseSnapshotSpec(a.snapshot);
    return defaultJobName(vg, lv);
  }
  return jobNameOfPath(dst);
}

/** What the target side needs for --target-snapshot (undefined without it). */
export function targetSnapshotOf(a: SnapshotArgs, dst: string): { job: string; keep: number; size?: string } | undefined {
  if (!a['target-snapshot']) return undefined;
  const keep = a.keep ?? 1;
  if (!Number.isInteger(keep) || keep < 0) throw new BlkError(ExitCode.USAGE, `--keep must be a whole number >= 0, got ${a.keep}`);
  if (a['target-snapshot-size'] !== undefined) sizeArgs(a['target-snapshot-size']);
  return { job: jobNameOf(a, dst), keep, size: a['target-snapshot-size'] };
}

/** A pull's source snapshot request (the server makes it), or undefined for a local or no --snapshot. */
export function remoteSnapshotOf(a: SnapshotArgs & { src?: string; dst?: string }): { job: string } | undefined {
  if (!a.snapshot || !parseSnapshotSpec(a.snapshot).remote) return undefined;
  return { job: jobNameOf(a, snapshotEnds(a).dst) };
}

/**
 * Runs run(snapshotDevice, signal) inside a source snapshot with a local --snapshot, else
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
  const spec = a.snapshot ? parseSnapshotSpec(a.snapshot) : undefined;
  if (!spec || spec.remote) return { value: await run(undefined, signal) };
  const local = {
    vg: spec.vg, lv: spec.lv, job: jobNameOf(a, ends.dst), size: a['snapshot-size'], maxFillPct: a['snapshot-max-fill'], poolMaxFillPct: a['pool-max-fill'],
  };
  const { withSourceSnapshot } = await import('./snapshot.js');
  const { value, report } = await withSourceSnapshot(local, signal, run);
  return { value, snapshot: report };
}

export interface TargetSnapshotReport extends TargetSnapshotInfo {
  kept: string[];
  removed: string[];
}

/**
 * --target-snapshot for a target LV on this host: snapshot it before run() (the first write),
 * and after run() succeeded label the copies and rotate to `keep` (keep_last). A failed run prunes
 * nothing: its snapshot stays, tagged pending, as the last good copy. (A remote target's server
 * does the same.)
 */
export async function withTargetSnapshot<T extends RunFingerprints>(spec: { job: string; keep: number; size?: string } | undefined, device: string,
  run: (seed?: string) => Promise<T>, blockSize?: number): Promise<{ value: T; target?: TargetSnapshotReport }> {
  if (!spec) return { value: await run() };
  const { rotateTargetSnapshots, takeTargetSnapshot } = await import('./target-snapshot.js');
  const taken = await takeTargetSnapshot(device, spec);
  const value = await run(taken.labelled?.blockSize === blockSize ? taken.labelled?.seed : undefined);
  const content = { dataTime: Date.now(), fingerprint: value.fingerprint, baseFingerprint: value.baseFingerprint, copy: taken.reused ? undefined : taken.name };
  const rotated = await rotateTargetSnapshots(device, { job: spec.job, retention: { keepLast: spec.keep }, content });
  return { value, target: { ...taken, ...rotated } };
}

/** What a run's summary says about the content it left (engine SyncSummary has these fields). */
export interface RunFingerprints { fingerprint?: CopyFingerprint; baseFingerprint?: CopyFingerprint }

/**
 * The incremental spec of `sync --incremental` (undefined without it); throws USAGE when the
 * options cannot make one: it needs --snapshot (the base lives next to the source LV: on this host,
 * or kept by the server of a pull) and a written target.
 */
export function incrementalOf(a: SnapshotArgs & { src?: string; dst?: string }, mode: string, blockSize: number, target: string): IncrementalSpec | undefined {
  for (const o of ['sample-blocks', 'full-compare-every', 'state-dir'] as const) {
    if (a[o] !== undefined && !a.incremental) throw new BlkError(ExitCode.USAGE, `--${o} needs --incremental`);
  }
  if (!a.incremental) return undefined;
  if (!a.snapshot) throw new BlkError(ExitCode.USAGE, '--incremental needs --snapshot VG/LV of a thin LV (on this host, or [user@]host:VG/LV to pull: that host\'s server keeps the base)');
  const spec = parseSnapshotSpec(a.snapshot); // a pull: the server keeps the base, this host the record
  if (mode !== 'write') throw new BlkError(ExitCode.USAGE, '--incremental applies only when writing the target (not with --dry-run or --patch-out)');
  if (a['snapshot-size'] !== undefined) throw new BlkError(ExitCode.USAGE, '--incremental needs a thin snapshot: --snapshot-size makes a COW one');
  const k = a['sample-blocks'];
  if (k !== undefined && (!Number.isInteger(k) || k < 0 || k > MAX_SAMPLE)) throw new BlkError(ExitCode.USAGE, `--sample-blocks must be a whole number from 0 to ${MAX_SAMPLE}, got ${k}`);
  let every: number | undefined;
  try {
    every = a['full-compare-every'] !== undefined ? parseDuration(a['full-compare-every']) : undefined;
  } catch (err) {
    throw new BlkError(ExitCode.USAGE, `--full-compare-every: ${(err as Error).message}`);
  }
  const ends = snapshotEnds(a);
  return {
    vg: spec.vg, lv: spec.lv, job: jobNameOf(a, ends.dst), stateDir: a['state-dir'] ?? DEFAULT_STATE_DIR, target, blockSize,
    sampleBlocks: k, fullCompareEveryS: every, poolMaxFillPct: a['pool-max-fill'],
  };
}
