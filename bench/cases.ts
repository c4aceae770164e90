// Tables A and B of `npm run bench`.
// A: one random image a.img and its copy b.img (SIZE bytes, 4 KiB blocks); for each case, change
//    b.img (last: replace it by an empty sparse file, a first full copy),
//    `blkdelta sync a.img b.img` (which restores it), then time `xxhsum -H1 a b` (two
//    processes in parallel; their hashes must match, which checks the sync) and `cat a ‖ cat b`
//    (two processes in parallel, issue 13's baseline).
//    When blocksync-fast (a C tool comparing two local files in one process) is found
//    (BLKDELTA_BENCH_BLOCKSYNC_FAST, else PATH), the case's change is made again and
//    `blocksync-fast -s a -d b` then `sync b` timed on it, and checked with xxhsum the same way.
//    Caches are warm throughout: the files were just written and one `cat a b` runs before the
//    first measurement; nothing is dropped. Baselines are timed right after each case's sync,
//    twice each, keeping the faster (other work on a shared machine only ever slows a run).
// B: identical sparse a and b (truncate -s) of 1, 4, 16, 64 GiB: a no-change sync over holes.
// Memory: see images.ts. Interrupted: files stay in the work dir, which bench.ts removes.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { changeRandomBlocks, changeRange, copyImage, makeRandomImage, makeSparse } from './images.js';
import { runBlkdelta, timeParallel, type SyncRun } from './measure.js';

export const BLOCK = 4096;
export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

export interface CaseRow {
  name: string;
  changedBytes: number;
  run: SyncRun;
  xxhsumMs: number;
  catMs: number;
  /** blocksync-fast on the same change (+ sync of b), when found. */
  bsfMs?: number;
}

export interface TableA {
  size: number;
  prepMs: number;
  rows: CaseRow[];
  /** blocksync-fast's path and version line, when it was found. */
  blocksyncFast?: string;
}

export interface SparseRow {
  size: number;
  run: SyncRun;
}

export interface Images {
  a: string;
  b: string;
  size: number;
}

/** Writes the random a.img and its copy b.img, then reads both once to warm the cache. */
export async function prepareImages(dir: string, size: number): Promise<Images & { prepMs: number }> {
  const t0 = Date.now();
  const a = join(dir, 'a.img');
  const b = join(dir, 'b.img');
  makeRandomImage(a, size, 'blkdelta-bench');
  copyImage(a, b);
  await timeParallel([{ argv: ['cat', a, b] }], false);
  return { a, b, size, prepMs: Date.now() - t0 };
}

/**
 * Makes the case's change (`change`, which returns the bytes changed), syncs a → b and checks b
 * equals a afterwards with xxhsum (timed), and times cat a b; with blocksync-fast (bsf), makes
 * the same change again and times it too.
 */
export async function syncAndCheck(img: Images, name: string, change: () => number, dir: string, bsf?: string): Promise<CaseRow> {
  const changedBytes = change();
  const run = await runBlkdelta(['sync', img.a, img.b], dir);
  checkSummary(name, run, changedBytes);
  const xx = await checkSame(img, name, 'the sync');
  const xx2 = await checkSame(img, name, 'the sync'); // timed again: the faster counts
  const cat = await bestOf2(() => timeParallel([{ argv: ['cat', img.a] }, { argv: ['cat', img.b] }], false));
  const row: CaseRow = { name, changedBytes, run, xxhsumMs: Math.min(xx.wallMs, xx2.wallMs), catMs: cat };
  if (bsf) {
    change();
    row.bsfMs = (await timeParallel([{ argv: ['sh', '-c', '"$0" -s "$1" -d "$2" --silent && sync "$2"', bsf, img.a, img.b] }], false)).wallMs;
    await checkSame(img, name, 'blocksync-fast');
  }
  return row;
}

/** xxhsum of a and b in parallel (timed); throws when they differ. */
async function checkSame(img: Images, name: string, after: string): Promise<{ wallMs: number }> {
  const xx = await timeParallel([{ argv: ['xxhsum', '-H1', img.a] }, { argv: ['xxhsum', '-H1', img.b] }]);
  const [ha, hb] = xx.stdouts.map((s) => s.split(/\s/)[0]);
  if (ha !== hb) throw new Error(`case ${name}: ${img.b} differs from ${img.a} after ${after} (xxh64 ${hb} vs ${ha})`);
  return xx;
}

/** The faster of two runs: the machine is shared, a baseline should not be the unlucky one. */
export async function bestOf2(run: () => Promise<{ wallMs: number }>): Promise<number> {
  return Math.min((await run()).wallMs, (await run()).wallMs);
}

function checkSummary(name: string, run: SyncRun, changedBytes: number): void {
  const s = run.summary;
  const differing = s.blocksDiffering * s.blockSize;
  if (changedBytes === 0 ? differing !== 0 : differing !== changedBytes) {
    throw new Error(`case ${name}: blkdelta found ${differing} differing bytes, the bench changed ${changedBytes}`);
  }
}

/** The cases of table A on prepared images (each change seeded: made again the same for blocksync-fast). */
export async function tableA(img: Images & { prepMs: number }, dir: string, bsf?: { path: string; version: string }): Promise<TableA> {
  const rows: CaseRow[] = [];
  const one = async (name: string, change: () => number) => rows.push(await syncAndCheck(img, name, change, dir, bsf?.path));
  await one('(a) no change', () => 0);
  await one('(b) 1% of 4 KiB blocks, random', () => changeRandomBlocks(img.b, img.size, BLOCK, 0.01, 1));
  const rangeLen = Math.min(40 * MIB, img.size);
  const rangeAt = Math.floor((img.size - rangeLen) / 3 / BLOCK) * BLOCK;
  await one('(c) 40 MiB contiguous', () => changeRange(img.b, rangeAt, rangeLen, 1));
  // the first run of a new job: every block of the source travels (random data: none is zero)
  await one('(d) full copy to an empty target', () => {
    rmSync(img.b);
    makeSparse(img.b, img.size);
    return img.size;
  });
  return { size: img.size, prepMs: img.prepMs, rows, ...(bsf ? { blocksyncFast: `${bsf.path} (${bsf.version})` } : {}) };
}

/** Table B: a no-change sync of identical sparse files of each size. */
export async function tableB(sizes: number[], dir: string): Promise<SparseRow[]> {
  const rows: SparseRow[] = [];
  for (const size of sizes) {
    const a = join(dir, `sparse-a-${size}`);
    const b = join(dir, `sparse-b-${size}`);
    makeSparse(a, size);
    makeSparse(b, size);
    try {
      const run = await runBlkdelta(['sync', a, b], dir);
      if (!run.summary.identical) throw new Error(`sparse ${size}: blkdelta found differences between two empty sparse files`);
      rows.push({ size, run });
    } finally {
      rmSync(a, { force: true });
      rmSync(b, { force: true });
    }
  }
  return rows;
}
