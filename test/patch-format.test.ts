// The patch codec (src/patch/format.ts): one table row per field rule, round trips, makeRecord's
// choice of encoding, and fixed byte vectors (header checksum cross-checked with `xxhsum -H1`).
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { ExitCode, FormatError } from '../src/errors.js';
import { loadHasher } from '../src/hash.js';
import {
  Encoding, HEADER_LEN, PATCH_MAGIC, decodeHeader, decodePayload, decodeRecordHeader, decodeTrailer,
  encodeHeader, encodeRecordHeader, encodeTrailer, isAllZero, makeRecord, type PatchHeader, type RecordHeader,
} from '../src/patch/format.js';

const hasher = await loadHasher();
const MiB = 1024 * 1024;
const HDR: PatchHeader = { blockSize: 4096, targetSize: MiB, resultSize: MiB + 100, maxRecordLen: 65536, sourceFingerprint: Buffer.alloc(16, 1) };

function expectFormat(t: ExecutionContext, fn: () => unknown, field: string, offset?: number): void {
  const err = t.throws(fn, { instanceOf: FormatError }) as FormatError;
  t.is(err.field, field, err.message);
  t.is(err.code, ExitCode.PATCH_INVALID);
  t.true(err.message.startsWith(`invalid ${field} at byte `), err.message);
  if (offset !== undefined) t.is(err.offset, offset, err.message);
}

/** A valid header's bytes, changed by `edit`, with the checksum recomputed unless told not to. */
function headerWith(edit: (b: Buffer) => void, resum = true): Buffer {
  const b = encodeHeader(HDR, hasher);
  edit(b);
  if (resum) b.writeBigUInt64LE(hasher.h64(b.subarray(0, 56), 0n), 56);
  return b;
}

const badHeader = test.macro({
  exec(t, edit: (b: Buffer) => void, field: string, offset: number, resum: boolean) {
    expectFormat(t, () => decodeHeader(headerWith(edit, resum), hasher), field, offset);
  },
  title: (name = '', _e, field) => `decodeHeader rejects ${name} (${field})`,
});

test('bad magic', badHeader, (b) => b.write('BLKDPTCX', 0, 'ascii'), 'header.magic', 0, false);
test('version 3', badHeader, (b) => b.writeUInt16LE(3, 8), 'header.version', 8, true);
test('version 0', badHeader, (b) => b.writeUInt16LE(0, 8), 'header.version', 8, true);
test('a flipped bit', badHeader, (b) => { b[20]! ^= 0x10; }, 'header.header_checksum', 56, false);
test('a flipped checksum bit', badHeader, (b) => { b[60]! ^= 1; }, 'header.header_checksum', 56, false);
test('flags set', badHeader, (b) => b.writeUInt16LE(1, 10), 'header.flags', 10, true);
test('reserved set', badHeader, (b) => b.writeUInt32LE(1, 36), 'header.reserved', 36, true);
test('block_size 0', badHeader, (b) => b.writeUInt32LE(0, 12), 'header.block_size', 12, true);
test('block_size 256', badHeader, (b) => b.writeUInt32LE(256, 12), 'header.block_size', 12, true);
test('block_size 1000', badHeader, (b) => b.writeUInt32LE(1000, 12), 'header.block_size', 12, true);
test('block_size 128 MiB', badHeader, (b) => b.writeUInt32LE(128 * MiB, 12), 'header.block_size', 12, true);
test('target_size 2^53', badHeader, (b) => b.writeBigUInt64LE(2n ** 53n, 16), 'header.target_size', 16, true);
test('result_size 2^63', badHeader, (b) => b.writeBigUInt64LE(2n ** 63n, 24), 'header.result_size', 24, true);
test('result_size < target_size', badHeader, (b) => b.writeBigUInt64LE(BigInt(MiB - 1), 24), 'header.result_size', 24, true);
test('max_record_len 0', badHeader, (b) => b.writeUInt32LE(0, 32), 'header.max_record_len', 32, true);
test('max_record_len < block_size', badHeader, (b) => b.writeUInt32LE(2048, 32), 'header.max_record_len', 32, true);
test('max_record_len not a multiple', badHeader, (b) => b.writeUInt32LE(4096 * 3 + 512, 32), 'header.max_record_len', 32, true);
test('max_record_len > 16 MiB', badHeader, (b) => b.writeUInt32LE(32 * MiB, 32), 'header.max_record_len', 32, true);
test('block_size 32 MiB (above max_record_len)', badHeader, (b) => { b.writeUInt32LE(32 * MiB, 12); b.writeUInt32LE(32 * MiB, 32); }, 'header.max_record_len', 32, true);

test('decodeHeader rejects a truncated header (header)', (t) => {
  expectFormat(t, () => decodeHeader(encodeHeader(HDR, hasher).subarray(0, HEADER_LEN - 1), hasher), 'header', 0);
});

const badEncode = test.macro({
  exec(t, change: Partial<PatchHeader>, field: string) {
    expectFormat(t, () => encodeHeader({ ...HDR, ...change }, hasher), field);
  },
  title: (name = '', _c, field) => `encodeHeader refuses ${name} (${field})`,
});
test('a 15-byte fingerprint', badEncode, { sourceFingerprint: Buffer.alloc(15) }, 'header.source_fingerprint');
test('a fractional size', badEncode, { targetSize: 1.5 }, 'header.target_size');
test('a negative size', badEncode, { targetSize: -1, resultSize: 0 }, 'header.target_size');
test('result_size 2^53', badEncode, { resultSize: 2 ** 53 }, 'header.result_size');
test('block_size 3000', badEncode, { blockSize: 3000 }, 'header.block_size');

test('header round trip, and a fixed vector (checksum as xxhsum -H1 computes it)', (t) => {
  const h: PatchHeader = { blockSize: 4096, targetSize: MiB, resultSize: MiB, maxRecordLen: 65536, sourceFingerprint: Buffer.alloc(16, 1) };
  const b = encodeHeader(h, hasher);
  t.is(b.toString('hex'), '424c4b445054434801000000001000000000100000000000000010000000000000000100000000000101010101010101' +
    '0101010101010101b93913605c896877');
  t.true(b.subarray(0, 8).equals(PATCH_MAGIC));
  t.deepEqual(decodeHeader(b, hasher), h);
  const big = { ...HDR, targetSize: 2 ** 53 - 2, resultSize: 2 ** 53 - 1, blockSize: 512, maxRecordLen: 16 * MiB };
  t.deepEqual(decodeHeader(encodeHeader(big, hasher), hasher), big);
});

// Record headers, decoded at stream offset 1000 against HDR (block 4096, result 1 MiB + 100, max 64 KiB).
const AT = 1000;
const REC: RecordHeader = { encoding: Encoding.RAW, length: 8192, offset: 4096, storedLength: 8192, checksum: 0x1234n };

const badRecord = test.macro({
  exec(t, edit: (b: Buffer) => void, field: string, fieldOffset: number) {
    const b = encodeRecordHeader(REC);
    edit(b);
    expectFormat(t, () => decodeRecordHeader(b, AT, HDR), field, AT + fieldOffset);
  },
  title: (name = '', _e, field) => `decodeRecordHeader rejects ${name} (${field})`,
});
const setRec = (r: Partial<RecordHeader>) => (b: Buffer) => encodeRecordHeader({ ...REC, ...r }).copy(b);

test('type 0x03', badRecord, (b) => { b[0] = 3; }, 'record.type', 0);
test('type 0x00', badRecord, (b) => { b[0] = 0; }, 'record.type', 0);
test('encoding 3', badRecord, (b) => { b[1] = 3; }, 'record.encoding', 1);
test('reserved byte 2', badRecord, (b) => { b[2] = 1; }, 'record.reserved', 2);
test('reserved byte 23', badRecord, (b) => { b[23] = 1; }, 'record.reserved', 20);
test('length 0', badRecord, setRec({ length: 0, storedLength: 0 }), 'record.length', 4);
test('length > max_record_len', badRecord, setRec({ length: 69632, storedLength: 69632 }), 'record.length', 4);
test('offset not a multiple', badRecord, setRec({ offset: 4097 }), 'record.offset', 8);
test('offset past result_size', badRecord, setRec({ offset: MiB + 4096 }), 'record.offset', 8);
test('record ending past result_size', badRecord, setRec({ offset: MiB, length: 4096, storedLength: 4096 }), 'record.offset', 8);
test('offset 2^53', badRecord, (b) => b.writeBigUInt64LE(2n ** 53n, 8), 'record.offset', 8);
test('raw stored_len != length', badRecord, setRec({ storedLength: 8191 }), 'record.stored_len', 16);
test('lz4 stored_len 0', badRecord, setRec({ encoding: Encoding.LZ4, storedLength: 0 }), 'record.stored_len', 16);
test('lz4 stored_len == length', badRecord, setRec({ encoding: Encoding.LZ4, storedLength: 8192 }), 'record.stored_len', 16);
test('zero stored_len 4', badRecord, setRec({ encoding: Encoding.ZERO, storedLength: 4, checksum: 0n }), 'record.stored_len', 16);
test('zero with a checksum', badRecord, setRec({ encoding: Encoding.ZERO, storedLength: 0, checksum: 1n }), 'record.checksum', 24);

test('decodeRecordHeader rejects a truncated record header (record)', (t) => {
  expectFormat(t, () => decodeRecordHeader(encodeRecordHeader(REC).subarray(0, 31), AT, HDR), 'record', AT);
});

test('record header round trip, including a short last record ending at result_size', (t) => {
  for (const r of [REC, { ...REC, offset: MiB, length: 100, storedLength: 100 }, { ...REC, encoding: Encoding.LZ4, storedLength: 10 },
    { encoding: Encoding.ZERO, length: 65536, offset: 0, storedLength: 0, checksum: 0n }] as RecordHeader[]) {
    t.deepEqual(decodeRecordHeader(encodeRecordHeader(r), AT, HDR), r);
  }
});

const compressible = Buffer.alloc(8192, 'blkdelta ');
const random = randomBytes(8192);

const picks = test.macro({
  exec(t, plain: Buffer, compress: boolean, encoding: 0 | 1 | 2) {
    const r = makeRecord(8192, plain, compress, hasher);
    t.is(r.encoding, encoding);
    const h = decodeRecordHeader(r.header, AT, HDR);
    t.is(h.encoding, encoding);
    t.is(h.storedLength, r.payload.length);
    const back = decodePayload(h, r.payload, AT, hasher);
    if (encoding === Encoding.ZERO) t.is(back, null);
    else t.true(back!.equals(plain));
  },
  title: (name = '') => `makeRecord picks ${name}`,
});
test('zero for all-zero data, even with compression', picks, Buffer.alloc(8192), true, Encoding.ZERO);
test('lz4 for compressible data', picks, compressible, true, Encoding.LZ4);
test('raw for compressible data without compression', picks, compressible, false, Encoding.RAW);
test('raw for random data (lz4 would not shrink it)', picks, random, true, Encoding.RAW);
test('raw for data with a single non-zero last byte', picks, Buffer.concat([Buffer.alloc(8191), Buffer.from([1])]), false, Encoding.RAW);

test('record fixed vector: raw record header for 4096 bytes of 0xab at 4096', (t) => {
  const r = makeRecord(4096, Buffer.alloc(4096, 0xab), false, hasher);
  t.is(r.header.subarray(0, 24).toString('hex'), '010000000010000000100000000000000010000000000000');
  t.is(r.header.readBigUInt64LE(24), hasher.h64(Buffer.alloc(4096, 0xab), 4096n));
  t.not(r.header.readBigUInt64LE(24), hasher.h64(Buffer.alloc(4096, 0xab), 0n), 'the seed is the offset');
});

function recordOf(plain: Buffer, compress: boolean) {
  const r = makeRecord(8192, plain, compress, hasher);
  return { h: decodeRecordHeader(r.header, AT, HDR), payload: Buffer.from(r.payload) };
}

const badPayload = test.macro({
  exec(t, make: () => { h: RecordHeader; payload: Buffer }, field: string) {
    const { h, payload } = make();
    expectFormat(t, () => decodePayload(h, payload, AT, hasher), field);
  },
  title: (name = '', _m, field) => `decodePayload rejects ${name} (${field})`,
});
test('a raw payload one byte short', badPayload, () => { const r = recordOf(random, false); return { ...r, payload: r.payload.subarray(1) }; }, 'record.payload');
test('a flipped bit in raw data', badPayload, () => { const r = recordOf(random, false); r.payload[100]! ^= 4; return r; }, 'record.checksum');
test('a flipped bit in lz4 data', badPayload, () => { const r = recordOf(compressible, true); r.payload[r.payload.length - 3]! ^= 4; return r; }, 'record.checksum');
test('an lz4 size prefix that is not the length', badPayload, () => { const r = recordOf(compressible, true); r.payload.writeUInt32LE(0x7fffffff, 0); return r; }, 'record.payload');
test('lz4 data that ends early', badPayload, () => { const r = recordOf(compressible, true); const p = r.payload.subarray(0, r.payload.length - 8); return { h: { ...r.h, storedLength: p.length }, payload: p }; }, 'record.payload');
test('an lz4 payload of 4 bytes', badPayload, () => { const r = recordOf(compressible, true); return { h: { ...r.h, storedLength: 4 }, payload: r.payload.subarray(0, 4) }; }, 'record.payload');
test('a zero record with payload bytes', badPayload, () => { const r = recordOf(Buffer.alloc(8192), true); return { ...r, payload: Buffer.alloc(1) }; }, 'record.payload');
test('raw data moved to another offset', badPayload, () => { const r = recordOf(random, false); return { ...r, h: { ...r.h, offset: 0 } }; }, 'record.checksum');

// Trailers.
function trailerBytes(): Buffer {
  return encodeTrailer({ recordCount: 3, dataBytes: 12288, storedBytes: 9000 }, hasher.create64(0n));
}
const badTrailer = test.macro({
  exec(t, edit: (b: Buffer) => void, field: string, fieldOffset: number) {
    const b = trailerBytes();
    edit(b);
    expectFormat(t, () => decodeTrailer(b, AT), field, AT + fieldOffset);
  },
  title: (name = '', _e, field) => `decodeTrailer rejects ${name} (${field})`,
});
test('type 0x01', badTrailer, (b) => { b[0] = 1; }, 'trailer.type', 0);
test('reserved byte 1', badTrailer, (b) => { b[1] = 1; }, 'trailer.reserved', 1);
test('reserved byte 7', badTrailer, (b) => { b[7] = 0x80; }, 'trailer.reserved', 1);
test('record_count 2^64-1', badTrailer, (b) => b.writeBigUInt64LE(2n ** 64n - 1n, 8), 'trailer.record_count', 8);
test('data_bytes 2^53', badTrailer, (b) => b.writeBigUInt64LE(2n ** 53n, 16), 'trailer.data_bytes', 16);
test('stored_bytes 2^60', badTrailer, (b) => b.writeBigUInt64LE(2n ** 60n, 24), 'trailer.stored_bytes', 24);
test('all zeros', badTrailer, (b) => { b.fill(0); }, 'trailer.type', 0);

test('decodeTrailer rejects 39 bytes (trailer)', (t) => {
  expectFormat(t, () => decodeTrailer(trailerBytes().subarray(0, 39), AT), 'trailer', AT);
});

test('encodeTrailer refuses a count that is not a safe integer', (t) => {
  expectFormat(t, () => encodeTrailer({ recordCount: -1, dataBytes: 0, storedBytes: 0 }, hasher.create64(0n)), 'trailer.record_count', 8);
});

test('trailer round trip: stream_checksum is xxh64 of everything before it (fixed vector)', (t) => {
  const header = encodeHeader({ ...HDR, resultSize: MiB }, hasher);
  const stream = hasher.create64(0n).update(header);
  const tr = encodeTrailer({ recordCount: 0, dataBytes: 0, storedBytes: 0 }, stream);
  t.is(tr.subarray(0, 32).toString('hex'), '02' + '00'.repeat(31));
  const want = hasher.h64(Buffer.concat([header, tr.subarray(0, 32)]), 0n);
  t.deepEqual(decodeTrailer(tr, 0), { recordCount: 0, dataBytes: 0, storedBytes: 0, streamChecksum: want });
});

const zeroCase = test.macro({
  exec(t, buf: Uint8Array, expected: boolean) {
    t.is(isAllZero(buf), expected);
  },
  title: (name = '') => `isAllZero: ${name}`,
});
const tail1 = Buffer.alloc(65537); tail1[65536] = 1;
test('empty', zeroCase, Buffer.alloc(0), true);
test('one zero byte', zeroCase, Buffer.alloc(1), true);
test('200 KiB of zeros', zeroCase, Buffer.alloc(200 * 1024), true);
test('a 1 just past the first 64 KiB slice', zeroCase, tail1, false);
test('a 1 at the first byte', zeroCase, Buffer.from([1, 0, 0]), false);
test('an unaligned Uint8Array view of zeros', zeroCase, new Uint8Array(new ArrayBuffer(70000), 3, 69000), true);
