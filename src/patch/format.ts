// Patch stream format v2, and v1 for reading (docs/patch-format.md): a pure codec, bytes in and
// bytes out, no I/O. The record encoding travels on the wire in a sync too (always v1 rules there).
//   v1 stream = header(64) record* trailer(40)
//   v2 stream = header(80) (record base | region)* trailer(64)        (base, region: state.ts)
//   record    = record header(32) payload(stored_len)      payload: raw | lz4 | none (zero)
// Every decoder is strict: each field is checked against the header before anything is allocated,
// and a bad field throws FormatError naming the field and its byte offset in the stream.
// Memory: a decoded lz4 payload is at most max_record_len (<= 16 MiB); nothing else is allocated.
import { createRequire } from 'node:module';
import { FormatError } from '../errors.js';
import type { Hasher, StreamHasher } from '../hash.js';
import { checkHeader, checkRecordHeader, checkTrailer, safeU64 } from './checks.js';

export const PATCH_MAGIC: Buffer = Buffer.from('BLKDPTCH', 'ascii');
/** The version writers write; HEADER_LEN and TRAILER_LEN are version 1's (the v2 ones below). */
export const PATCH_VERSION = 2, HEADER_LEN = 64, RECORD_HEADER_LEN = 32, TRAILER_LEN = 40;
export const HEADER_LEN_V2 = 80, TRAILER_LEN_V2 = 64;
export const MAX_RECORD_LEN = 16 * 1024 * 1024;
export const MIN_BLOCK_SIZE = 512, MAX_BLOCK_SIZE = 64 * 1024 * 1024;
export const Encoding = { RAW: 0, LZ4: 1, ZERO: 2 } as const;

// lz4-napi (a native addon, ~0.05 s of CPU to load) is loaded on the first record that is
// compressed or decompressed: most processes (a no-change sync's server) never need it.
type Lz4 = typeof import('lz4-napi');
let lz4: Lz4 | undefined;
const lz4Sync = (): Lz4 => (lz4 ??= createRequire(import.meta.url)('lz4-napi') as Lz4);

export const RECORD_TYPE = 0x01, TRAILER_TYPE = 0x02, BASE_TYPE = 0x03, REGION_TYPE = 0x04;
/** lz4 payloads start with the plain length as u32 LE (lz4-napi's size prefix), then an LZ4 block. */
export const LZ4_PREFIX_LEN = 4;

export interface PatchHeader { blockSize: number; targetSize: number; resultSize: number; maxRecordLen: number; sourceFingerprint: Buffer; state?: PatchState }
/** Version 2: how the target's state before the patch is recorded (absent: a version 1 patch, or the wire). */
export interface PatchState { seed: bigint; regionSize: number; compareSize: number }
export interface RecordHeader { encoding: 0 | 1 | 2; length: number; offset: number; storedLength: number; checksum: bigint }
export interface Trailer { recordCount: number; dataBytes: number; storedBytes: number; streamChecksum: bigint; state?: TrailerState }
/** Version 2 trailer fields. */
export interface TrailerState { regionCount: number; baseFingerprint: bigint; resultFingerprint: bigint }

export const headerLen = (h: PatchHeader): number => (h.state ? HEADER_LEN_V2 : HEADER_LEN);
export const trailerLen = (h: PatchHeader): number => (h.state ? TRAILER_LEN_V2 : TRAILER_LEN);

/** Encodes and self-checks a header (decodes the bytes before returning them). */
export function encodeHeader(h: PatchHeader, hasher: Hasher): Buffer {
  checkHeader(h, 0);
  const len = headerLen(h), sumAt = len - 8;
  const b = Buffer.alloc(len);
  PATCH_MAGIC.copy(b, 0);
  b.writeUInt16LE(h.state ? 2 : 1, 8);
  b.writeUInt32LE(h.blockSize, 12);
  b.writeBigUInt64LE(BigInt(h.targetSize), 16);
  b.writeBigUInt64LE(BigInt(h.resultSize), 24);
  b.writeUInt32LE(h.maxRecordLen, 32);
  h.sourceFingerprint.copy(b, 40);
  if (h.state) {
    b.writeUInt32LE(h.state.regionSize, 36);
    b.writeBigUInt64LE(h.state.seed, 56);
    b.writeBigUInt64LE(BigInt(h.state.compareSize), 64);
  }
  b.writeBigUInt64LE(hasher.h64(b.subarray(0, sumAt), 0n), sumAt);
  decodeHeader(b, hasher);
  return b;
}

/**
 * The header's length, from its first 10 bytes: checks the magic, then the version (a newer file
 * says so rather than looking corrupt).
 */
export function headerLenOf(buf: Uint8Array): number {
  if (buf.length < 10) throw new FormatError('header', 0, `truncated: ${buf.length} of ${HEADER_LEN} bytes`);
  const b = asBuffer(buf);
  if (!b.subarray(0, 8).equals(PATCH_MAGIC)) throw new FormatError('header.magic', 0, `not a blkdelta patch (expected "BLKDPTCH", got ${hex(b.subarray(0, 8))})`);
  const version = b.readUInt16LE(8);
  if (version !== 1 && version !== 2) throw new FormatError('header.version', 8, `unsupported version ${version} (this program reads versions 1 and 2)`);
  return version === 1 ? HEADER_LEN : HEADER_LEN_V2;
}

/** Decodes a header: magic, then version, then checksum, then each field. */
export function decodeHeader(buf: Uint8Array, hasher: Hasher): PatchHeader {
  if (buf.length < HEADER_LEN) throw new FormatError('header', 0, `truncated: ${buf.length} of ${HEADER_LEN} bytes`);
  const len = headerLenOf(buf), sumAt = len - 8, v2 = len === HEADER_LEN_V2;
  if (buf.length < len) throw new FormatError('header', 0, `truncated: ${buf.length} of ${len} bytes`);
  const b = asBuffer(buf).subarray(0, len);
  const sum = b.readBigUInt64LE(sumAt), want = hasher.h64(b.subarray(0, sumAt), 0n);
  if (sum !== want) throw new FormatError('header.header_checksum', sumAt, `mismatch (stored ${hex64(sum)}, computed ${hex64(want)}): header corrupt`);
  if (b.readUInt16LE(10) !== 0) throw new FormatError('header.flags', 10, `reserved, must be 0 (got ${b.readUInt16LE(10)})`);
  if (!v2 && b.readUInt32LE(36) !== 0) throw new FormatError('header.reserved', 36, 'reserved bytes must be 0');
  const h: PatchHeader = {
    blockSize: b.readUInt32LE(12),
    targetSize: safeU64(b, 16, 0, 'header.target_size'),
    resultSize: safeU64(b, 24, 0, 'header.result_size'),
    maxRecordLen: b.readUInt32LE(32),
    sourceFingerprint: Buffer.from(b.subarray(40, 56)),
  };
  if (v2) h.state = { regionSize: b.readUInt32LE(36), seed: b.readBigUInt64LE(56), compareSize: safeU64(b, 64, 0, 'header.compare_size') };
  checkHeader(h, 0);
  return h;
}

export function encodeRecordHeader(r: RecordHeader): Buffer {
  const b = Buffer.alloc(RECORD_HEADER_LEN);
  b.writeUInt8(RECORD_TYPE, 0);
  b.writeUInt8(r.encoding, 1);
  b.writeUInt32LE(r.length, 4);
  b.writeBigUInt64LE(BigInt(r.offset), 8);
  b.writeUInt32LE(r.storedLength, 16);
  b.writeBigUInt64LE(r.checksum, 24);
  return b;
}

/** Decodes the record header at buf[0..32]; `at` is its offset in the stream (for messages). */
export function decodeRecordHeader(buf: Uint8Array, at: number, h: PatchHeader): RecordHeader {
  if (buf.length < RECORD_HEADER_LEN) throw new FormatError('record', at, `truncated record header: ${buf.length} of ${RECORD_HEADER_LEN} bytes`);
  const b = asBuffer(buf);
  const type = b.readUInt8(0);
  if (type !== RECORD_TYPE) throw new FormatError('record.type', at, `unknown type 0x${type.toString(16).padStart(2, '0')} (0x01 record, 0x02 trailer)`);
  const encoding = b.readUInt8(1);
  if (encoding > Encoding.ZERO) throw new FormatError('record.encoding', at + 1, `unknown encoding ${encoding} (0 raw, 1 lz4, 2 zero)`);
  if (b.readUInt16LE(2) !== 0) throw new FormatError('record.reserved', at + 2, 'reserved bytes must be 0');
  if (b.readUInt32LE(20) !== 0) throw new FormatError('record.reserved', at + 20, 'reserved bytes must be 0');
  const r: RecordHeader = {
    encoding: encoding as 0 | 1 | 2,
    length: b.readUInt32LE(4),
    offset: safeU64(b, 8, at, 'record.offset'),
    storedLength: b.readUInt32LE(16),
    checksum: b.readBigUInt64LE(24),
  };
  checkRecordHeader(r, at, h);
  return r;
}

/** One record for `plain` at `offset`: all-zero -> zero; lz4 when asked and smaller; else raw. */
export function makeRecord(offset: number, plain: Buffer, compress: boolean, hasher: Pick<Hasher, 'h64'>): { header: Buffer; payload: Buffer; encoding: 0 | 1 | 2 } {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`makeRecord: bad offset ${offset}`);
  if (plain.length === 0 || plain.length > MAX_RECORD_LEN) throw new RangeError(`makeRecord: bad length ${plain.length}`);
  const length = plain.length;
  if (isAllZero(plain)) {
    const header = encodeRecordHeader({ encoding: Encoding.ZERO, length, offset, storedLength: 0, checksum: 0n });
    return { header, payload: Buffer.alloc(0), encoding: Encoding.ZERO };
  }
  const checksum = hasher.h64(plain, BigInt(offset));
  if (compress) {
    const packed = lz4Sync().compressSync(plain);
    if (packed.length < length) {
      const header = encodeRecordHeader({ encoding: Encoding.LZ4, length, offset, storedLength: packed.length, checksum });
      return { header, payload: packed, encoding: Encoding.LZ4 };
    }
  }
  const header = encodeRecordHeader({ encoding: Encoding.RAW, length, offset, storedLength: length, checksum });
  return { header, payload: plain, encoding: Encoding.RAW };
}

/**
 * The plain data of a record (null for a zero record), its length and checksum checked. `at` is
 * the record's stream offset; errors name the payload's offset (at + 32). A raw result shares
 * memory with `payload`. lz4: the declared size prefix must equal r.length before decompressing.
 */
export function decodePayload(r: RecordHeader, payload: Uint8Array, at: number, hasher: Hasher): Buffer | null {
  const pAt = at + RECORD_HEADER_LEN;
  if (payload.length !== r.storedLength) throw new FormatError('record.payload', pAt, `${payload.length} bytes, stored_len says ${r.storedLength}`);
  if (r.encoding === Encoding.ZERO) return null;
  const plain = r.encoding === Encoding.RAW ? asBuffer(payload) : unpack(r, asBuffer(payload), pAt);
  checkRecordSum(r, hasher.h64(plain, BigInt(r.offset)), at);
  return plain;
}

/** Throws record.checksum unless sum (xxh64 of the plain data, seeded with its offset) is the record's. */
export function checkRecordSum(r: RecordHeader, sum: bigint, at: number): void {
  if (sum !== r.checksum) throw new FormatError('record.checksum', at + 24, `data at target offset ${r.offset} does not match (stored ${hex64(r.checksum)}, computed ${hex64(sum)})`);
}

function unpack(r: RecordHeader, payload: Buffer, pAt: number): Buffer {
  if (payload.length <= LZ4_PREFIX_LEN) throw new FormatError('record.payload', pAt, `lz4 payload of ${payload.length} bytes is too short`);
  const declared = payload.readUInt32LE(0);
  if (declared !== r.length) throw new FormatError('record.payload', pAt, `lz4 size prefix ${declared} differs from record length ${r.length}`);
  let plain: Buffer;
  try {
    plain = lz4Sync().uncompressSync(payload);
  } catch (err) {
    throw new FormatError('record.payload', pAt, `lz4 data corrupt: ${(err as Error).message}`);
  }
  if (plain.length !== r.length) throw new FormatError('record.payload', pAt, `lz4 data decompresses to ${plain.length} bytes, expected ${r.length}`);
  return plain;
}

/** Encodes the trailer: feeds bytes 0..31 to `stream` (the running hash) and stores its digest. */
export function encodeTrailer(t: Omit<Trailer, 'streamChecksum'>, stream: StreamHasher): Buffer {
  checkTrailer({ ...t, streamChecksum: 0n }, 0);
  const len = t.state ? TRAILER_LEN_V2 : TRAILER_LEN, sumAt = len - 8;
  const b = Buffer.alloc(len);
  b.writeUInt8(TRAILER_TYPE, 0);
  b.writeBigUInt64LE(BigInt(t.recordCount), 8);
  b.writeBigUInt64LE(BigInt(t.dataBytes), 16);
  b.writeBigUInt64LE(BigInt(t.storedBytes), 24);
  if (t.state) {
    b.writeBigUInt64LE(BigInt(t.state.regionCount), 32);
    b.writeBigUInt64LE(t.state.baseFingerprint, 40);
    b.writeBigUInt64LE(t.state.resultFingerprint, 48);
  }
  const sum = stream.update(b.subarray(0, sumAt)).digest();
  b.writeBigUInt64LE(sum, sumAt);
  const back = decodeTrailer(b, 0, t.state ? 2 : 1);
  if (back.recordCount !== t.recordCount || back.dataBytes !== t.dataBytes || back.storedBytes !== t.storedBytes || back.streamChecksum !== sum ||
    back.state?.regionCount !== t.state?.regionCount || back.state?.baseFingerprint !== t.state?.baseFingerprint || back.state?.resultFingerprint !== t.state?.resultFingerprint) {
    throw new Error('encodeTrailer: self-check failed');
  }
  return b;
}

/** Decodes the trailer at buf[0..40] (v2: 0..64); the caller compares stream_checksum with its running hash. */
export function decodeTrailer(buf: Uint8Array, at: number, version: 1 | 2 = 1): Trailer {
  const len = version === 2 ? TRAILER_LEN_V2 : TRAILER_LEN;
  if (buf.length < len) throw new FormatError('trailer', at, `truncated: ${buf.length} of ${len} bytes`);
  const b = asBuffer(buf);
  const type = b.readUInt8(0);
  if (type !== TRAILER_TYPE) throw new FormatError('trailer.type', at, `expected 0x02, got 0x${type.toString(16).padStart(2, '0')}`);
  if (!isAllZero(b.subarray(1, 8))) throw new FormatError('trailer.reserved', at + 1, 'reserved bytes must be 0');
  const t: Trailer = {
    recordCount: safeU64(b, 8, at, 'trailer.record_count'),
    dataBytes: safeU64(b, 16, at, 'trailer.data_bytes'),
    storedBytes: safeU64(b, 24, at, 'trailer.stored_bytes'),
    streamChecksum: b.readBigUInt64LE(len - 8),
  };
  if (version === 2) t.state = { regionCount: safeU64(b, 32, at, 'trailer.region_count'), baseFingerprint: b.readBigUInt64LE(40), resultFingerprint: b.readBigUInt64LE(48) };
  return t;
}

const ZEROS = Buffer.alloc(64 * 1024);

/** True when every byte is 0: compares 64 KiB slices against a shared zero buffer. */
export function isAllZero(buf: Uint8Array): boolean {
  const b = asBuffer(buf);
  for (let off = 0; off < b.length; off += ZEROS.length) {
    const end = Math.min(off + ZEROS.length, b.length);
    if (!b.subarray(off, end).equals(ZEROS.subarray(0, end - off))) return false;
  }
  return true;
}

/** A Buffer view of the same memory (no copy). */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.length);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export function hex64(n: bigint): string {
  return n.toString(16).padStart(16, '0');
}
