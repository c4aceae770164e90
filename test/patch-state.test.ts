// The version 2 codec (src/patch/format.ts header and trailer, src/patch/state.ts base and region
// items): one table row per field rule, round trips, and a fixed header vector whose checksum was
// cross-checked with `head -c 72 | xxhsum -H1` (which prints 44195b910e394b12, the bytes reversed).
import test, { type ExecutionContext } from 'ava';
import { ExitCode, FormatError } from '../src/errors.js';
import { loadHasher } from '../src/hash.js';
import { HEADER_LEN_V2, TRAILER_LEN_V2, decodeHeader, decodeTrailer, encodeHeader, encodeTrailer, type PatchHeader, type RecordHeader } from '../src/patch/format.js';
import { decodeBaseHead, decodeRegion, encodeBase, encodeRegion } from '../src/patch/state.js';

const hasher = await loadHasher();
const MiB = 1024 * 1024;
const V2: PatchHeader = {
  blockSize: 4096, targetSize: 3 * MiB, resultSize: 3 * MiB, maxRecordLen: MiB, sourceFingerprint: Buffer.alloc(16, 1),
  state: { seed: 2n ** 64n - 1n, regionSize: MiB, compareSize: 3 * MiB - 100 },
};

function expectFormat(t: ExecutionContext, fn: () => unknown, field: string, offset?: number): void {
  const err = t.throws(fn, { instanceOf: FormatError }) as FormatError;
  t.is(err.field, field, err.message);
  t.is(err.code, ExitCode.PATCH_INVALID);
  if (offset !== undefined) t.is(err.offset, offset, err.message);
}

test('v2 header: fixed vector (80 bytes, checksum as xxhsum -H1 computes it) and round trips', (t) => {
  const h: PatchHeader = { blockSize: 4096, targetSize: MiB, resultSize: MiB, maxRecordLen: 65536, sourceFingerprint: Buffer.alloc(16, 1), state: { seed: 1n, regionSize: MiB, compareSize: MiB } };
  const b = encodeHeader(h, hasher);
  t.is(b.length, HEADER_LEN_V2);
  t.is(b.toString('hex'), '424c4b4450544348' + '0200' + '0000' + '00100000' + '0000100000000000' + '0000100000000000' + '00000100' + '00001000' +
    '01'.repeat(16) + '0100000000000000' + '0000100000000000' + '124b390e915b1944');
  t.deepEqual(decodeHeader(b, hasher), h);
  t.deepEqual(decodeHeader(encodeHeader(V2, hasher), hasher), V2);
  const { state: _, ...v1 } = V2;
  t.is(encodeHeader(v1, hasher).length, 64, 'no state: a version 1 header');
});

const badEncode = test.macro({
  exec(t, state: Partial<NonNullable<PatchHeader['state']>>, field: string, extra: Partial<PatchHeader> = {}) {
    expectFormat(t, () => encodeHeader({ ...V2, ...extra, state: { ...V2.state!, ...state } }, hasher), field);
  },
  title: (name = '', _s, field) => `encodeHeader v2 refuses ${name} (${field})`,
});
test('region_size 0', badEncode, { regionSize: 0 }, 'header.region_size');
test('region_size below max_record_len', badEncode, { regionSize: 65536 }, 'header.region_size');
test('region_size not a multiple of block_size', badEncode, { regionSize: MiB + 512 }, 'header.region_size');
test('region_size 32 MiB', badEncode, { regionSize: 32 * MiB }, 'header.region_size');
test('region_size fractional', badEncode, { regionSize: MiB + 0.5 }, 'header.region_size');
test('seed -1', badEncode, { seed: -1n }, 'header.seed');
test('seed 2^64', badEncode, { seed: 2n ** 64n }, 'header.seed');
test('seed not a bigint', badEncode, { seed: 5 as unknown as bigint }, 'header.seed');
test('compare_size -1', badEncode, { compareSize: -1 }, 'header.compare_size');
test('compare_size 1.5', badEncode, { compareSize: 1.5 }, 'header.compare_size');
test('compare_size past result_size', badEncode, { compareSize: 3 * MiB + 1 }, 'header.compare_size');
test('compare_size below target_size of a growing patch', badEncode, { compareSize: MiB }, 'header.compare_size', { targetSize: 2 * MiB, resultSize: 3 * MiB });

test('v2 header: a truncated one names its length (header)', (t) => {
  expectFormat(t, () => decodeHeader(encodeHeader(V2, hasher).subarray(0, 79), hasher), 'header', 0);
});
test('v2 header: a flipped bit in the new fields fails the checksum at byte 72', (t) => {
  for (const at of [37, 56, 63, 64, 71]) {
    const b = encodeHeader(V2, hasher);
    b[at]! ^= 0x10;
    expectFormat(t, () => decodeHeader(b, hasher), 'header.header_checksum', 72);
  }
});

// Records within V2: at most one region each, ending within compare_size.
const REC: RecordHeader = { encoding: 0, length: 8192, offset: MiB - 8192, storedLength: 8192, checksum: 1n };

test('v2 record rules: a record across a region boundary, or past compare_size (record.offset)', async (t) => {
  const { decodeRecordHeader, encodeRecordHeader } = await import('../src/patch/format.js');
  expectFormat(t, () => decodeRecordHeader(encodeRecordHeader({ ...REC, offset: MiB - 4096 }), 0, V2), 'record.offset', 8);
  expectFormat(t, () => decodeRecordHeader(encodeRecordHeader({ ...REC, offset: 3 * MiB - 4096, length: 4096, storedLength: 4096 }), 0, V2), 'record.offset', 8);
  t.deepEqual(decodeRecordHeader(encodeRecordHeader({ ...REC, offset: 3 * MiB - 4096, length: 3996, storedLength: 3996 }), 0, V2).length, 3996);
});

// Base items, decoded at stream offset 1000 after the record REC (2 blocks).
const AT = 1000;
const baseBytes = () => encodeBase(REC, Buffer.alloc(16, 0xab), V2);
const badBase = test.macro({
  exec(t, edit: (b: Buffer) => void, field: string, fieldOffset: number, rec: RecordHeader = REC) {
    const b = baseBytes();
    edit(b);
    expectFormat(t, () => decodeBaseHead(b, AT, rec, V2), field, AT + fieldOffset);
  },
  title: (name = '', _e, field) => `decodeBaseHead rejects ${name} (${field})`,
});
test('type 0x01', badBase, (b) => { b[0] = 1; }, 'base.type', 0);
test('type 0x04', badBase, (b) => { b[0] = 4; }, 'base.type', 0);
test('reserved byte 1', badBase, (b) => { b[1] = 1; }, 'base.reserved', 1);
test('reserved byte 3', badBase, (b) => { b[3] = 0x80; }, 'base.reserved', 1);
test('count 0', badBase, (b) => b.writeUInt32LE(0, 4), 'base.count', 4);
test('count 3 for a 2-block record', badBase, (b) => b.writeUInt32LE(3, 4), 'base.count', 4);
test('count 2^32-1', badBase, (b) => b.writeUInt32LE(2 ** 32 - 1, 4), 'base.count', 4);
test('offset of another record', badBase, (b) => b.writeBigUInt64LE(0n, 8), 'base.offset', 8);
test('offset 2^64-1', badBase, (b) => b.writeBigUInt64LE(2n ** 64n - 1n, 8), 'base.offset', 8);
test('a short last block counts as one (count 2 for 4097 bytes is right, 1 is not)', badBase, (b) => b.writeUInt32LE(1, 4), 'base.count', 4, { ...REC, length: 4097, storedLength: 4097 });

test('base item round trip; 15 bytes are a truncated head; encodeBase refuses a wrong hash count', (t) => {
  const b = baseBytes();
  t.is(decodeBaseHead(b, AT, REC, V2), 16 + 16);
  t.true(b.subarray(16).equals(Buffer.alloc(16, 0xab)));
  expectFormat(t, () => decodeBaseHead(b.subarray(0, 15), AT, REC, V2), 'base', AT);
  t.throws(() => encodeBase(REC, Buffer.alloc(8), V2), { instanceOf: RangeError });
});

// Region items: the second region of V2 (offset 1 MiB) and the short last one.
const region = (offset: number, length: number) => encodeRegion({ offset, length, baseDigest: 0x1234n }, V2, offset);
const badRegion = test.macro({
  exec(t, edit: (b: Buffer) => void, field: string, fieldOffset: number, next: number = MiB) {
    const b = region(MiB, MiB);
    edit(b);
    expectFormat(t, () => decodeRegion(b, AT, V2, next), field, AT + fieldOffset);
  },
  title: (name = '', _e, field) => `decodeRegion rejects ${name} (${field})`,
});
test('type 0x03', badRegion, (b) => { b[0] = 3; }, 'region.type', 0);
test('reserved byte 2', badRegion, (b) => { b[2] = 1; }, 'region.reserved', 1);
test('reserved byte 24', badRegion, (b) => { b[24] = 1; }, 'region.reserved', 24);
test('reserved byte 31', badRegion, (b) => { b[31] = 0x80; }, 'region.reserved', 24);
test('a gap (offset past the previous end)', badRegion, (b) => b.writeBigUInt64LE(BigInt(2 * MiB), 8), 'region.offset', 8);
test('an overlap (offset before the previous end)', badRegion, (b) => b.writeBigUInt64LE(0n, 8), 'region.offset', 8);
test('offset 2^64-1', badRegion, (b) => b.writeBigUInt64LE(2n ** 64n - 1n, 8), 'region.offset', 8);
test('length 0', badRegion, (b) => b.writeUInt32LE(0, 4), 'region.length', 4);
test('length one block short', badRegion, (b) => b.writeUInt32LE(MiB - 4096, 4), 'region.length', 4);
test('length one byte long', badRegion, (b) => b.writeUInt32LE(MiB + 1, 4), 'region.length', 4);
test('a region past compare_size', badRegion, (b) => b.writeBigUInt64LE(BigInt(3 * MiB - 100), 8), 'region.offset', 8, 3 * MiB - 100);

test('region round trip, the short last region included', (t) => {
  t.deepEqual(decodeRegion(region(MiB, MiB), AT, V2, MiB), { offset: MiB, length: MiB, baseDigest: 0x1234n });
  t.deepEqual(decodeRegion(region(2 * MiB, MiB - 100), AT, V2, 2 * MiB), { offset: 2 * MiB, length: MiB - 100, baseDigest: 0x1234n });
  t.throws(() => region(2 * MiB, MiB), { instanceOf: FormatError }, 'the encoder checks its own output');
});

// v2 trailers.
const trailerBytes = () => encodeTrailer({ recordCount: 3, dataBytes: 12288, storedBytes: 9000, state: { regionCount: 3, baseFingerprint: 2n ** 64n - 1n, resultFingerprint: 7n } }, hasher.create64(0n));
const badTrailer = test.macro({
  exec(t, edit: (b: Buffer) => void, field: string, fieldOffset: number) {
    const b = trailerBytes();
    edit(b);
    expectFormat(t, () => decodeTrailer(b, AT, 2), field, AT + fieldOffset);
  },
  title: (name = '', _e, field) => `decodeTrailer v2 rejects ${name} (${field})`,
});
test('type 0x04', badTrailer, (b) => { b[0] = 4; }, 'trailer.type', 0);
test('reserved byte 6', badTrailer, (b) => { b[6] = 1; }, 'trailer.reserved', 1);
test('region_count 2^53', badTrailer, (b) => b.writeBigUInt64LE(2n ** 53n, 32), 'trailer.region_count', 32);
test('record_count 2^64-1', badTrailer, (b) => b.writeBigUInt64LE(2n ** 64n - 1n, 8), 'trailer.record_count', 8);

test('v2 trailer round trip (64 bytes); 63 bytes are truncated; encodeTrailer refuses a bad region_count or fingerprint', (t) => {
  const b = trailerBytes();
  t.is(b.length, TRAILER_LEN_V2);
  const back = decodeTrailer(b, 0, 2);
  t.deepEqual(back.state, { regionCount: 3, baseFingerprint: 2n ** 64n - 1n, resultFingerprint: 7n });
  t.is(back.streamChecksum, hasher.h64(b.subarray(0, 56), 0n));
  expectFormat(t, () => decodeTrailer(b.subarray(0, 63), AT, 2), 'trailer', AT);
  expectFormat(t, () => encodeTrailer({ recordCount: 0, dataBytes: 0, storedBytes: 0, state: { regionCount: -1, baseFingerprint: 0n, resultFingerprint: 0n } }, hasher.create64(0n)), 'trailer.region_count', 32);
  expectFormat(t, () => encodeTrailer({ recordCount: 0, dataBytes: 0, storedBytes: 0, state: { regionCount: 0, baseFingerprint: 2n ** 64n, resultFingerprint: 0n } }, hasher.create64(0n)), 'trailer.base_fingerprint', 40);
  expectFormat(t, () => encodeTrailer({ recordCount: 0, dataBytes: 0, storedBytes: 0, state: { regionCount: 0, baseFingerprint: 0n, resultFingerprint: -1n } }, hasher.create64(0n)), 'trailer.result_fingerprint', 48);
});
