// Benchmark image files: random content from a seeded AES-128-CTR keystream (fast, repeatable),
// copies, changes at random or contiguous blocks, and sparse files. Every writer fsyncs before
// returning, so background writeback does not land inside a measurement.
// Memory: one 1 MiB buffer per call (the random-block set of a 64 GiB image: ~170k numbers).
// Interrupted: partial image files stay in the bench's temp dir, which the bench removes.
import { createCipheriv, createHash, type Cipher } from 'node:crypto';
import { closeSync, copyFileSync, fsyncSync, openSync, truncateSync, writeFileSync, writeSync } from 'node:fs';

const MIB = 1024 * 1024;

/** An endless keystream of pseudo-random bytes, the same for the same seed. */
export class RandomBytes {
  private readonly cipher: Cipher;
  private readonly zeros = Buffer.alloc(MIB);

  constructor(seed: string) {
    const key = createHash('sha256').update(seed).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  }

  /** The next n bytes (n ≤ 1 MiB). */
  next(n: number): Buffer {
    return this.cipher.update(this.zeros.subarray(0, n));
  }
}

/** A small seeded PRNG (mulberry32) for picking block numbers. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes size bytes of seeded random data to path (size a multiple of 1 MiB or not). */
export function makeRandomImage(path: string, size: number, seed: string): void {
  const rnd = new RandomBytes(seed);
  withFile(path, 'w', (fd) => {
    for (let pos = 0; pos < size; pos += MIB) writeSync(fd, rnd.next(Math.min(MIB, size - pos)), 0, Math.min(MIB, size - pos), pos);
  });
}

export function copyImage(from: string, to: string): void {
  copyFileSync(from, to);
  withFile(to, 'r+', () => {});
}

/** A sparse file of size bytes (all holes). */
export function makeSparse(path: string, size: number): void {
  writeFileSync(path, '');
  truncateSync(path, size);
}

/** Sorted distinct block numbers, count of them, among blocks [0, total). */
export function pickBlocks(total: number, count: number, seed: number): number[] {
  if (count > total) throw new Error(`cannot pick ${count} of ${total} blocks`);
  const rand = prng(seed);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(Math.floor(rand() * total));
  return [...picked].sort((x, y) => x - y);
}

/** Overwrites fraction of the blockSize blocks of path with new random data; returns bytes changed. */
export function changeRandomBlocks(path: string, size: number, blockSize: number, fraction: number, seed: number): number {
  const blocks = pickBlocks(Math.floor(size / blockSize), Math.round((size / blockSize) * fraction), seed);
  const rnd = new RandomBytes(`blocks-${seed}`);
  withFile(path, 'r+', (fd) => {
    for (const b of blocks) writeSync(fd, rnd.next(blockSize), 0, blockSize, b * blockSize);
  });
  return blocks.length * blockSize;
}

/** Overwrites [offset, offset+length) of path with new random data; returns length. */
export function changeRange(path: string, offset: number, length: number, seed: number): number {
  const rnd = new RandomBytes(`range-${seed}`);
  withFile(path, 'r+', (fd) => {
    for (let pos = 0; pos < length; pos += MIB) {
      const n = Math.min(MIB, length - pos);
      writeSync(fd, rnd.next(n), 0, n, offset + pos);
    }
  });
  return length;
}

function withFile(path: string, flags: string, fn: (fd: number) => void): void {
  const fd = openSync(path, flags);
  try {
    fn(fd);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
