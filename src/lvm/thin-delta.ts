// Pure parts of incremental runs on thin LVs: thin_delta's XML, the argv of the metadata tools,
// and the base record's decisions. Table-tested against outputs captured from the real tools
// (fixtures/lvm/thin-delta*.xml, fixtures/lvm/thin-delta-transcript.txt).
//
//   thin_delta -m --snap1 BASE_ID --snap2 NEW_ID /dev/mapper/VG-POOL_tmeta  →
//     <superblock data_block_size="128" ...><diff left=".." right="..">
//       <same|different|left_only|right_only begin="B" length="N"/> ...
//   in pool data blocks of data_block_size 512-byte sectors (the pool's chunk size).
//   changed = different ∪ left_only ∪ right_only (a discard is left_only: it must reach the target)
//   toBlockRanges: pool blocks → byte spans → the sync's blocks, merged, clipped to the device
//
// Memory: one entry per changed extent. Nothing here runs a command.
import { BlkError, ExitCode } from '../errors.js';
import { mergeRanges, type BlockRange } from '../ranges.js';
import { dmName } from './dm-status.js';

/** thin_delta's answer: the pool's block size in bytes and the changed extents in pool blocks. */
export interface ThinDelta {
  poolBlockBytes: number;
  left: number;
  right: number;
  changed: BlockRange[];
  /** Pool blocks only the left (the base) maps: different + left_only, what the base pins. */
  leftOnlyBlocks: number;
}

const CHANGED = new Set(['different', 'left_only', 'right_only']);

/** Parses thin_delta's non-verbose XML; throws SNAPSHOT naming what is malformed. */
export function parseThinDelta(xml: string): ThinDelta {
  const bad = (why: string) => new BlkError(ExitCode.SNAPSHOT, `unexpected thin_delta output: ${why}`);
  const sb = /<superblock\b([^>]*)>/.exec(xml);
  const diff = /<diff\b([^>]*)>/.exec(xml);
  if (!sb || !diff || !/<\/diff>\s*<\/superblock>\s*$/.test(xml)) throw bad('no <superblock><diff>...</diff></superblock>');
  const sectors = intAttr(sb[1]!, 'data_block_size', bad);
  if (sectors <= 0) throw bad(`data_block_size ${sectors}`);
  const changed: BlockRange[] = [];
  let leftOnlyBlocks = 0;
  const body = xml.slice(diff.index + diff[0].length, xml.lastIndexOf('</diff>'));
  const re = /<(\w+)\b([^>]*)\/>|(\S)/g;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    if (m[3] !== undefined || !(m[1] === 'same' || CHANGED.has(m[1]!))) throw bad(`unknown content "${m[0].slice(0, 40)}" (verbose output is not supported)`);
    if (!CHANGED.has(m[1]!)) continue;
    changed.push([intAttr(m[2]!, 'begin', bad), intAttr(m[2]!, 'length', bad)]);
    if (m[1] !== 'right_only') leftOnlyBlocks += changed[changed.length - 1]![1];
  }
  return { poolBlockBytes: sectors * 512, left: intAttr(diff[1]!, 'left', bad), right: intAttr(diff[1]!, 'right', bad), changed, leftOnlyBlocks };
}

function intAttr(attrs: string, name: string, bad: (why: string) => Error): number {
  const m = new RegExp(`\\b${name}="(\\d{1,15})"`).exec(attrs);
  if (!m) throw bad(`no ${name}="N"`);
  return Number(m[1]);
}

/**
 * The sync's block ranges covering the changed pool blocks: each extent widened to whole sync
 * blocks, clipped to deviceBytes, merged. Either block size may be the larger.
 */
export function toBlockRanges(changed: readonly BlockRange[], poolBlockBytes: number, blockSize: number, deviceBytes: number): BlockRange[] {
  const total = Math.ceil(deviceBytes / blockSize);
  const out: BlockRange[] = [];
  for (const [b, n] of changed) {
    const first = Math.floor((b * poolBlockBytes) / blockSize);
    const end = Math.min(total, Math.ceil(((b + n) * poolBlockBytes) / blockSize));
    if (end > first) out.push([first, end - first]);
  }
  return mergeRanges(out);
}

/** dm name of a thin pool's metadata device and of its pool target (LVM doubles '-' in names). */
export function poolDevices(vg: string, pool: string): { tmeta: string; tpool: string } {
  return { tmeta: `/dev/mapper/${dmName(vg, pool)}_tmeta`, tpool: `${dmName(vg, pool)}-tpool` };
}

export const reserveArgv = (tpool: string): string[] => ['dmsetup', 'message', tpool, '0', 'reserve_metadata_snap'];
export const releaseArgv = (tpool: string): string[] => ['dmsetup', 'message', tpool, '0', 'release_metadata_snap'];
export const thinDeltaArgv = (tmeta: string, left: number, right: number): string[] =>
  ['thin_delta', '-m', '--snap1', String(left), '--snap2', String(right), tmeta];

/**
 * Default sample size: blocks outside the changed ranges compared on each incremental run. A
 * target rewritten behind blkdelta's back in a tenth of its blocks escapes k uniform samples
 * with probability 0.9^k: 0.9^128 ≈ 1.4e-6.
 */
export const DEFAULT_SAMPLE_BLOCKS = 128;

/** Probability that k uniform samples all miss a rewritten fraction f of the blocks. */
export const missProbability = (k: number, f: number): number => (1 - f) ** k;

/** Whether a periodic full compare is due (full_compare_every, seconds; 0 or undefined: never). */
export function fullCompareDue(lastFullMs: number | undefined, everyS: number | undefined, nowMs: number): boolean {
  if (!everyS) return false;
  return lastFullMs === undefined || nowMs - lastFullMs >= everyS * 1000;
}
