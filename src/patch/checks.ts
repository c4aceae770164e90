// Field rules of the patch format (docs/patch-format.md), shared by the encoders (which refuse to
// write a bad field) and the decoders (which refuse to read one). Each failure is a FormatError
// naming the field and its byte offset in the stream (`at` = offset of the structure).
import { FormatError } from '../errors.js';
import type { PatchHeader, RecordHeader, Trailer } from './format.js';
import { Encoding, MAX_BLOCK_SIZE, MAX_RECORD_LEN, MIN_BLOCK_SIZE } from './format.js';

/** A u64 LE field that must fit a JS number exactly (<= 2^53-1). */
export function safeU64(b: Buffer, off: number, at: number, field: string): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(field, at + off, `${v} exceeds 2^53-1`);
  return Number(v);
}

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function safeSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export function checkHeader(h: PatchHeader, at: number): void {
  const fail = (field: string, off: number, detail: string) => new FormatError(`header.${field}`, at + off, detail);
  const { blockSize: bs, targetSize, resultSize, maxRecordLen: mrl } = h;
  if (!isPow2(bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE) throw fail('block_size', 12, `${bs} is not a power of two between ${MIN_BLOCK_SIZE} and ${MAX_BLOCK_SIZE}`);
  if (!safeSize(targetSize)) throw fail('target_size', 16, `${targetSize} is not an integer in 0 .. 2^53-1`);
  if (!safeSize(resultSize)) throw fail('result_size', 24, `${resultSize} is not an integer in 0 .. 2^53-1`);
  if (resultSize < targetSize) throw fail('result_size', 24, `${resultSize} is smaller than target_size ${targetSize}`);
  if (!Number.isInteger(mrl) || mrl < bs || mrl > MAX_RECORD_LEN || mrl % bs !== 0) {
    throw fail('max_record_len', 32, `${mrl} is not a multiple of block_size ${bs} between ${bs} and ${MAX_RECORD_LEN}`);
  }
  if (!Buffer.isBuffer(h.sourceFingerprint) || h.sourceFingerprint.length !== 16) {
    throw fail('source_fingerprint', 40, 'must be 16 bytes');
  }
  if (h.state) checkState(h, at);
}

/** Version 2 header fields. */
function checkState(h: PatchHeader, at: number): void {
  const fail = (field: string, off: number, detail: string) => new FormatError(`header.${field}`, at + off, detail);
  const { regionSize: rs, compareSize, seed } = h.state!;
  if (!Number.isInteger(rs) || rs < h.maxRecordLen || rs > MAX_RECORD_LEN || rs % h.blockSize !== 0) {
    throw fail('region_size', 36, `${rs} is not a multiple of block_size ${h.blockSize} between max_record_len ${h.maxRecordLen} and ${MAX_RECORD_LEN}`);
  }
  if (typeof seed !== 'bigint' || seed < 0n || seed >= 2n ** 64n) throw fail('seed', 56, `${seed} is not a u64`);
  if (!safeSize(compareSize)) throw fail('compare_size', 64, `${compareSize} is not an integer in 0 .. 2^53-1`);
  if (compareSize > h.resultSize) throw fail('compare_size', 64, `${compareSize} exceeds result_size ${h.resultSize}`);
  if (h.resultSize > h.targetSize && compareSize < h.targetSize) throw fail('compare_size', 64, `${compareSize} is below target_size ${h.targetSize} of a growing patch`);
}

export function checkRecordHeader(r: RecordHeader, at: number, h: PatchHeader): void {
  const fail = (field: string, off: number, detail: string) => new FormatError(`record.${field}`, at + off, detail);
  const { length, offset, storedLength: stored } = r;
  if (length === 0) throw fail('length', 4, 'must be > 0');
  if (length > h.maxRecordLen) throw fail('length', 4, `${length} exceeds max_record_len ${h.maxRecordLen}`);
  if (offset % h.blockSize !== 0) throw fail('offset', 8, `${offset} is not a multiple of block_size ${h.blockSize}`);
  if (offset + length > h.resultSize) throw fail('offset', 8, `record ${offset}+${length} ends past result_size ${h.resultSize}`);
  if (h.state && offset + length > h.state.compareSize) throw fail('offset', 8, `record ${offset}+${length} ends past compare_size ${h.state.compareSize}`);
  if (h.state && Math.floor(offset / h.state.regionSize) !== Math.floor((offset + length - 1) / h.state.regionSize)) {
    throw fail('offset', 8, `record ${offset}+${length} crosses a region boundary (region_size ${h.state.regionSize})`);
  }
  if (r.encoding === Encoding.RAW && stored !== length) throw fail('stored_len', 16, `raw record: ${stored} differs from length ${length}`);
  if (r.encoding === Encoding.LZ4 && (stored === 0 || stored >= length)) throw fail('stored_len', 16, `lz4 record: ${stored} must be > 0 and < length ${length}`);
  if (r.encoding === Encoding.ZERO && stored !== 0) throw fail('stored_len', 16, `zero record: ${stored} must be 0`);
  if (r.encoding === Encoding.ZERO && r.checksum !== 0n) throw fail('checksum', 24, 'zero record: must be 0');
}

export function checkTrailer(t: Trailer, at: number): void {
  const fields: Array<[number | undefined, string, number]> = [[t.recordCount, 'record_count', 8], [t.dataBytes, 'data_bytes', 16], [t.storedBytes, 'stored_bytes', 24]];
  if (t.state) fields.push([t.state.regionCount, 'region_count', 32]);
  for (const [v, name, off] of fields) {
    if (!safeSize(v as number)) throw new FormatError(`trailer.${name}`, at + off, `${v} is not an integer in 0 .. 2^53-1`);
  }
  for (const [v, name, off] of [[t.state?.baseFingerprint, 'base_fingerprint', 40], [t.state?.resultFingerprint, 'result_fingerprint', 48]] as const) {
    if (t.state && (typeof v !== 'bigint' || v < 0n || v >= 2n ** 64n)) throw new FormatError(`trailer.${name}`, at + off, `${v} is not a u64`);
  }
}
