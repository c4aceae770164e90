// FrameWriter.send resolves only once the frame has left the stream, so a caller may reuse its
// buffer right away (the source reuses its chunk buffer for the next read). Regression test for
// records that arrived with the next chunk's data when a small frame was still queued. Also: how
// frames map to writes (one per small frame, one per batch of records or HASHES), which SSH turns
// into packets.
import test from 'ava';
import { Readable, Writable } from 'node:stream';
import { COALESCE, FrameReader, FrameWriter, Msg, encodeFrameHeader } from '../src/proto/wire.js';

/** A Writable that takes 5 ms per write and keeps references to what it was given, like a full pipe. */
function slowSink(): { stream: Writable; received: () => Buffer } {
  const parts: Buffer[] = [];
  const stream = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      setTimeout(() => {
        parts.push(Buffer.from(chunk)); // what the OS would have copied at this moment
        cb();
      }, 5);
    },
  });
  return { stream, received: () => Buffer.concat(parts) };
}

test('a buffer reused as soon as send resolves does not change what was sent', async (t) => {
  const { stream, received } = slowSink();
  const w = new FrameWriter(stream);
  const buf = Buffer.alloc(4096);
  const expected: Buffer[] = [];
  for (let i = 0; i < 20; i++) {
    buf.fill(i + 1);
    expected.push(Buffer.from([Msg.RECORD, 0, 0, 0, 0, 16, 0, 0]), Buffer.from(buf));
    await w.send(Msg.RECORD, buf);
  }
  t.true(received().equals(Buffer.concat(expected)));
  t.is(w.bytes, 20 * (8 + 4096));
});

test('send rejects with a REMOTE error when the stream is destroyed while sending', async (t) => {
  const { stream } = slowSink();
  const w = new FrameWriter(stream);
  const pending = w.send(Msg.RECORD, Buffer.alloc(1024));
  stream.destroy(new Error('EPIPE'));
  const err = await t.throwsAsync(pending);
  t.regex(err!.message, /connection lost|closed/);
});

/** A Writable that records each write separately (the packets ssh2 would make of them). */
function writesOf(): { stream: Writable; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      writes.push(Buffer.from(chunk));
      setImmediate(cb);
    },
  });
  return { stream, writes };
}

test('a small frame goes out in one write; a large payload after its header, uncopied', async (t) => {
  const { stream, writes } = writesOf();
  const w = new FrameWriter(stream);
  const recHeader = Buffer.alloc(32, 7);
  const small = Buffer.alloc(4096, 1);
  await w.send(Msg.RECORD, recHeader, small);
  t.is(writes.length, 1);
  t.deepEqual(writes[0], Buffer.concat([encodeFrameHeader(Msg.RECORD, 32 + 4096), recHeader, small]));
  const big = Buffer.alloc(COALESCE, 2);
  await w.send(Msg.RECORD, recHeader, big);
  t.is(writes.length, 3, 'header + record header, then the payload');
  t.deepEqual(writes[1], Buffer.concat([encodeFrameHeader(Msg.RECORD, 32 + COALESCE), recHeader]));
  t.deepEqual(writes[2], big);
  await w.send(Msg.READY);
  t.deepEqual(writes[3], encodeFrameHeader(Msg.READY, 0));
  t.is(w.bytes, 3 * 8 + 2 * 32 + 4096 + COALESCE);
});

test('two sends in flight at once (an ERROR during HASHES) do not share the coalescing buffer', async (t) => {
  const { stream, received } = slowSink();
  const w = new FrameWriter(stream);
  const a = Buffer.alloc(3000, 0xa);
  const b = Buffer.alloc(3000, 0xb);
  await Promise.all([w.send(Msg.HASHES, a), w.send(Msg.ERROR, b)]);
  t.deepEqual(received(), Buffer.concat([encodeFrameHeader(Msg.HASHES, 3000), a, encodeFrameHeader(Msg.ERROR, 3000), b]));
});

test('frames queued with sendBatched go out in one write on flush; FrameReader reads them back', async (t) => {
  const { stream, writes } = writesOf();
  const w = new FrameWriter(stream);
  const payload = Buffer.alloc(16);
  for (let i = 0; i < 3; i++) await w.sendBatched(Msg.HASHES, payload.fill(i + 1)); // reused at once
  t.is(writes.length, 0, 'queued until flush');
  await w.flush();
  t.is(writes.length, 1);
  t.is(w.bytes, 3 * (8 + 16));
  const r = new FrameReader(Readable.from([writes[0]!]));
  for (let i = 0; i < 3; i++) {
    const f = await r.next();
    t.is(f?.type, Msg.HASHES);
    t.deepEqual(f?.payload, Buffer.alloc(16, i + 1));
  }
  t.is(await r.next(), null);
});

test('sendBatched: small frames share 64 KiB writes, in order with send; buffers reusable at once', async (t) => {
  const { stream, writes } = writesOf();
  const w = new FrameWriter(stream);
  const recHeader = Buffer.alloc(32);
  const data = Buffer.alloc(4096);
  const expected: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    recHeader.fill(i);
    data.fill(255 - i); // reused at once: the batch holds a copy
    expected.push(encodeFrameHeader(Msg.RECORD, 32 + 4096), Buffer.from(recHeader), Buffer.from(data));
    await w.sendBatched(Msg.RECORD, recHeader, data);
  }
  const big = Buffer.alloc(COALESCE, 9); // too big to batch: flushes the batch, then goes by itself
  expected.push(encodeFrameHeader(Msg.RECORD, 32 + COALESCE), Buffer.alloc(32, 1), big);
  await w.sendBatched(Msg.RECORD, Buffer.alloc(32, 1), big);
  await w.sendBatched(Msg.RECORD, recHeader, data);
  expected.push(encodeFrameHeader(Msg.RECORD, 32 + 4096), Buffer.from(recHeader), Buffer.from(data));
  await w.sendJson(Msg.DONE, { records: 42 }); // flushes the last record first
  const done = Buffer.from(JSON.stringify({ records: 42 }));
  expected.push(encodeFrameHeader(Msg.DONE, done.length), done);
  t.true(Buffer.concat(writes).equals(Buffer.concat(expected)));
  const frameLen = 8 + 32 + 4096;
  const perBatch = Math.floor(COALESCE / frameLen); // 15 frames of 4 KiB records per write
  t.is(writes[0]!.length, perBatch * frameLen);
  t.true(writes.length <= Math.ceil(40 / perBatch) + 5, `${writes.length} writes for 42 frames`);
  t.is(w.bytes, Buffer.concat(writes).length);
});

test('a record batch waiting in the writer is flushed before DONE, so a sync never loses it', async (t) => {
  const { stream, received } = slowSink();
  const w = new FrameWriter(stream);
  await w.sendBatched(Msg.RECORD, Buffer.alloc(100, 1));
  t.is(received().length, 0, 'still queued');
  await w.sendJson(Msg.DONE, {});
  const r = new FrameReader(Readable.from([received()]));
  t.is((await r.next())?.type, Msg.RECORD);
  t.is((await r.next())?.type, Msg.DONE);
});
