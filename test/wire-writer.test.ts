// FrameWriter.send resolves only once the frame has left the stream, so a caller may reuse its
// buffer right away (the source reuses its chunk buffer for the next read). Regression test for
// records that arrived with the next chunk's data when a small frame was still queued.
import test from 'ava';
import { Writable } from 'node:stream';
import { FrameWriter, Msg } from '../src/proto/wire.js';

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
