// Version 2 state items (docs/patch-format.md, "Version 2"): a pure codec like format.ts.
//   base item   (0x03): 16 bytes + 8 per block: the target's block hashes under a record, before it
//   region item (0x04): 32 bytes: the digest of one region's block hashes before the patch
// Decoders check every field against the header and what came before (the record a base item
// follows, the end of the previous region) and throw FormatError naming the field and offset.
// Memory: a decoded base item is a view of the input (at most 8 × max_record_len / 512 bytes).
import { FormatError } from '../errors.js';
import type { Hasher } from '../hash.js';
import { BASE_TYPE, REGION_TYPE, asBuffer, type PatchHeader, type RecordHeader } from './format.js';

export const BASE_HEAD_LEN = 16, REGION_LEN = 32;

export interface BaseItem { offset: number; count: number; hashes: Buffer }
export interface RegionItem { offset: number; length: number; baseDigest: bigint }

/** Blocks a record of `length` bytes covers (the last one may be short). */
export const blocksOf = (length: number, blockSize: number): number => Math.ceil(length / blockSize);

/** The base item of the record `r`: its block hashes (8 bytes LE each) before the patch. */
export function encodeBase(r: Pick<RecordHeader, 'offset' | 'length'>, hashes: Uint8Array, h: PatchHeader): Buffer {
  const count = blocksOf(r.length, h.blockSize);
  if (hashes.length !== count * 8) throw new RangeError(`encodeBase: ${hashes.length / 8} hashes for a record of ${count} blocks`);
  const b = Buffer.alloc(BASE_HEAD_LEN + hashes.length);
  b.writeUInt8(BASE_TYPE, 0);
  b.writeUInt32LE(count, 4);
  b.writeBigUInt64LE(BigInt(r.offset), 8);
  b.set(hashes, BASE_HEAD_LEN);
  return b;
}

/** The 16-byte head of the base item at `at`, which must follow the record `r`; returns its total length. */
export function decodeBaseHead(buf: Uint8Array, at: number, r: RecordHeader, h: PatchHeader): number {
  if (buf.length < BASE_HEAD_LEN) throw new FormatError('base', at, `truncated: ${buf.length} of ${BASE_HEAD_LEN} bytes`);
  const b = asBuffer(buf);
  const type = b.readUInt8(0);
  if (type !== BASE_TYPE) throw new FormatError('base.type', at, `expected 0x03 (the base item that must follow the record at byte ${at - r.storedLength - 32}), got 0x${type.toString(16).padStart(2, '0')}`);
  if (b[1] !== 0 || b[2] !== 0 || b[3] !== 0) throw new FormatError('base.reserved', at + 1, 'reserved bytes must be 0');
  const count = b.readUInt32LE(4), want = blocksOf(r.length, h.blockSize);
  if (count !== want) throw new FormatError('base.count', at + 4, `${count}, the record before it covers ${want} blocks`);
  const offset = b.readBigUInt64LE(8);
  if (offset !== BigInt(r.offset)) throw new FormatError('base.offset', at + 8, `${offset} differs from the record's offset ${r.offset}`);
  return BASE_HEAD_LEN + count * 8;
}

/** A region item for [offset, offset+length) with the digest of its base block hashes. */
export function encodeRegion(g: RegionItem, h: PatchHeader, next: number): Buffer {
  const b = Buffer.alloc(REGION_LEN);
  b.writeUInt8(REGION_TYPE, 0);
  b.writeUInt32LE(g.length, 4);
  b.writeBigUInt64LE(BigInt(g.offset), 8);
  b.writeBigUInt64LE(g.baseDigest, 16);
  decodeRegion(b, 0, h, next);
  return b;
}

/** Decodes the region item at `at`; `next` is where the previous region ended (0 for the first). */
export function decodeRegion(buf: Uint8Array, at: number, h: PatchHeader, next: number): RegionItem {
  if (buf.length < REGION_LEN) throw new FormatError('region', at, `truncated: ${buf.length} of ${REGION_LEN} bytes`);
  const b = asBuffer(buf);
  const st = h.state!;
  if (b.readUInt8(0) !== REGION_TYPE) throw new FormatError('region.type', at, `expected 0x04, got 0x${b[0]!.toString(16).padStart(2, '0')}`);
  if (b[1] !== 0 || b[2] !== 0 || b[3] !== 0) throw new FormatError('region.reserved', at + 1, 'reserved bytes must be 0');
  if (b.readBigUInt64LE(24) !== 0n) throw new FormatError('region.reserved', at + 24, 'reserved bytes must be 0');
  const offset = b.readBigUInt64LE(8);
  if (offset !== BigInt(next)) throw new FormatError('region.offset', at + 8, `${offset}, expected ${next} (regions come in order, without gap or overlap)`);
  if (next >= st.compareSize) throw new FormatError('region.offset', at + 8, `${next} is at or past compare_size ${st.compareSize}`);
  const length = b.readUInt32LE(4), want = Math.min(st.regionSize, st.compareSize - next);
  if (length !== want) throw new FormatError('region.length', at + 4, `${length}, expected ${want} (region_size ${st.regionSize}, compare_size ${st.compareSize})`);
  return { offset: next, length, baseDigest: b.readBigUInt64LE(16) };
}

/** The digest of a run of block hashes (docs/patch-format.md): XXH64 of them with the run's seed. */
export function digestOf(hashes: Uint8Array, h: PatchHeader, hasher: Hasher): bigint {
  return hasher.h64(hashes, h.state!.seed);
}
