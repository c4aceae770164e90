import test from 'ava';
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseRate, Throttle, ThrottledWriter, throttleChannel } from '../src/transport/throttle.js';
import { BlkError, ExitCode } from '../src/errors.js';

const rate = test.macro({
  exec(t: ExecutionContext, text: string, want: number) {
    t.is(parseRate(text), want);
  },
  title: (_g, text: string, want: number) => `parseRate(${JSON.stringify(text)}) = ${want}`,
});
const badRate = test.macro({
  exec(t: ExecutionContext, text: string) {
    const err = t.throws(() => parseRate(text), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes('--bwlimit'), err?.message);
    t.true(err?.message.includes(`"${text}"`), err?.message);
  },
  title: (_g, text: string) => `parseRate rejects ${JSON.stringify(text)}`,
});

test(rate, '1000000', 1_000_000);
test(rate, '512K', 512 * 1024);
test(rate, '512k', 512 * 1024);
test(rate, '40M', 40 * 1024 ** 2);
test(rate, '40MB', 40 * 1024 ** 2);
test(rate, '40MiB/s', 40 * 1024 ** 2);
test(rate, '1G', 1024 ** 3);
test(rate, '1.5M', 1.5 * 1024 ** 2);
test(badRate, '');
test(rate, '0', 0); // no limit
test(badRate, '-5M');
test(badRate, '40X');
test(badRate, 'fast');
test(badRate, '1e6');
test(badRate, '0.1');

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('Throttle passes bytes through unchanged, in order', async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const chunks = [data.subarray(0, 5), data.subarray(5, 2_000_000), data.subarray(2_000_000)];
  const th = new Throttle(1024 ** 3);
  const [out] = await Promise.all([collect(th), pipeline(Readable.from(chunks), th)]);
  t.true(out.equals(data));
});

test('Throttle does not let 320 KiB through a 1 MiB/s bucket in under 0.15 s', async (t) => {
  const data = randomBytes(320 * 1024);
  const th = new Throttle(1024 ** 2);
  const start = performance.now();
  const [out] = await Promise.all([collect(th), pipeline(Readable.from([data]), th)]);
  const seconds = (performance.now() - start) / 1000;
  t.true(out.equals(data));
  // burst is 1 MiB/10, so at least (320 KiB - 102.4 KiB) / 1 MiB/s = 0.21 s must pass.
  t.true(seconds >= 0.15, `took ${seconds} s`);
});

test('Throttle keeps backpressure: a stalled reader stops the writer', async (t) => {
  const th = new Throttle(1024 ** 3);
  let accepted = 0;
  const chunk = Buffer.alloc(64 * 1024);
  while (th.write(chunk) && accepted < 1000) accepted++;
  t.true(accepted < 10, `accepted ${accepted} chunks without a reader`);
  th.destroy();
});

test('throttleChannel caps both directions and closes through the inner channel', async (t) => {
  const serverOut = new PassThrough();
  const serverIn = new PassThrough();
  let closed = 0;
  const ch = throttleChannel(
    { input: serverOut, output: serverIn, stderrTail: () => 'tail', close: async () => { closed++; serverIn.end(); return 0; } },
    1024 ** 3,
  );
  const up = randomBytes(200_000);
  const down = randomBytes(300_000);
  const received = collect(serverIn);
  ch.output.write(up);
  serverOut.end(down);
  t.true((await collect(ch.input)).equals(down));
  t.is(await ch.close(), 0);
  t.true((await received).equals(up));
  t.is(closed, 1);
  t.is(ch.stderrTail(), 'tail');
});

test('ThrottledWriter calls back only after the inner stream did, so callers may reuse buffers', async (t) => {
  const seen: Buffer[] = [];
  let innerCallbacks = 0;
  const inner = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _e, cb) {
      setTimeout(() => {
        seen.push(Buffer.from(chunk));
        innerCallbacks++;
        cb();
      }, 5);
    },
  });
  const w = new ThrottledWriter(inner, 1024 ** 3);
  const buf = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 5; i++) {
    buf.fill(i);
    await new Promise<void>((resolve, reject) => w.write(buf, (err) => (err ? reject(err) : resolve())));
    t.is(innerCallbacks, i + 1, 'the write called back after the inner one');
  }
  t.deepEqual(seen.map((b) => b[0]), [0, 1, 2, 3, 4], 'no queued data was overwritten');
});

test('ThrottledWriter paces a large write and keeps it intact', async (t) => {
  const parts: Buffer[] = [];
  const inner = new Writable({ write(chunk: Buffer, _e, cb) { parts.push(Buffer.from(chunk)); cb(); } });
  const w = new ThrottledWriter(inner, 1024 ** 2);
  const data = randomBytes(300 * 1024);
  const start = performance.now();
  await new Promise<void>((resolve, reject) => w.write(data, (err) => (err ? reject(err) : resolve())));
  t.true((performance.now() - start) / 1000 >= 0.15);
  t.true(Buffer.concat(parts).equals(data));
  t.true(parts.length > 1, 'sent in pieces');
});
