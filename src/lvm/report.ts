// Pure parsers for `lvs --reportformat json --units b --nosuffix -o ...` and for lv_attr.
//
// lvs JSON: {"report":[{"lv":[{field: "string", ...}, ...]}]}. Every value is a string, "" means
// "not applicable" (snap_percent of a plain LV, lv_kernel_major of an inactive LV is "-1"),
// lv_tags is comma-joined. Warnings go to stderr even on success, so only stdout is parsed.
// lv_attr is 10 characters (lvs(8)): 1 volume type, 2 permissions, 3 allocation, 4 fixed minor,
// 5 state (a active, I invalid snapshot, S invalid suspended snapshot...), 6 open, 7 target type
// (s snapshot, t thin...), 8 zero, 9 health, 10 k = activation skip.
import { BlkError, ExitCode } from '../errors.js';
import { TAG_BASE, TAG_OWNER, TAG_SOURCE, TAG_TARGET, jobTag } from './argv.js';

export interface LvAttr {
  raw: string;
  /** Volume type character: s COW snapshot, S merging snapshot, V thin volume, t thin pool, o origin, - plain. */
  volumeType: string;
  active: boolean;
  /** A COW snapshot that overflowed (state I or S): everything read from it is torn. */
  invalid: boolean;
  open: boolean;
  /** Target type t: a thin volume or pool (also an origin that is thin). */
  thin: boolean;
  /** Activation skip ('k'): `lvchange -ay` silently does nothing without -K. */
  skipActivation: boolean;
}

export interface LvRow {
  vg: string;
  name: string;
  path: string;
  attr: LvAttr;
  origin: string;
  pool: string;
  /** COW snapshot fill (snap_percent), null when not applicable or inactive. */
  snapPercent: number | null;
  dataPercent: number | null;
  /** A thin pool's metadata fill (metadata_percent), null elsewhere. */
  metadataPercent: number | null;
  size: number | null;
  originSize: number | null;
  tags: string[];
  time: string;
  /** "major:minor" of the active device, null when inactive. */
  devno: string | null;
}

/** Decodes a 10-character lv_attr; throws SNAPSHOT on anything else. */
export function decodeAttr(raw: string): LvAttr {
  if (!/^[-\w]{10}$/.test(raw)) throw new BlkError(ExitCode.SNAPSHOT, `unexpected lv_attr "${raw}" in lvs output`);
  const c = (i: number) => raw.charAt(i);
  return {
    raw,
    volumeType: c(0),
    active: c(4) === 'a',
    invalid: c(4) === 'I' || c(4) === 'S',
    open: c(5) === 'o',
    thin: c(6) === 't',
    skipActivation: c(9) === 'k',
  };
}

const num = (s: string | undefined): number | null => {
  if (s === undefined || s === '' || s === '-1') return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
};

function field(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  return typeof v === 'string' ? v : '';
}

function toRow(o: Record<string, unknown>): LvRow {
  const major = num(field(o, 'lv_kernel_major'));
  const minor = num(field(o, 'lv_kernel_minor'));
  const tags = field(o, 'lv_tags');
  return {
    vg: field(o, 'vg_name'),
    name: field(o, 'lv_name'),
    path: field(o, 'lv_path'),
    attr: decodeAttr(field(o, 'lv_attr')),
    origin: field(o, 'origin'),
    pool: field(o, 'pool_lv'),
    snapPercent: num(field(o, 'snap_percent')),
    dataPercent: num(field(o, 'data_percent')),
    metadataPercent: num(field(o, 'metadata_percent')),
    size: num(field(o, 'lv_size')),
    originSize: num(field(o, 'origin_size')),
    tags: tags === '' ? [] : tags.split(','),
    time: field(o, 'lv_time'),
    devno: major !== null && minor !== null ? `${major}:${minor}` : null,
  };
}

/** Parses lvs JSON stdout into rows (all reports flattened); throws SNAPSHOT naming the problem. */
export function parseLvs(stdout: string): LvRow[] {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch (err) {
    throw new BlkError(ExitCode.SNAPSHOT, `lvs printed something that is not JSON: ${String(stdout).trim().slice(0, 200)}`, { cause: err });
  }
  const reports = (doc as { report?: unknown })?.report;
  if (!Array.isArray(reports)) throw new BlkError(ExitCode.SNAPSHOT, 'lvs JSON has no "report" array');
  const rows: LvRow[] = [];
  for (const r of reports) {
    const lvs = (r as { lv?: unknown })?.lv;
    if (!Array.isArray(lvs)) throw new BlkError(ExitCode.SNAPSHOT, 'lvs JSON report has no "lv" array');
    for (const o of lvs) rows.push(toRow(o as Record<string, unknown>));
  }
  return rows;
}

/** A COW snapshot has volume type s/S; a thin snapshot is a thin volume with an origin. */
export function snapshotKind(row: LvRow): 'cow' | 'thin' | null {
  if (row.attr.volumeType === 's' || row.attr.volumeType === 'S') return 'cow';
  if (row.origin !== '' && (row.pool !== '' || row.attr.thin)) return 'thin';
  return null;
}

/** How full a COW snapshot is, in percent (an invalid one is 100); null for thin or unknown. */
export function snapshotFill(row: LvRow): number | null {
  if (snapshotKind(row) !== 'cow') return null;
  if (row.attr.invalid) return 100;
  return row.snapPercent;
}

/**
 * Why a snapshot cannot be trusted as a consistent source, or null when it can: it overflowed
 * (invalid, or 100% full), or it is fuller than maxFillPct (the early-abort threshold).
 */
export function snapshotProblem(row: LvRow, maxFillPct?: number): string | null {
  const id = `${row.vg}/${row.name}`;
  if (row.attr.invalid) return `snapshot ${id} overflowed and is invalid (lv_attr ${row.attr.raw})`;
  const fill = snapshotFill(row);
  if (fill !== null && fill >= 100) return `snapshot ${id} is 100% full`;
  if (fill !== null && maxFillPct !== undefined && fill > maxFillPct) {
    return `snapshot ${id} is ${fill.toFixed(2)}% full, over --snapshot-max-fill ${maxFillPct}%`;
  }
  return null;
}

/** blkdelta's own snapshots, optionally of one role and job (never an untagged LV). */
export function ownSnapshots(rows: readonly LvRow[], f: { role?: 'source' | 'target'; job?: string; origin?: string } = {}): LvRow[] {
  return rows.filter((r) =>
    r.tags.includes(TAG_OWNER) &&
    (f.role === undefined || r.tags.includes(f.role === 'source' ? TAG_SOURCE : TAG_TARGET)) &&
    (f.job === undefined || r.tags.includes(jobTag(f.job))) &&
    (f.origin === undefined || r.origin === f.origin));
}

/** The job a blkdelta snapshot belongs to (from its blkdelta-job: tag), or "". */
export function jobOf(row: LvRow): string {
  const t = row.tags.find((x) => x.startsWith('blkdelta-job:'));
  return t ? t.slice('blkdelta-job:'.length) : '';
}

/** "source" / "target" / "base" (an incremental job's) for blkdelta's snapshots, "" for anything else. */
export function roleOf(row: LvRow): 'source' | 'target' | 'base' | '' {
  if (!row.tags.includes(TAG_OWNER)) return '';
  if (row.tags.includes(TAG_TARGET)) return 'target';
  if (row.tags.includes(TAG_BASE)) return 'base';
  return row.tags.includes(TAG_SOURCE) ? 'source' : '';
}
