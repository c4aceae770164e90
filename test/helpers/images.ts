// Image pairs for transport tests: a random source and a target that differs from it in a known
// set of blocks (some differing blocks are all-zero in the source).
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const BS = 4096;

export interface ImagePair {
  source: string;
  target: string;
  /** Blocks that differ between the two. */
  differing: number;
}

/** Writes dir/src.img (blocks × 4 KiB) and dir/dst.img, differing in `changed` spread-out blocks. */
export function makePair(dir: string, blocks = 1024, changed = 37): ImagePair {
  const src = randomBytes(blocks * BS);
  src.fill(0, 5 * BS, 9 * BS); // a zero run, partly among the changed blocks
  const dst = Buffer.from(src);
  const step = Math.floor(blocks / changed);
  for (let i = 0; i < changed; i++) randomBytes(BS).copy(dst, (i * step + 1) * BS);
  dst.fill(7, 6 * BS, 7 * BS); // block 6 is zero in the source: a zero record
  const differing = countDiffering(src, dst);
  const source = join(dir, 'src.img');
  const target = join(dir, 'dst.img');
  writeFileSync(source, src);
  writeFileSync(target, dst);
  return { source, target, differing };
}

function countDiffering(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let off = 0; off < a.length; off += BS) if (!a.subarray(off, off + BS).equals(b.subarray(off, off + BS))) n++;
  return n;
}

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
