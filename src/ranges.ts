// Block ranges: the parts of a device an incremental sync reads (docs/lvm.md, "Incremental runs").
// A BlockRange is [first block, block count] in the sync's block size. Pure helpers: merge, check,
// split into the engine's read pieces, and pick random sample blocks outside a set of ranges.
//
//   pieces(ranges): for each range, [pos, len) steps of at most chunkSize bytes, clipped to the
//                   compared size; without ranges, [0, compareSize) in chunkSize steps (a full run);
//                   the sample's ranges (if any) come first, their pieces flagged
//   sampleOutside(total, ranges, k, rand): k distinct blocks drawn uniformly from the blocks no
//                   range covers (all of them when fewer), as single-block ranges, sorted
//
// Memory: proportional to the number of ranges (the changed extents of one run), never to the
// device size. Nothing here touches a device.

/**
 * The most ranges one run carries: START.ranges is one JSON frame (MAX_FRAME, 16 MiB) and the
 * base record keeps them as pending; 200000 ranges are at most about 6 MB of JSON.
 */
export const MAX_RANGES = 200_000;
/** The most sample blocks (sample_blocks, --sample-blocks): START.sample stays a few MB. */
export const MAX_SAMPLE = 100_000;

/** [first block, number of blocks], in the sync's block size. */
export type BlockRange = [first: number, count: number];

/** Sorted, with overlapping and adjacent ranges joined, empty ones dropped. */
export function mergeRanges(ranges: readonly BlockRange[]): BlockRange[] {
  const sorted = ranges.filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]);
  const out: BlockRange[] = [];
  for (const [a, n] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[0] + last[1]) last[1] = Math.max(last[1], a + n - last[0]);
    else out.push([a, n]);
  }
  return out;
}

/** Blocks covered by merged ranges. */
export const rangeBlocks = (ranges: readonly BlockRange[]): number => ranges.reduce((s, [, n]) => s + n, 0);

/**
 * Why ranges are unusable for a device of totalBlocks blocks (not whole numbers, not sorted and
 * disjoint, past the end), or null. The peer's START is checked with it before anything is read.
 */
export function rangesProblem(ranges: unknown, totalBlocks: number): string | null {
  if (!Array.isArray(ranges)) return 'is not an array';
  let end = 0;
  for (const [i, r] of ranges.entries()) {
    if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => Number.isSafeInteger(x) && x >= 0)) return `entry ${i} is not [first, count] of whole numbers`;
    const [a, n] = r as BlockRange;
    if (n === 0) return `entry ${i} is empty`;
    if (a < end) return `entry ${i} starts at block ${a}, before the end of the previous one (${end}): not sorted and disjoint`;
    end = a + n;
    if (end > totalBlocks) return `entry ${i} ends at block ${end}, past the compared ${totalBlocks} blocks`;
  }
  return null;
}

/**
 * Why a sample (START.sample) is unusable next to ranges, or null: it must be valid ranges itself
 * and share no block with them (ranges and sample are each sorted and disjoint).
 */
export function sampleProblem(sample: unknown, ranges: readonly BlockRange[] | undefined, totalBlocks: number): string | null {
  if (ranges === undefined) return 'needs ranges (a sample belongs to an incremental run)';
  const bad = rangesProblem(sample, totalBlocks);
  if (bad) return bad;
  const s = sample as BlockRange[];
  if (rangeBlocks(mergeRanges([...s, ...ranges])) !== rangeBlocks(s) + rangeBlocks(ranges)) return 'shares blocks with the ranges';
  return null;
}

/** The [pos, len, inSample] byte pieces a run reads, in order (see the header). */
export function* pieces(p: { blockSize: number; chunkSize: number; compareSize: number; ranges?: readonly BlockRange[]; sample?: readonly BlockRange[] }): Generator<[number, number, boolean]> {
  if (p.ranges && p.sample) yield* spanPieces(p, p.sample, true);
  yield* spanPieces(p, p.ranges ?? [[0, Math.ceil(p.compareSize / p.blockSize)]], false);
}

function* spanPieces(p: { blockSize: number; chunkSize: number; compareSize: number }, spans: Iterable<BlockRange>, inSample: boolean): Generator<[number, number, boolean]> {
  for (const [a, n] of spans) {
    const end = Math.min((a + n) * p.blockSize, p.compareSize);
    for (let pos = a * p.blockSize; pos < end; pos += p.chunkSize) yield [pos, Math.min(p.chunkSize, end - pos), inSample];
  }
}

/** The gaps between merged ranges in [0, total): the blocks no range covers. */
export function complement(ranges: readonly BlockRange[], total: number): BlockRange[] {
  const out: BlockRange[] = [];
  let at = 0;
  for (const [a, n] of ranges) {
    if (a > at) out.push([at, Math.min(a, total) - at]);
    at = Math.max(at, a + n);
  }
  if (at < total) out.push([at, total - at]);
  return out.filter(([, n]) => n > 0);
}

/**
 * k distinct blocks drawn uniformly from those no range covers, as sorted single-block ranges.
 * rand() returns [0, 1) (Math.random, or a seeded generator in tests). Memory: k numbers.
 */
export function sampleOutside(total: number, ranges: readonly BlockRange[], k: number, rand: () => number = Math.random): BlockRange[] {
  const gaps = complement(mergeRanges(ranges), total);
  const free = rangeBlocks(gaps);
  const picked = new Set<number>();
  if (free <= k) for (let i = 0; i < free; i++) picked.add(i);
  while (picked.size < Math.min(k, free)) picked.add(Math.floor(rand() * free));
  return [...picked].sort((a, b) => a - b).map((i) => [nthBlock(gaps, i), 1] as BlockRange);
}

/** The i-th block (from 0) of the blocks gaps cover. */
function nthBlock(gaps: readonly BlockRange[], i: number): number {
  for (const [a, n] of gaps) {
    if (i < n) return a + i;
    i -= n;
  }
  throw new RangeError(`block index ${i} past the gaps`);
}
