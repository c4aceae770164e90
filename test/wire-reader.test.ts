// FrameReader over its two byte sources (proto/byte-source.ts): a Readable's chunks, and a socket
// read with `onread` into one reused buffer (the server's stdin). The socket rows run over a real
// Unix socket; a small read buffer makes every read that small, so frames split at every byte of
// their header and a placed record's data arrives in many reads. Each row runs on both sources
// and must give the same frames, or the same error.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type NetConnectOpts, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ExitCode } from '../src/errors.js';
import { PROTOCOL_MAGIC, PROTOCOL_VERSION } from '../src/proto/messages.js';
import { OnreadSource } from '../src/proto/byte-source.js';
import { FrameReader, Msg, encodeFrameHeader, type MsgType, type Placer } from '../src/proto/wire.js';

const frame = (type: number, p: Buffer): Buffer => Buffer.concat([encodeFrameHeader(type as MsgType, p.length), p]);
const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + seed * 7 + (i >> 8)) & 255));
const HEAD = 4;

interface Got { frames: string[]; error?: string }

/** A placer that puts every RECORD longer than its head into a buffer of its own (kept in `placed`). */
function placer(placed: Buffer[], wait?: () => Promise<void>): Placer {
  return {
    headLen: HEAD,
    place: async (type, length) => {
      if (type !== Msg.RECORD) return undefined;
      await wait?.();
      const dest = Buffer.alloc(length - HEAD);
      placed.push(dest);
      return dest;
    },
  };
}

/** Every frame of the reader, each as "TYPE:hex of its whole payload" (a placed one: head + placed data). */
async function readAll(reader: FrameReader, wait?: () => Promise<void>): Promise<Got> {
  const frames: string[] = [];
  const placed: Buffer[] = [];
  try {
    for (let f = await reader.next(placer(placed, wait)); f; f = await reader.next(placer(placed, wait))) {
      const payload = f.placed ? Buffer.concat([f.payload, placed.at(-1)!]) : Buffer.from(f.payload);
      frames.push(`${f.type}${f.placed ? 'p' : ''}:${payload.toString('hex')}`);
    }
    return { frames };
  } catch (err) {
    return { frames, error: (err as Error).message };
  }
}

/** The bytes through a PassThrough, in chunks of `size`. */
function viaReadable(data: Buffer, size: number): Promise<Got> {
  const inp = new PassThrough();
  for (let at = 0; at < data.length; at += size) inp.write(data.subarray(at, at + size));
  inp.end();
  return readAll(new FrameReader(inp));
}

/** A Unix socket pair: an OnreadSource reading with a buffer of `size` bytes, and the socket that writes to it. */
async function socketPair(size: number): Promise<{ src: OnreadSource; send: Socket }> {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-onread-'));
  const path = join(dir, 'sock');
  const server = createServer();
  server.listen(path);
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const src = new OnreadSource((onread) => connect({ path, onread } as NetConnectOpts), size);
  const [send] = (await accepted) as [Socket];
  server.close();
  rmSync(dir, { recursive: true, force: true });
  return { src, send };
}

/** The bytes through a socket read `size` bytes at a time, then EOF. */
async function viaSocket(data: Buffer, size: number): Promise<Got> {
  const { src, send } = await socketPair(size);
  send.end(data);
  const got = await readAll(new FrameReader(src));
  src.socket.destroy();
  send.destroy();
  return got;
}

const hello = frame(Msg.HELLO, Buffer.from('{"magic":"x"}'));
const record = (n: number, seed: number) => frame(Msg.RECORD, bytes(n, seed));
const done = frame(Msg.DONE, Buffer.from('{}'));

const rows: [string, Buffer, number[]][] = [
  ['every read one byte: each header split at every byte, a placed record of 300 bytes in 296 reads', Buffer.concat([hello, record(300, 1), done]), [1]],
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((k): [string, Buffer, number[]] => [
    `8-byte reads, the second frame's header starting at byte ${k} of a read`, Buffer.concat([frame(Msg.HELLO, bytes(k, 2)), record(40, 3), done]), [8],
  ]),
  ['a placed record of 64 KiB + 5 in 7-byte reads, and in 1000-byte reads', Buffer.concat([hello, record(64 * 1024 + 5, 4), done]), [7, 1000]],
  ['a record no longer than the placer\'s head is read, not placed; empty frames', Buffer.concat([record(HEAD, 5), frame(Msg.DONE, Buffer.alloc(0)), record(0, 6)]), [1, 3, 64 * 1024]],
  ['many frames in one 64 KiB read', Buffer.concat(Array.from({ length: 50 }, (_, i) => record(1000 + i, i))), [64 * 1024]],
  ['EOF in the middle of a frame header', Buffer.concat([hello, encodeFrameHeader(Msg.DONE, 2).subarray(0, 5)]), [1, 3, 64 * 1024]],
  ['EOF in the middle of a payload', Buffer.concat([hello, done.subarray(0, done.length - 1)]), [1, 4, 64 * 1024]],
  ['EOF in the head of a record to place', Buffer.concat([hello, record(300, 7).subarray(0, 10)]), [1, 64 * 1024]],
  ['EOF in the middle of a placed record', Buffer.concat([hello, record(300, 8).subarray(0, 200)]), [1, 7, 64 * 1024]],
  ['a bad frame header after a good frame', Buffer.concat([hello, Buffer.from([99, 0, 0, 0, 0, 0, 0, 0])]), [1, 64 * 1024]],
];

for (const [name, data, sizes] of rows) {
  test(`reads the same frames from a socket's reused buffer as from a Readable: ${name}`, async (t) => {
    const want = await viaReadable(data, 64 * 1024);
    t.true(want.frames.length > 0 || want.error !== undefined);
    for (const size of sizes) {
      t.deepEqual(await viaReadable(data, size), want, `Readable, chunks of ${size}`);
      t.deepEqual(await viaSocket(data, size), want, `socket, reads of ${size}`);
    }
  });
}

test('a second next() while a frame is being read is refused (INTERNAL); the first still gets its frame', async (t) => {
  for (const via of ['Readable', 'socket'] as const) {
    const inp = new PassThrough();
    const pair = via === 'socket' ? await socketPair(64 * 1024) : undefined;
    const reader = new FrameReader(pair ? pair.src : inp);
    const first = reader.next();
    const second = reader.next();
    await t.throwsAsync(second, { message: /next\(\) called while a frame is being read/ }, via);
    if (pair) pair.send.end(hello);
    else inp.end(hello);
    const f = await first;
    t.is(f?.type, Msg.HELLO, via);
    t.is(f?.payload.toString(), '{"magic":"x"}', via);
    t.is(await reader.next(), null, `${via}: a clean end after it`);
    pair?.src.socket.destroy();
    pair?.send.destroy();
  }
});

test('placed-record framing: a placed record\'s bytes land whole in its own buffer', async (t) => {
  const got = await viaSocket(Buffer.concat([hello, record(300, 1), done]), 1);
  t.deepEqual(got.frames.map((f) => f.split(':')[0]), [`${Msg.HELLO}`, `${Msg.RECORD}p`, `${Msg.DONE}`]);
  t.is(got.frames[1], `${Msg.RECORD}p:${bytes(300, 1).toString('hex')}`);
});

test('while a record waits for its write, the socket is paused: at most one read staged, the rest left in the kernel; then all of it arrives', async (t) => {
  const size = 4096;
  const { src, send } = await socketPair(size);
  const data = Buffer.concat([hello, record(10_000, 1), ...Array.from({ length: 200 }, (_, i) => record(20_000, i + 2)), done]);
  const reader = new FrameReader(src);
  let waits = 0;
  const wait = async () => {
    if (waits++ !== 1) return; // the second record waits until the writer is blocked by the full kernel buffer
    while (send.writableLength === 0) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 50)); // time for reads, were the socket not paused
    t.true(src.stagedBytes <= size, `staged ${src.stagedBytes}`);
    t.true(src.socket.bytesRead - reader.bytes <= 2 * size + 10_000 + 20_000, `read ${src.socket.bytesRead} bytes, consumed ${reader.bytes}`);
    t.true(send.writableLength > 0, 'the writer is still blocked');
  };
  send.end(data);
  const got = await readAll(reader, wait);
  t.is(got.error, undefined);
  t.is(got.frames.length, 203);
  t.is(reader.bytes, data.length);
  t.is(got.frames[102], `${Msg.RECORD}p:${bytes(20_000, 102).toString('hex')}`);
  t.true(waits > 2);
  src.socket.destroy();
  send.destroy();
});

test('a destroyed socket (an abort) ends a waiting read with its reason, staged bytes or not', async (t) => {
  const { src, send } = await socketPair(1024);
  const reader = new FrameReader(src);
  const pending = reader.next();
  send.write(encodeFrameHeader(Msg.DONE, 10));
  await new Promise((r) => setTimeout(r, 20));
  src.socket.destroy(new Error('snapshot overflow'));
  await t.throwsAsync(pending, { message: 'snapshot overflow' });
  send.destroy();
});

// ---- the real server process: its stdin a pipe (read into one reused buffer) or a file (process.stdin) ----

const BIN = fileURLToPath(new URL('../../bin/blkdelta', import.meta.url));

/** `blkdelta server` with stdin given (a pipe fed `input`, or a file's fd): exit code, its ERROR's code, its stderr. */
async function serverRun(input: Buffer, stdin: 'pipe' | number): Promise<{ code: number | null; error?: number; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'server'], { stdio: [stdin, 'pipe', 'pipe'], env: { ...process.env, BLKDELTA_DEBUG: '1' } });
  if (child.stdin) child.stdin.on('error', () => undefined).end(input);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const reader = new FrameReader(child.stdout!);
  let error: number | undefined;
  for (let f = await reader.next(); f; f = await reader.next()) if (f.type === Msg.ERROR) error = (JSON.parse(Buffer.from(f.payload).toString()) as { code: number }).code;
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, error, stderr };
}

const relative = frame(Msg.HELLO, Buffer.from(JSON.stringify({ magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [], role: 'target', path: 'relative.img', write: true })));

test('the server reads a pipe on its stdin into one reused buffer, a file through process.stdin; both serve the session', async (t) => {
  const piped = await serverRun(relative, 'pipe');
  t.regex(piped.stderr, /stdin: read into one reused buffer/);
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-stdin-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'in'), relative);
  const fd = openSync(join(dir, 'in'), 'r');
  const filed = await serverRun(Buffer.alloc(0), fd).finally(() => closeSync(fd));
  t.regex(filed.stderr, /stdin: not a pipe or socket, read through process\.stdin/);
  for (const r of [piped, filed]) {
    t.is(r.code, ExitCode.PERMISSION, r.stderr);
    t.is(r.error, ExitCode.PERMISSION);
    t.regex(r.stderr, /absolute/);
  }
});

test('the server exits when its stdin pipe closes before any frame, and mid-frame', async (t) => {
  t.is((await serverRun(Buffer.alloc(0), 'pipe')).code, 0);
  const cut = await serverRun(relative.subarray(0, 20), 'pipe');
  t.is(cut.code, ExitCode.REMOTE, cut.stderr);
  t.regex(cut.stderr, /in the middle of a HELLO frame/);
});
