// The device writer reads a large raw record's data straight from the wire into its O_DIRECT
// batch (FrameReader's Placer, DeviceWriter.place) and checks it there. One row per case, run
// through the server session in-process on an empty sparse target (not cached: O_DIRECT):
// good records of each kind land where they say; a bad checksum, a cut frame and a length that
// does not add up are refused with the usual error, and the bad record's bytes are never written.
import test from 'ava';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { ExitCode } from '../src/errors.js';
import { WRITE_BATCH } from '../src/io/direct.js';
import { loadHasher } from '../src/hash.js';
import { makeRecord } from '../src/patch/format.js';
import { PROTOCOL_MAGIC, PROTOCOL_VERSION } from '../src/proto/messages.js';
import { FrameReader, Msg, encodeFrameHeader, type Frame, type MsgType } from '../src/proto/wire.js';
import { serve } from '../src/server/session.js';
import { Workspace } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-placed-');
test.after.always(() => ws.cleanup());
const MiB = 1 << 20;
const SIZE = 16 * MiB;

const frame = (type: number, p: Buffer): Buffer => Buffer.concat([encodeFrameHeader(type as MsgType, p.length), p]);
const json = (type: number, body: unknown) => frame(type, Buffer.from(JSON.stringify(body)));
const hello = (path: string) => ({ magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: ['lz4'], role: 'target', path, write: true });
const start = { blockSize: 4096, seed: '1', compareSize: SIZE, resultSize: SIZE, chunkSize: 8 * MiB, recordsToPeer: true, compress: false, verify: true };
const done = { blocksCompared: 0, blocksDiffering: 0, blocksZero: 0, records: 0, dataBytes: 0, bytesRead: 0, firstDiffs: [] };

async function framesOf(out: Readable): Promise<Frame[]> {
  const reader = new FrameReader(out);
  const got: Frame[] = [];
  for (let f = await reader.next(); f; f = await reader.next()) got.push({ type: f.type, payload: Buffer.from(f.payload) });
  return got;
}

/** A RECORD frame of data at offset (raw unless all zero), its checksum right. */
async function record(offset: number, data: Buffer): Promise<Buffer> {
  const r = makeRecord(offset, data, false, await loadHasher());
  return frame(Msg.RECORD, Buffer.concat([r.header, r.payload]));
}

const random = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + seed * 7 + (i >> 12)) & 255));

/** The session on an empty sparse target: HELLO, START, the records, then DONE (unless cut). */
async function run(records: Buffer[], withDone = true): Promise<{ code: number; error?: string; content: Buffer }> {
  const dst = ws.fresh('dst.img');
  writeFileSync(dst, '');
  truncateSync(dst, SIZE);
  const inp = new PassThrough(), out = new PassThrough();
  const frames = framesOf(out);
  inp.end(Buffer.concat([json(Msg.HELLO, hello(dst)), json(Msg.START, start), ...records, ...(withDone ? [json(Msg.DONE, done)] : [])]));
  const code = await serve(inp, out, {});
  const e = (await frames).find((f) => f.type === Msg.ERROR);
  const result = (await frames).find((f) => f.type === Msg.RESULT);
  if (code === 0 && !/writes O_DIRECT/.test(result?.payload.toString() ?? '')) throw new Error(`the target was not written with O_DIRECT: ${result?.payload.toString()}`);
  return { code, error: e && (JSON.parse(e.payload.toString()) as { message: string }).message, content: readFileSync(dst) };
}

test('records of every kind land where they say (placed: 1 MiB and 2 MiB raw; not placed: small, zero, over a batch (WRITE_BATCH + 8 KiB); batches cut by gaps)', async (t) => {
  const want = Buffer.alloc(SIZE);
  const parts: [number, Buffer][] = [
    [0, random(MiB, 1)], [MiB, random(2 * MiB, 2)], [3 * MiB, random(4096, 3)], [3 * MiB + 4096, Buffer.alloc(MiB - 4096)],
    [5 * MiB, random(MiB, 4)], [7 * MiB, random(128 * 1024, 5)], [7 * MiB + 128 * 1024 + 4096, random(64 * 1024, 6)], [8 * MiB, random(WRITE_BATCH + 8192, 7)],
  ];
  for (const [at, data] of parts) data.copy(want, at);
  const r = await run(await Promise.all(parts.map(([at, data]) => record(at, data))));
  t.is(r.code, 0, r.error);
  t.true(r.content.equals(want));
});

const refused = test.macro({
  async exec(t, make: () => Promise<{ frames: Buffer[]; done?: boolean }>, code: number, words: RegExp, badAt: number) {
    const { frames, done: withDone = true } = await make();
    const r = await run(frames, withDone);
    t.is(r.code, code, r.error);
    t.regex(r.error ?? '', words);
    t.true(r.content.subarray(badAt, badAt + MiB).equals(Buffer.alloc(MiB)), 'nothing of the bad record is written');
  },
  title: (name) => `a placed record ${name} is refused, none of it written`,
});

const flip = (f: Buffer, at: number) => {
  f[at] ^= 1;
  return f;
};
test('whose data does not match its checksum', refused, async () => ({ frames: [await record(0, random(MiB, 1)), flip(await record(MiB, random(MiB, 2)), 8 + 32 + 5000)] }),
  ExitCode.PATCH_INVALID, /record\.checksum.*data at target offset 1048576 does not match/, MiB);
test('cut in the middle of its data', refused, async () => ({ frames: [await record(0, random(MiB, 1)), (await record(MiB, random(MiB, 2))).subarray(0, 8 + 32 + 300_000)], done: false }),
  ExitCode.REMOTE, /connection closed in the middle of a RECORD frame/, MiB);
test('whose frame is longer than its stored length', refused, async () => {
  const f = await record(MiB, random(MiB, 2));
  const longer = Buffer.concat([encodeFrameHeader(Msg.RECORD, f.length - 8 + 4096), f.subarray(8), Buffer.alloc(4096)]);
  return { frames: [longer] };
}, ExitCode.PATCH_INVALID, /record\.payload.*stored_len says 1048576/, MiB);
