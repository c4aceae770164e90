// The tags that make a target snapshot a labelled copy, and the same labels on the live target.
// Pure: builders and parsers only (LVM tags allow [A-Za-z0-9_+.-/=!:&#], up to 1024 chars).
//
//   blkdelta-of:<lv>            the target LV (same VG) the copy belongs to: copies are found by
//                               this tag, never by origin (a rollback by merge clears the origin
//                               of every other copy)
//   blkdelta-data:<stamp>       when the data it holds was made: the end of the good run that
//                               left that content on the target (YYYYmmddTHHMMSSZ, UTC)
//   blkdelta-fp:<algo>:<seed>:<blockSize>:<size>:<digest>   that run's fingerprint of the content
//
// The live target LV carries blkdelta-data and blkdelta-fp while it holds a good run's content:
// they are removed before a run's first write and set again when it succeeds, and a new copy is
// labelled with the live target's labels at the moment it is taken (before the first write).
// The live LV never gets the blkdelta owner tag: nothing blkdelta removes can be the live target.
import { BlkError, ExitCode } from '../errors.js';

export const TAG_OF_PREFIX = 'blkdelta-of:';
export const TAG_DATA_PREFIX = 'blkdelta-data:';
export const TAG_FP_PREFIX = 'blkdelta-fp:';

/** The shape of engine/fingerprint.ts's Fingerprint (lvm sits below engine and cannot import it). */
export interface CopyFingerprint {
  algo: string;
  seed: string;
  blockSize: number;
  size: number;
  digest: string;
}

export const ofTag = (lv: string): string => `${TAG_OF_PREFIX}${lv}`;

/** "20261127T132217Z" for a time (seconds, UTC). */
export function stampOf(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export const dataTag = (ms: number): string => `${TAG_DATA_PREFIX}${stampOf(ms)}`;

export function fpTag(fp: CopyFingerprint): string {
  const tag = `${TAG_FP_PREFIX}${fp.algo}:${fp.seed}:${fp.blockSize}:${fp.size}:${fp.digest}`;
  if (!/^[A-Za-z0-9_+.\-/=!:&#]{1,1024}$/.test(tag)) throw new BlkError(ExitCode.SNAPSHOT, `fingerprint cannot be an LVM tag: ${tag}`);
  return tag;
}

export interface CopyLabels {
  /** The target LV from blkdelta-of, or null for a copy made before the tag existed. */
  of: string | null;
  /** ms since the epoch, null when the copy has no (valid) data tag. */
  dataTime: number | null;
  fingerprint: CopyFingerprint | null;
}

/** Reads the labels from an LV's tags; a malformed tag reads as absent. */
export function labelsOf(tags: readonly string[]): CopyLabels {
  const find = (p: string) => tags.find((t) => t.startsWith(p))?.slice(p.length);
  const of = find(TAG_OF_PREFIX);
  return { of: of ?? null, dataTime: parseStamp(find(TAG_DATA_PREFIX)), fingerprint: parseFp(find(TAG_FP_PREFIX)) };
}

function parseStamp(s: string | undefined): number | null {
  const m = s === undefined ? null : /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return null;
  const t = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  return Number.isNaN(t) ? null : t;
}

function parseFp(s: string | undefined): CopyFingerprint | null {
  const m = s === undefined ? null : /^([a-z0-9-]+):(\d{1,20}):(\d{1,10}):(\d{1,16}):([0-9a-f]{16})$/.exec(s);
  if (!m) return null;
  const [blockSize, size] = [Number(m[3]), Number(m[4])];
  if (blockSize <= 0 || !Number.isSafeInteger(size)) return null;
  return { algo: m[1]!, seed: m[2]!, blockSize, size, digest: m[5]! };
}

/** The labels of a live LV's tags that say what it holds (to remove before its first write). */
export const contentTags = (tags: readonly string[]): string[] =>
  tags.filter((t) => t.startsWith(TAG_DATA_PREFIX) || t.startsWith(TAG_FP_PREFIX));

/** lvchange adding and removing tags in one call (none of either: null, nothing to run). */
export function retagArgv(vg: string, lv: string, add: readonly string[], del: readonly string[]): string[] | null {
  if (add.length === 0 && del.length === 0) return null;
  return ['lvchange', '-y', ...del.flatMap((t) => ['--deltag', t]), ...add.flatMap((t) => ['--addtag', t]), `${vg}/${lv}`];
}
