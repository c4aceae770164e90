// Pure argv builders for the lvm commands blkdelta runs, plus the name, tag and size rules they
// check. Nothing here runs a process: src/lvm/lvm.ts runs what these return.
//
// Every builder returns the full argv (argv[0] is the lvm command). Modifying commands carry -y
// (never a prompt: there is no TTY). Reports are JSON with sizes in plain bytes, so that
// src/lvm/report.ts can parse them without guessing units.
import { BlkError, ExitCode } from '../errors.js';

/** Tags on every LV blkdelta creates; blkdelta never removes an LV without TAG_OWNER. */
export const TAG_OWNER = 'blkdelta';
export const TAG_SOURCE = 'blkdelta-source';
export const TAG_TARGET = 'blkdelta-target';
/** An incremental job's base (lvm/incremental.ts): the source's state its target was last made equal to. */
export const TAG_BASE = 'blkdelta-base';
export const jobTag = (job: string): string => `blkdelta-job:${job}`;

/** The COW size of a snapshot when neither the job nor the policy sets one. */
export const DEFAULT_COW_SIZE = '20%ORIGIN';

/** The columns every lvs call asks for (parsed by report.ts). */
export const LV_FIELDS = [
  'vg_name', 'lv_name', 'lv_path', 'lv_attr', 'origin', 'pool_lv', 'snap_percent', 'data_percent',
  'metadata_percent', 'lv_size', 'origin_size', 'lv_tags', 'lv_time', 'lv_kernel_major', 'lv_kernel_minor',
] as const;

const NAME_RE = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;
const RESERVED = ['_cdata', '_cmeta', '_corig', '_cpool', '_cvol', '_wcorig', '_mimage', '_mlog',
  '_pmspare', '_rimage', '_rmeta', '_tdata', '_tmeta', '_vdata', '_vorigin', '_vdo'];
const JOB_RE = /^[A-Za-z0-9][A-Za-z0-9+_.-]{0,63}$/;

/** A percentage option in (0, 100] (or absent); throws USAGE naming it. */
export function checkPercent(option: string, m: number | undefined): void {
  if (m !== undefined && !(typeof m === 'number' && Number.isFinite(m) && m > 0 && m <= 100)) {
    throw new BlkError(ExitCode.USAGE, `${option} must be a percentage in (0, 100], got ${m}`);
  }
}

/** Why `name` is not a valid VG or LV name, or null when it is (LVM's rules, lvm(8)). */
export function lvmNameProblem(name: string, kind: 'VG' | 'LV'): string | null {
  if (name === '' || name === '.' || name === '..') return `${kind} name "${name}" is not allowed`;
  if (name.length > 127) return `${kind} name is longer than 127 characters`;
  if (!NAME_RE.test(name)) return `${kind} name "${name}" may only contain A-Z a-z 0-9 + _ . - and not start with -`;
  if (kind === 'LV') {
    if (/^(snapshot|pvmove)/.test(name)) return `LV name "${name}" may not start with snapshot or pvmove`;
    const bad = RESERVED.find((r) => name.includes(r));
    if (bad) return `LV name "${name}" may not contain "${bad}"`;
  }
  return null;
}

/** Parses "VG/LV" (as given to --snapshot); throws USAGE naming what is wrong. */
export function parseVgLv(spec: string): { vg: string; lv: string } {
  const m = /^([^/]+)\/([^/]+)$/.exec(spec.replace(/^\/dev\//, ''));
  if (!m) throw new BlkError(ExitCode.USAGE, `--snapshot expects VG/LV (e.g. vg0/data), got "${spec}"`);
  const [, vg, lv] = m as unknown as [string, string, string];
  const p = lvmNameProblem(vg, 'VG') ?? lvmNameProblem(lv, 'LV');
  if (p) throw new BlkError(ExitCode.USAGE, `--snapshot ${spec}: ${p}`);
  return { vg, lv };
}

/** Checks a job name (used in tags and LV names); throws USAGE naming the job. */
/** The default job name of a target path (ssh://host/dev/vg/lv -> "vg-lv"). */
export function jobNameOfPath(dst: string): string {
  const path = dst.replace(/^ssh:\/\/[^/]*/, '').replace(/^[^/]*:(?=\/)/, '').replace(/^\/dev\/(mapper\/)?/, '');
  return checkJobName(path.replace(/[^A-Za-z0-9+_.-]+/g, '-').slice(-64).replace(/^[^A-Za-z0-9]+/, '') || 'target');
}

export function checkJobName(job: string): string {
  if (!JOB_RE.test(job)) {
    throw new BlkError(ExitCode.USAGE,
      `job name "${job}" is invalid: 1-64 characters A-Z a-z 0-9 + _ . -, starting with a letter or digit`);
  }
  return job;
}

/** The default job name for a source VG/LV: "vg0-data". */
export const defaultJobName = (vg: string, lv: string): string => checkJobName(`${vg}-${lv}`.slice(0, 64));

/**
 * Checks a snapshot size: an lvcreate size ("10G", "512M", "1.5t") or a percentage of the origin
 * ("20%ORIGIN", 1-100). Returns the lvcreate option pair; throws USAGE naming the value.
 */
export function sizeArgs(size: string): [string, string] {
  const pct = /^(\d{1,3})%ORIGIN$/i.exec(size);
  if (pct) {
    const n = Number(pct[1]);
    if (n >= 1 && n <= 100) return ['-l', `${n}%ORIGIN`];
  } else if (/^\d+(\.\d+)?[kmgtpe]?$/i.test(size) && Number.parseFloat(size) > 0) {
    return ['-L', /[a-z]$/i.test(size) ? size : `${size}m`];
  }
  throw new BlkError(ExitCode.USAGE,
    `invalid snapshot size "${size}": use a size like 10G or 512M, or a percentage like 20%ORIGIN (1-100)`);
}

/**
 * A snapshot name that says what it is and when it was made:
 * `<lv>-blkdelta[-tgt]-<job>-<YYYYmmddTHHMMSSZ>`, shortened so that the device-mapper name
 * (VG and LV with "-" doubled) stays under its 127-character limit.
 */
export function snapshotName(vg: string, lv: string, job: string, when: Date, role: 'source' | 'target'): string {
  const stamp = when.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const mid = role === 'source' ? 'blkdelta' : 'blkdelta-tgt';
  const dmLen = (s: string) => s.replace(/-/g, '--').length;
  const fixed = `-${mid}-` + `-${stamp}`;
  let [l, j] = [lv, job];
  while (dmLen(vg) + 1 + dmLen(l + fixed + j) > 120 && (l.length > 8 || j.length > 8)) {
    if (l.length >= j.length) l = l.slice(0, -1);
    else j = j.slice(0, -1);
  }
  const name = `${l}-${mid}-${j}-${stamp}`;
  const p = lvmNameProblem(name, 'LV');
  if (p) throw new BlkError(ExitCode.SNAPSHOT, `cannot name a snapshot of ${vg}/${lv}: ${p}`);
  return name;
}

const tagArgs = (tags: readonly string[]): string[] => tags.flatMap((t) => ['--addtag', t]);

/** lvcreate of a classic COW snapshot with a fixed size or a percentage of the origin. */
export function cowSnapshotArgv(o: { vg: string; lv: string; name: string; size: string; tags: readonly string[] }): string[] {
  return ['lvcreate', '-y', '-s', ...sizeArgs(o.size), '-n', o.name, ...tagArgs(o.tags), `${o.vg}/${o.lv}`];
}

/**
 * lvcreate of a thin snapshot. active: created with activation skip off (-kn) so it is active
 * and readable at once; otherwise it keeps LVM's default (skipped, inactive: a last-good copy).
 */
export function thinSnapshotArgv(o: { vg: string; lv: string; name: string; tags: readonly string[]; active: boolean }): string[] {
  return ['lvcreate', '-y', '-s', ...(o.active ? ['-kn'] : []), '-n', o.name, ...tagArgs(o.tags), `${o.vg}/${o.lv}`];
}

/** Activates an LV even when it has the activation-skip flag (thin snapshots: plain -ay does nothing). */
export const activateArgv = (vg: string, name: string): string[] => ['lvchange', '-y', '-ay', '-K', `${vg}/${name}`];

export const removeArgv = (vg: string, name: string): string[] => ['lvremove', '-y', `${vg}/${name}`];

/** Rolls an origin back to a snapshot (deferred until the origin is next activated if it is open). */
export const mergeArgv = (vg: string, name: string): string[] => ['lvconvert', '-y', '--merge', '-i', '1', `${vg}/${name}`];

/** lvs as JSON in plain bytes; `names` are VGs or VG/LVs (none: every VG). */
export function lvsArgv(names: readonly string[] = [], fields: readonly string[] = LV_FIELDS): string[] {
  return ['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', fields.join(','), ...names];
}

/** Marks a target snapshot taken before a run that has not (yet) succeeded. */
export const TAG_PENDING = 'blkdelta-pending';

export const delTagArgv = (vg: string, name: string, tag: string): string[] => ['lvchange', '-y', '--deltag', tag, `${vg}/${name}`];


export const deactivateArgv = (vg: string, name: string): string[] => ['lvchange', '-y', '-an', `${vg}/${name}`];
