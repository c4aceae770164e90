// xxh64 through xxhash-wasm. Block hashes use a random per-run seed (so nobody can craft
// colliding blocks in advance); record and stream checksums use fixed seeds.
//
// Two ways in:
// - loadHasher(): xxhash-wasm's own API, loaded once per process, for checksums of records,
//   headers and patch streams. It copies each input into WASM memory, which grows to the largest
//   input ever hashed: callers hash at most one chunk (a few MiB) at a time.
// - blockHasher(): the hot path of every sync, a block hash per 4 KiB of the device. Going through
//   h64Raw costs a copy into WASM memory, a JS call and a BigInt per block: 0.15 s per GiB here,
//   against 0.07 s for the hashing itself. So the chunk is read straight into the WASM memory of a
//   private instance of xxhash-wasm's module, and a 60-byte glue module (below) loops over its
//   blocks inside WASM, calling xxhash-wasm's xxh64 export and storing each hash in that memory.
import xxhash from 'xxhash-wasm';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export interface StreamHasher {
  update(data: Uint8Array): StreamHasher;
  digest(): bigint;
}

export interface Hasher {
  h64(data: Uint8Array, seed: bigint): bigint;
  create64(seed: bigint): StreamHasher;
}

let loaded: Promise<Hasher> | undefined;

export function loadHasher(): Promise<Hasher> {
  loaded ??= xxhash().then((x) => ({
    h64: (data, seed) => x.h64Raw(data, seed),
    create64: (seed) => x.create64(seed) as StreamHasher,
  }));
  return loaded;
}

/** xxh64 of blockSize zero bytes with seed (what a BlockHasher gives an all-zero block), streamed in 64 KiB steps. */
export async function zeroBlockHash(blockSize: number, seed: bigint): Promise<bigint> {
  const zeros = Buffer.alloc(Math.min(blockSize, 65536));
  const s = (await loadHasher()).create64(seed);
  for (let done = 0; done < blockSize; done += zeros.length) s.update(zeros.subarray(0, Math.min(zeros.length, blockSize - done)));
  return s.digest();
}

/** A fresh random 64-bit seed for one run's block hashes. */
export function randomSeed(): bigint {
  const { randomBytes } = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto'); // the client's only: not loaded by a server
  return randomBytes(8).readBigUInt64LE(0);
}

/** Hashes blocks of a chunk that lives in WASM memory, without a copy or a JS call per block. */
export interface BlockHasher {
  /** Read the chunk into this buffer (chunkSize bytes, never moved or reallocated), then hash(). */
  readonly chunk: Buffer;
  /** chunks[0] is chunk; more when asked for (one is read ahead while another is hashed). Page-aligned. */
  readonly chunks: readonly Buffer[];
  /**
   * Hashes the blocks of chunks[which][0, len) with the seed and writes one hash per block (8
   * bytes, little-endian, the last block may be short) to out[outAt...]. Returns the block count.
   */
  hash(len: number, out: Buffer, outAt?: number, which?: number): number;
  /** xxh64 of chunks[which][start, start+len) with seed, as loadHasher().h64 of those bytes (no copy). */
  h64At(which: number, start: number, len: number, seed: bigint): bigint;
}

// The glue module, in WebAssembly text:
//   (module
//     (import "x" "mem" (memory 1))
//     (import "x" "xxh64" (func $xxh64 (param i32 i32 i64) (result i64)))
//     (func (export "blocks") (param $p i32) (param $end i32) (param $bs i32) (param $seed i64) (param $out i32)
//       (local $n i32)
//       (loop $next                           ;; requires p < end
//         (local.set $n (select (local.get $bs) (i32.sub (local.get $end) (local.get $p))
//                               (i32.lt_u (local.get $bs) (i32.sub (local.get $end) (local.get $p)))))
//         (i64.store (local.get $out) (call $xxh64 (local.get $p) (local.get $n) (local.get $seed)))
//         (local.set $out (i32.add (local.get $out) (i32.const 8)))
//         (local.set $p (i32.add (local.get $p) (local.get $bs)))
//         (br_if $next (i32.lt_u (local.get $p) (local.get $end))))))
// encoded by hand below (sizes are single-byte LEB128: every section is shorter than 128 bytes).
const I32 = 0x7f, I64 = 0x7e;
const name = (s: string) => [s.length, ...Buffer.from(s)];
const section = (id: number, ...items: number[][]) => {
  const body = [items.length, ...items.flat()];
  return [id, body.length, ...body];
};
const get = (i: number) => [0x20, i], set = (i: number) => [0x21, i];
const [P, END, BS, SEED, OUT, N] = [0, 1, 2, 3, 4, 5];
const code = [
  1, 1, I32, // one local: $n
  0x03, 0x40, // loop
  ...get(BS), ...get(END), ...get(P), 0x6b, ...get(BS), ...get(END), ...get(P), 0x6b, 0x49, 0x1b, ...set(N), // n = min(bs, end - p)
  ...get(OUT), ...get(P), ...get(N), ...get(SEED), 0x10, 0, 0x37, 3, 0, // i64.store out, xxh64(p, n, seed)
  ...get(OUT), 0x41, 8, 0x6a, ...set(OUT), // out += 8
  ...get(P), ...get(BS), 0x6a, ...set(P), // p += bs
  ...get(P), ...get(END), 0x49, 0x0d, 0, // br_if next (p < end)
  0x0b, 0x0b, // end loop, end func
];
const GLUE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
  ...section(1, [0x60, 3, I32, I32, I64, 1, I64], [0x60, 5, I32, I32, I32, I64, I32, 0]), // types
  ...section(2, [...name('x'), ...name('mem'), 2, 0, 1], [...name('x'), ...name('xxh64'), 0, 0]), // imports
  ...section(3, [1]), // func 1 has type 1
  ...section(7, [...name('blocks'), 0, 1]), // exports
  ...section(10, [code.length, ...code]),
]);

let xxhModule: WebAssembly.Module | undefined;

/**
 * xxhash-wasm's module, compiled once per process (synchronously: a few KiB; DeviceWriter's
 * constructor needs it). xxhash-wasm inlines it in its JS and ships the same bytes as a file (a
 * test checks that h64 of both agree); the package's exports map hides the file, so find it by path.
 */
function xxhashModule(): WebAssembly.Module {
  return (xxhModule ??= new WebAssembly.Module(readFileSync(new URL('../workerd/xxhash.wasm', import.meta.resolve('xxhash-wasm')))));
}
let glueModule: Promise<WebAssembly.Module> | undefined;

/** A block hasher for chunks of up to chunkSize bytes (a multiple of blockSize); `count` chunk buffers. */
export async function blockHasher(chunkSize: number, blockSize: number, seed: bigint, count = 1): Promise<BlockHasher> {
  glueModule ??= WebAssembly.compile(GLUE);
  const xxh = await WebAssembly.instantiate(xxhashModule());
  const { mem, xxh64 } = xxh.exports as { mem: WebAssembly.Memory; xxh64: (p: number, n: number, seed: bigint) => bigint };
  const glue = await WebAssembly.instantiate(await glueModule, { x: { mem, xxh64 } });
  const blocks = glue.exports.blocks as (p: number, end: number, bs: number, seed: bigint, out: number) => void;
  const maxBlocks = Math.ceil(chunkSize / blockSize);
  const hashesAt = chunkSize * count; // chunks first: each starts page-aligned (chunkSize is a multiple of 4 KiB)
  const need = hashesAt + maxBlocks * 8;
  if (mem.buffer.byteLength < need) mem.grow(Math.ceil((need - mem.buffer.byteLength) / 65536));
  // Views made after the only grow(): they stay valid for the life of the hasher.
  const chunks = Array.from({ length: count }, (_, i) => Buffer.from(mem.buffer, i * chunkSize, chunkSize));
  const hashes = Buffer.from(mem.buffer, hashesAt, maxBlocks * 8);
  const s = BigInt.asIntN(64, seed); // an i64 parameter takes a signed BigInt
  return {
    chunk: chunks[0]!,
    chunks,
    hash(len, out, outAt = 0, which = 0) {
      if (len <= 0) return 0;
      if (len > chunkSize) throw new RangeError(`hash(${len}): larger than the chunk (${chunkSize})`);
      const n = Math.ceil(len / blockSize);
      const p = which * chunkSize;
      blocks(p, p + len, blockSize, s, hashesAt);
      hashes.copy(out, outAt, 0, n * 8);
      return n;
    },
    h64At(which, start, len, seed) {
      if (start < 0 || len < 0 || start + len > chunkSize) throw new RangeError(`h64At(${start}, ${len}): outside the chunk (${chunkSize})`);
      return BigInt.asUintN(64, xxh64(which * chunkSize + start, len, BigInt.asIntN(64, seed)));
    },
  };
}

/** Page-aligned buffers in the memory of a private xxhash-wasm instance, hashed where they lie. */
export interface HashedBuffers {
  readonly buffers: readonly Buffer[];
  /** xxh64 of buffers[which][start, start+len) with seed, as loadHasher().h64 of those bytes (no copy). */
  h64At(which: number, start: number, len: number, seed: bigint): bigint;
}

/**
 * `count` buffers of `size` bytes (a multiple of 4 KiB) in one WASM memory, made synchronously
 * (a constructor needs them): the device writer's O_DIRECT batches, whose records are checked
 * in place instead of through h64Raw's copy into its own memory.
 */
export function hashedBuffers(size: number, count: number): HashedBuffers {
  const { mem, xxh64 } = new WebAssembly.Instance(xxhashModule()).exports as { mem: WebAssembly.Memory; xxh64: (p: number, n: number, seed: bigint) => bigint };
  const need = size * count;
  if (mem.buffer.byteLength < need) mem.grow(Math.ceil((need - mem.buffer.byteLength) / 65536));
  const buffers = Array.from({ length: count }, (_, i) => Buffer.from(mem.buffer, i * size, size)); // views after the only grow()
  return {
    buffers,
    h64At(which, start, len, seed) {
      if (start < 0 || len < 0 || start + len > size) throw new RangeError(`h64At(${start}, ${len}): outside the buffer (${size})`);
      return BigInt.asUintN(64, xxh64(which * size + start, len, BigInt.asIntN(64, seed)));
    },
  };
}
