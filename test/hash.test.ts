// Block hashes: blockHasher (the chunk in WASM memory, hashed by the glue module) must give exactly
// what xxhash-wasm's own h64Raw gives block by block, and what the native xxhsum gives, for every
// block size, seed and short last block. A wrong hash here would make changed blocks look equal.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockHasher, loadHasher, zeroBlockHash } from '../src/hash.js';

const SEEDS = [0n, 1n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 0x0123456789abcdefn];

const agrees = test.macro({
  async exec(t, chunkSize: number, blockSize: number, len: number) {
    const h = await loadHasher();
    const data = randomBytes(len);
    data.fill(0, 0, Math.min(len, blockSize)); // one all-zero block: its hash must still depend on the seed
    for (const seed of SEEDS) {
      const bh = await blockHasher(chunkSize, blockSize, seed);
      data.copy(bh.chunk);
      const n = Math.ceil(len / blockSize);
      const out = Buffer.alloc(8 + n * 8, 0xaa);
      t.is(bh.hash(len, out, 8), n);
      t.true(out.subarray(0, 8).every((b) => b === 0xaa), 'bytes before outAt untouched');
      for (let i = 0; i < n; i++) {
        const want = h.h64(data.subarray(i * blockSize, Math.min((i + 1) * blockSize, len)), seed);
        t.is(out.readBigUInt64LE(8 + i * 8), want, `block ${i} of ${n}, seed ${seed}`);
      }
      for (const [a, l] of [[0, len], [Math.floor(len / 3), Math.ceil(len / 2) - Math.floor(len / 3)], [len - 1, 1], [0, 0]] as const) {
        t.is(bh.h64At(0, a, l, seed), h.h64(data.subarray(a, a + l), seed), `h64At(${a}, ${l}), seed ${seed}`);
      }
    }
    const two = await blockHasher(chunkSize, blockSize, 1n, 2); // the second chunk: its own offset in the memory
    data.copy(two.chunks[1]!);
    t.is(two.h64At(1, 0, len, 5n), h.h64(data, 5n), 'h64At on chunks[1]');
  },
  title: (_p, chunkSize, blockSize, len) => `blockHasher = h64Raw per block: chunk ${chunkSize}, block ${blockSize}, ${len} bytes`,
});

test(agrees, 1 << 20, 4096, 1 << 20);
test(agrees, 1 << 20, 4096, (1 << 20) - 1);
test(agrees, 1 << 20, 4096, 4097);
test(agrees, 1 << 20, 4096, 1);
test(agrees, 1 << 20, 512, 1 << 20);
test(agrees, 1 << 20, 512, 1000);
test(agrees, 65536, 65536, 65536);
test(agrees, 2 << 20, 2 << 20, 3);
test(agrees, 16 << 20, 16 << 20, (16 << 20) - 4096);

test('blockHasher matches the native xxhsum -H1 (xxh64, seed 0) on 4 KiB blocks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-hash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bh = await blockHasher(1 << 20, 4096, 0n);
  const data = randomBytes(3 * 4096 + 100);
  data.copy(bh.chunk);
  const out = Buffer.alloc(4 * 8);
  bh.hash(data.length, out);
  for (let i = 0; i < 4; i++) {
    const file = join(dir, `b${i}`);
    writeFileSync(file, data.subarray(i * 4096, (i + 1) * 4096));
    let native: string;
    try {
      native = execFileSync('xxhsum', ['-H1', file], { encoding: 'utf8' }).split(/\s+/)[0]!;
    } catch (err) {
      return t.fail(`xxhsum is needed for this test (apt-get install xxhash): ${(err as Error).message}`);
    }
    t.is(out.readBigUInt64LE(i * 8).toString(16).padStart(16, '0'), native, `block ${i}`);
  }
});

test('hashers do not share memory, and the chunk stays valid across many hashes', async (t) => {
  const a = await blockHasher(1 << 20, 4096, 7n);
  const b = await blockHasher(1 << 20, 4096, 7n);
  a.chunk.fill(1);
  b.chunk.fill(2);
  t.true(a.chunk.every((x) => x === 1));
  const first = Buffer.alloc(256 * 8);
  a.hash(1 << 20, first);
  const again = Buffer.alloc(256 * 8);
  for (let i = 0; i < 50; i++) a.hash(1 << 20, again);
  t.deepEqual(again, first);
  t.is(a.chunk.length, 1 << 20);
  t.not(first.readBigUInt64LE(0), 0n);
});

test('blockHasher: nothing to hash, and a length beyond the chunk', async (t) => {
  const bh = await blockHasher(65536, 4096, 1n);
  t.is(bh.hash(0, Buffer.alloc(0)), 0);
  t.throws(() => bh.hash(65537, Buffer.alloc(17 * 8)), { instanceOf: RangeError, message: /larger than the chunk/ });
});

test('zeroBlockHash is the block hash of an all-zero block, for every block size and seed', async (t) => {
  const h = await loadHasher();
  for (const bs of [512, 4096, 65536, 65536 + 4096, 1 << 20]) {
    for (const seed of SEEDS) {
      t.is(await zeroBlockHash(bs, seed), h.h64(Buffer.alloc(bs), seed), `block size ${bs}, seed ${seed}`);
      const bh = await blockHasher(bs, bs, seed); // a fresh chunk is zeros
      const out = Buffer.alloc(8);
      bh.hash(bs, out);
      t.is(out.readBigUInt64LE(0), await zeroBlockHash(bs, seed));
    }
  }
});
