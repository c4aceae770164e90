// Table tests for the engine's pure helpers: size plans, block and chunk sizes, runs of differing
// blocks, dev_t decoding, mountinfo parsing, sizes for humans, and the wire framing (header codec,
// FrameReader over split and truncated streams).
import test from 'ava';
import { Readable } from 'node:stream';
import { BlkError, ExitCode, FormatError } from '../src/errors.js';
import { majorMinor, parseMountinfo } from '../src/io/device.js';
import { chunkSizeFor, checkBlockSize, planSizes } from '../src/engine/session.js';
import { differingRuns } from '../src/engine/source.js';
import type { SizePolicy } from '../src/engine/types.js';
import { FRAME_HEADER_LEN, FrameReader, MAX_FRAME, Msg, decodeFrameHeader, encodeFrameHeader, type Frame, type MsgType } from '../src/proto/wire.js';
import { formatBytes, parseSize } from '../src/units.js';

// ---- planSizes: every policy × target smaller/larger/equal × file/block ----

type Plan = { compareSize: number; resultSize: number };
const plan = test.macro({
  exec(t, src: number, tgt: number, kind: 'file' | 'block', policy: SizePolicy, want: Plan | RegExp) {
    if (want instanceof RegExp) {
      const err = t.throws(() => planSizes(src, tgt, kind, policy), { instanceOf: BlkError });
      t.is(err!.code, ExitCode.SIZE_MISMATCH);
      t.regex(err!.message, want);
      t.regex(err!.message, new RegExp(`source is ${src} bytes, target is ${tgt} bytes`));
    } else {
      t.deepEqual(planSizes(src, tgt, kind, policy), want);
    }
  },
  title: (_p, src, tgt, kind, policy) => `planSizes ${policy}: source ${src}, ${kind} target ${tgt}`,
});

const S = 1_000_000;
for (const kind of ['file', 'block'] as const) {
  for (const policy of ['strict', 'grow', 'min'] as const) test(plan, S, S, kind, policy, { compareSize: S, resultSize: S });
  test(plan, S, S / 2, kind, 'strict', /size-policy grow extends/);
  test(plan, S / 2, S, kind, 'strict', /size-policy grow extends/);
  test(plan, S / 2, S, kind, 'grow', /grow never shrinks/);
  test(plan, S / 2, S, kind, 'min', { compareSize: S / 2, resultSize: S });
  test(plan, S, S / 2, kind, 'min', { compareSize: S / 2, resultSize: S / 2 });
}
test(plan, S, S / 2, 'file', 'grow', { compareSize: S, resultSize: S });
test(plan, S, S / 2, 'block', 'grow', /only a file target can grow/);
test(plan, 0, 0, 'file', 'strict', { compareSize: 0, resultSize: 0 });
test(plan, S, 0, 'file', 'grow', { compareSize: S, resultSize: S });

// ---- checkBlockSize and chunkSizeFor ----

const blockOk = test.macro({
  exec: (t, bs: number) => t.notThrows(() => checkBlockSize(bs)),
  title: (_p, bs) => `checkBlockSize accepts ${bs}`,
});
for (const bs of [512, 1024, 4096, 65536, 1 << 20, 16 << 20]) test(blockOk, bs);

const blockBad = test.macro({
  exec(t, bs: number) {
    const err = t.throws(() => checkBlockSize(bs), { instanceOf: BlkError });
    t.is(err!.code, ExitCode.USAGE);
    t.regex(err!.message, new RegExp(`^--block-size ${bs} is invalid`));
  },
  title: (_p, bs) => `checkBlockSize refuses ${bs}`,
});
for (const bs of [0, -4096, 256, 511, 3000, 4097, 4096.5, 32 << 20, NaN, Infinity]) test(blockBad, bs);

const chunk = test.macro({
  exec: (t, bs: number, want: number) => t.is(chunkSizeFor(bs), want),
  title: (_p, bs, want) => `chunkSizeFor ${bs} = ${want}`,
});
test(chunk, 512, 1 << 20);
test(chunk, 4096, 1 << 20);
test(chunk, 1 << 20, 1 << 20);
test(chunk, 2 << 20, 2 << 20);
test(chunk, 16 << 20, 16 << 20);

// ---- differingRuns ----
// A row is a string, one char per block: '.' same, 'd' differing data, 'z' differing all-zero.

function hashesFor(blocks: string): { local: Buffer; remote: Buffer } {
  const local = Buffer.alloc(blocks.length * 8), remote = Buffer.alloc(blocks.length * 8);
  for (let i = 0; i < blocks.length; i++) {
    local.writeBigUInt64LE(BigInt(i * 7919 + 1), i * 8);
    remote.writeBigUInt64LE(BigInt(i * 7919 + 1) + (blocks[i] === '.' ? 0n : 1n), i * 8);
  }
  return { local, remote };
}

const runs = test.macro({
  exec(t, blocks: string, want: Array<[number, number, boolean]>) {
    const { local, remote } = hashesFor(blocks);
    const asked: number[] = [];
    const got = [...differingRuns(local, remote, blocks.length, (i) => (asked.push(i), blocks[i] === 'z'))];
    t.deepEqual(got, want);
    t.true(asked.every((i) => blocks[i] !== '.'), 'isZero asked about a block that does not differ');
  },
  title: (name, blocks) => `differingRuns ${name}: ${blocks}`,
});
test('none', runs, '........', []);
test('all', runs, 'dddddddd', [[0, 8, false]]);
test('all zero', runs, 'zzzz', [[0, 4, true]]);
test('scattered', runs, 'd..d...d.d', [[0, 1, false], [3, 4, false], [7, 8, false], [9, 10, false]]);
test('clustered', runs, '..dddd....ddd.', [[2, 6, false], [10, 13, false]]);
test('first block', runs, 'd.......', [[0, 1, false]]);
test('last block', runs, '.......d', [[7, 8, false]]);
test('first and last zero', runs, 'z......z', [[0, 1, true], [7, 8, true]]);
test('zero/data alternation', runs, 'dzdzzd', [[0, 1, false], [1, 2, true], [2, 3, false], [3, 5, true], [5, 6, false]]);
test('zero run inside data run', runs, '.ddzzzdd.', [[1, 3, false], [3, 6, true], [6, 8, false]]);
test('a single block', runs, 'd', [[0, 1, false]]);
test('no blocks', runs, '', []);

// ---- majorMinor: dev_t values as glibc's makedev() builds them ----

const mm = test.macro({
  exec: (t, rdev: number, want: [number, number]) => t.deepEqual(majorMinor(rdev), want),
  title: (_p, rdev, want: [number, number]) => `majorMinor ${rdev} = ${want[0]}:${want[1]}`,
});
test(mm, 0, [0, 0]);
test(mm, 2048, [8, 0]); // sda
test(mm, 2065, [8, 17]); // sdb1
test(mm, 1792, [7, 0]); // loop0
test(mm, 66304, [259, 0]); // nvme0n1
test(mm, 64771, [253, 3]); // dm-3
test(mm, 1050368, [7, 256]); // loop256: minor above 255
test(mm, 3191784, [179, 1000]); // mmcblk, large minor
test(mm, 4293920767, [7, 1048575]); // the largest 20-bit minor
test(mm, 1048575, [4095, 255]); // the largest 12-bit major

// ---- parseMountinfo ----

const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '30 27 7:3 / /mnt/my\\040disk rw,relatime shared:9 - ext4 /dev/loop3 rw',
  '31 27 7:3 / /srv/second rw,relatime shared:9 - ext4 /dev/loop3 rw',
  '32 27 8:17 /sub /home/a\\011tab\\134back rw - xfs /dev/sdb1 rw',
  '33 27 0:45 / /run/user/0 rw,nosuid - tmpfs tmpfs rw',
  '',
].join('\n');

const mountinfo = test.macro({
  exec: (t, dev: string, want: string[] | undefined) => t.deepEqual(parseMountinfo(MOUNTINFO).get(dev), want),
  title: (_p, dev, want) => `parseMountinfo ${dev} → ${JSON.stringify(want)}`,
});
test(mountinfo, '254:0', ['/']);
test(mountinfo, '7:3', ['/mnt/my disk', '/srv/second']);
test(mountinfo, '8:17', ['/home/a\ttab\\back']);
test(mountinfo, '0:45', ['/run/user/0']);
test(mountinfo, '7:4', undefined);
test('parseMountinfo ignores blank and short lines', (t) => {
  t.is(parseMountinfo('\n\nshort line\n').size, 0);
});

// ---- parseSize and formatBytes ----

const size = test.macro({
  exec: (t, input: string | number, want: number) => t.is(parseSize(input, '--block-size'), want),
  title: (_p, input, want) => `parseSize ${JSON.stringify(input)} = ${want}`,
});
for (const [input, want] of [
  ['4096', 4096], [4096, 4096], ['4K', 4096], ['64k', 65536], ['1M', 1 << 20], ['2GiB', 2 * 1024 ** 3],
  ['1.5K', 1536], [' 512 ', 512], ['512b', 512], ['1T', 1024 ** 4], ['16MB', 16 << 20], ['0', 0],
] as const) test(size, input, want);

const sizeBad = test.macro({
  exec(t, input: string) {
    const err = t.throws(() => parseSize(input, '--block-size'));
    t.true(err!.message.startsWith(`--block-size ${JSON.stringify(input)} is `), err!.message);
    t.regex(err!.message, /is not a size \(use bytes or e\.g\. 4096, 4K, 64K, 4M, 1G\)$|is too large$/);
  },
  title: (_p, input) => `parseSize refuses ${JSON.stringify(input)}`,
});
for (const input of ['', 'abc', '-1', '4X', '4 K M', 'K', '1e3', '99999999999T']) test(sizeBad, input);

const fmt = test.macro({
  exec: (t, n: number, want: string) => t.is(formatBytes(n), want),
  title: (_p, n, want) => `formatBytes ${n} = ${want}`,
});
for (const [n, want] of [
  [0, '0 B'], [1023, '1023 B'], [1024, '1.0 KiB'], [1536, '1.5 KiB'], [10240, '10.0 KiB'],
  [1 << 20, '1.0 MiB'], [1.5 * 1024 ** 3, '1.5 GiB'], [2 * 1024 ** 4, '2.0 TiB'], [3000 * 1024 ** 4, '3000.0 TiB'],
] as const) test(fmt, n, want);

// ---- frame header codec ----

test('encodeFrameHeader/decodeFrameHeader round trip every message type and edge lengths', (t) => {
  for (const type of Object.values(Msg)) {
    for (const len of [0, 1, 4096, MAX_FRAME]) {
      const h = encodeFrameHeader(type, len);
      t.is(h.length, FRAME_HEADER_LEN);
      t.deepEqual([...h.subarray(1, 4)], [0, 0, 0]);
      t.deepEqual(decodeFrameHeader(h, 0), { type, length: len });
    }
  }
  t.deepEqual([...encodeFrameHeader(Msg.RECORD, 0x00c0ffee)], [7, 0, 0, 0, 0xee, 0xff, 0xc0, 0]);
});

test('encodeFrameHeader refuses a payload over MAX_FRAME', (t) => {
  const err = t.throws(() => encodeFrameHeader(Msg.RECORD, MAX_FRAME + 1), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.INTERNAL);
});

const badHeader = test.macro({
  exec(t, bytes: number[], field: string, offset: number, detail: RegExp) {
    const err = t.throws(() => decodeFrameHeader(Buffer.from(bytes), 100), { instanceOf: FormatError });
    t.is(err!.code, ExitCode.REMOTE);
    t.is(err!.field, field);
    t.is(err!.offset, offset);
    t.regex(err!.message, detail);
  },
  title: (name) => `decodeFrameHeader refuses ${name}`,
});
test('type 0', badHeader, [0, 0, 0, 0, 0, 0, 0, 0], 'frame.type', 100, /unknown message type 0/);
test('type 14', badHeader, [14, 0, 0, 0, 0, 0, 0, 0], 'frame.type', 100, /unknown message type 14/);
test('type 255 (e.g. an SSH banner or shell noise)', badHeader, [255, 0, 0, 0, 0, 0, 0, 0], 'frame.type', 100, /is the other end blkdelta/);
test('reserved byte 1 set', badHeader, [1, 1, 0, 0, 0, 0, 0, 0], 'frame.reserved', 101, /must be zero/);
test('reserved u16 low bit set', badHeader, [1, 0, 1, 0, 0, 0, 0, 0], 'frame.reserved', 101, /must be zero/);
test('reserved u16 high bit set', badHeader, [1, 0, 0, 0x80, 0, 0, 0, 0], 'frame.reserved', 101, /must be zero/);
test('length MAX_FRAME + 1', badHeader, [...encodeFrameHeader(Msg.RECORD, 0).subarray(0, 4), ...u32(MAX_FRAME + 1)], 'frame.length', 104, new RegExp(`${MAX_FRAME + 1} exceeds`));
test('length 0xffffffff', badHeader, [7, 0, 0, 0, 255, 255, 255, 255], 'frame.length', 104, /4294967295 exceeds/);

function u32(n: number): number[] {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return [...b];
}

// ---- FrameReader over real streams ----

const FRAMES: Frame[] = [
  { type: Msg.HELLO, payload: Buffer.from('{"magic":"BLKDELTA"}') },
  { type: Msg.READY, payload: Buffer.alloc(0) },
  { type: Msg.HASHES, payload: Buffer.from(Array.from({ length: 40 }, (_, i) => i * 3)) },
  { type: Msg.RECORD, payload: Buffer.alloc(1, 9) },
  { type: Msg.DONE, payload: Buffer.from('{}') },
];
const STREAM = Buffer.concat(FRAMES.flatMap((f) => [encodeFrameHeader(f.type as MsgType, f.payload.length), f.payload]));
const BOUNDARIES = FRAMES.reduce<number[]>((acc, f) => [...acc, acc.at(-1)! + FRAME_HEADER_LEN + f.payload.length], [0]);

async function readAll(chunks: Buffer[]): Promise<{ frames: Frame[]; bytes: number }> {
  const r = new FrameReader(Readable.from(chunks));
  const frames: Frame[] = [];
  for (let f = await r.next(); f; f = await r.next()) frames.push({ type: f.type, payload: Buffer.from(f.payload) });
  return { frames, bytes: r.bytes };
}

test('FrameReader reads the same frames whatever byte the stream is split at', async (t) => {
  for (let i = 0; i <= STREAM.length; i++) {
    const { frames, bytes } = await readAll([STREAM.subarray(0, i), STREAM.subarray(i)]);
    t.deepEqual(frames, FRAMES, `split at ${i}`);
    t.is(bytes, STREAM.length);
  }
});

test('FrameReader reads the same frames from one-byte chunks and from one chunk', async (t) => {
  t.deepEqual((await readAll([...STREAM].map((b) => Buffer.from([b])))).frames, FRAMES);
  t.deepEqual((await readAll([STREAM])).frames, FRAMES);
});

test('FrameReader: a stream ending between frames is a clean end; mid-frame it is a REMOTE error', async (t) => {
  for (let cut = 0; cut < STREAM.length; cut++) {
    const chunks = [STREAM.subarray(0, Math.floor(cut / 2)), STREAM.subarray(Math.floor(cut / 2), cut)];
    const k = BOUNDARIES.indexOf(cut);
    if (k >= 0) {
      t.deepEqual((await readAll(chunks)).frames, FRAMES.slice(0, k), `cut at boundary ${cut}`);
      continue;
    }
    const err = await t.throwsAsync(readAll(chunks), { instanceOf: BlkError }, `cut at ${cut}`);
    t.is(err!.code, ExitCode.REMOTE);
    const frameStart = BOUNDARIES.filter((b) => b < cut).at(-1)!;
    const inHeader = cut - frameStart < FRAME_HEADER_LEN;
    t.regex(err!.message, inHeader ? /in the middle of a frame header/ : /in the middle of a [A-Z]+ frame/, `cut at ${cut}`);
    t.regex(err!.message, new RegExp(`at byte ${frameStart}$`), `cut at ${cut}`);
  }
});

test('FrameReader: garbage in a header mid-stream names the field and the stream offset', async (t) => {
  const bad = Buffer.from(STREAM);
  bad[BOUNDARIES[2]! + 2] = 1;
  const err = await t.throwsAsync(readAll([bad]), { instanceOf: FormatError });
  t.is(err!.field, 'frame.reserved');
  t.is(err!.offset, BOUNDARIES[2]! + 1);
  t.is(err!.code, ExitCode.REMOTE);
});
