// A hostile client against the server end: raw frames, one row per malformed HELLO or START
// field, each with its exit code and the words of its message, and the target file unchanged
// (content and size). The table runs the server session in-process over streams (the code
// `blkdelta server` runs, without a Node start per row); the rows that once hung, grew or escaped
// run `blkdelta server` itself over a pipe. Then the allow list on resolved paths (symlink
// escape), the chmod 444 refusal and empty globs.
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, statSync, symlinkSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { ExitCode } from '../src/errors.js';
import { PROTOCOL_MAGIC, PROTOCOL_VERSION } from '../src/proto/messages.js';
import { FrameReader, Msg, encodeFrameHeader, type Frame, type MsgType } from '../src/proto/wire.js';
import { makePolicy, type ServerPolicy } from '../src/server/policy.js';
import { serve } from '../src/server/session.js';
import { BIN_PATH } from '../src/transport/local.js';
import { Workspace, blkdelta, esc, randomFile, sha256 } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-hostile-');
test.after.always(() => ws.cleanup());
const MiB = 1 << 20;

const frame = (type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer => {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return Buffer.concat([encodeFrameHeader(type as MsgType, p.length), p]);
};
const json = (type: number, body: unknown) => frame(type, JSON.stringify(body));
const hello = (path: string, extra: Record<string, unknown> = {}) =>
  ({ magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: ['lz4'], role: 'target', path, write: true, ...extra });
const start = (size: number, extra: Record<string, unknown> = {}) =>
  ({ blockSize: 4096, seed: '1', compareSize: size, resultSize: size, chunkSize: MiB, recordsToPeer: true, compress: true, verify: false, ...extra });

async function framesOf(out: Readable): Promise<Frame[]> {
  const reader = new FrameReader(out);
  const got: Frame[] = [];
  for (let f = await reader.next(); f; f = await reader.next()) got.push({ type: f.type, payload: Buffer.from(f.payload) });
  return got;
}

interface Outcome { code: number; frames: Frame[]; error?: { code: number; message: string } }

function outcome(code: number, frames: Frame[]): Outcome {
  const e = frames.find((f) => f.type === Msg.ERROR);
  return { code, frames, ...(e ? { error: JSON.parse(e.payload.toString()) as { code: number; message: string } } : {}) };
}

/** The server session in-process: writes the frames, ends its input, returns its exit code and frames. */
async function session(input: Buffer[], policy?: ServerPolicy): Promise<Outcome> {
  const inp = new PassThrough(), out = new PassThrough();
  const frames = framesOf(out);
  inp.end(Buffer.concat(input));
  const code = await serve(inp, out, policy ? { config: policy } : {});
  return outcome(code, await frames);
}

/** `blkdelta server ARGS` over a pipe: the frames on its stdin, then EOF. */
function server(input: Buffer[], args: string[] = []): Promise<Outcome & { stderr: string }> {
  const child = spawn(process.execPath, [BIN_PATH, 'server', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.on('error', () => { /* the server may stop reading early */ });
  child.stdin.end(Buffer.concat(input));
  const frames = framesOf(child.stdout);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', async (code) => resolve({ ...outcome(code ?? -1, await frames), stderr }));
  });
}

function target(size = MiB): string {
  const p = ws.fresh('dst.img');
  randomFile(p, size);
  return p;
}
const state = (p: string) => ({ size: statSync(p).size, sha: sha256(p) });

// ---- HELLO, one row per field ----

const badHello = test.macro({
  async exec(t, payload: (dst: string) => Buffer, code: number, words: RegExp) {
    const dst = target();
    const before = state(dst);
    const r = await session([payload(dst)]);
    t.is(r.code, code, r.error?.message);
    t.is(r.error?.code, code);
    t.regex(r.error?.message ?? '', words);
    t.false(r.frames.some((f) => f.type === Msg.WELCOME), 'no WELCOME after a bad HELLO');
    t.deepEqual(state(dst), before);
  },
  title: (name) => `HELLO ${name}`,
});

const H = (mutate: (h: Record<string, unknown>) => unknown) => (dst: string) => json(Msg.HELLO, mutate(hello(dst)));
const REMOTE = ExitCode.REMOTE;
test('not JSON', badHello, () => frame(Msg.HELLO, 'hello?'), REMOTE, /malformed HELLO: not JSON \(6 bytes\)/);
test('empty', badHello, () => frame(Msg.HELLO), REMOTE, /malformed HELLO: not JSON \(0 bytes\)/);
test('null', badHello, () => frame(Msg.HELLO, 'null'), REMOTE, /malformed HELLO: not a JSON object \(got null\)/);
test('an array', badHello, () => frame(Msg.HELLO, '[1,2]'), REMOTE, /malformed HELLO: not a JSON object \(got an array\)/);
test('a number', badHello, () => frame(Msg.HELLO, '42'), REMOTE, /not a JSON object \(got number\)/);
test('a string', badHello, () => frame(Msg.HELLO, '"x"'), REMOTE, /not a JSON object \(got string\)/);
test('over 64 KiB', badHello, (d) => json(Msg.HELLO, hello(d, { pad: 'x'.repeat(70_000) })), REMOTE, /malformed HELLO: \d+ bytes exceeds the limit of 65536/);
test('magic missing', badHello, H((h) => ({ ...h, magic: undefined })), REMOTE, /not blkdelta \(bad magic\)/);
test('magic wrong', badHello, H((h) => ({ ...h, magic: 'RSYNC' })), REMOTE, /bad magic/);
test('version 2', badHello, H((h) => ({ ...h, version: 2 })), REMOTE, /protocol version 2 is not supported/);
test('version "1"', badHello, H((h) => ({ ...h, version: '1' })), REMOTE, /protocol version 1 is not supported/);
test('caps missing', badHello, H((h) => ({ ...h, caps: undefined })), REMOTE, /field caps must be a list/);
test('caps a string', badHello, H((h) => ({ ...h, caps: 'lz4' })), REMOTE, /field caps must be a list/);
test('caps with a number', badHello, H((h) => ({ ...h, caps: ['lz4', 7] })), REMOTE, /field caps must be a list of at most 64 strings/);
test('caps 65 entries', badHello, H((h) => ({ ...h, caps: Array(65).fill('x') })), REMOTE, /field caps must be a list of at most 64/);
test('caps a huge string', badHello, H((h) => ({ ...h, caps: ['x'.repeat(65)] })), REMOTE, /at most 64 characters/);
test('role missing', badHello, H((h) => ({ ...h, role: undefined })), REMOTE, /field role must be "source" or "target", got undefined/);
test('role unknown', badHello, H((h) => ({ ...h, role: 'both' })), REMOTE, /field role must be "source" or "target", got "both"/);
test('role a number', badHello, H((h) => ({ ...h, role: 1 })), REMOTE, /field role must be .* got 1/);
test('role null', badHello, H((h) => ({ ...h, role: null })), REMOTE, /field role must be .* got null/);
test('path missing', badHello, H((h) => ({ ...h, path: undefined })), REMOTE, /malformed HELLO: field path must be a string/);
test('path a number', badHello, H((h) => ({ ...h, path: 0 })), REMOTE, /field path must be a string/);
test('path a list', badHello, H((h) => ({ ...h, path: ['/dev/sda'] })), REMOTE, /field path must be a string/);
test('path of 5000 bytes', badHello, H((h) => ({ ...h, path: '/' + 'a'.repeat(4999) })), REMOTE, /field path is 5000 bytes long, more than 4095/);
test('path empty', badHello, H((h) => ({ ...h, path: '' })), ExitCode.PERMISSION, /device path "" is empty/);
test('path relative', badHello, H((h) => ({ ...h, path: 'dst.img' })), ExitCode.PERMISSION, /is not absolute/);
test('path with ..', badHello, H((h) => ({ ...h, path: `${h.path as string}/../x` })), ExitCode.PERMISSION, /'\.\.' component/);
test('path with NUL', badHello, H((h) => ({ ...h, path: `${h.path as string}\0` })), ExitCode.PERMISSION, /NUL or newline/);
test('write missing', badHello, H((h) => ({ ...h, write: undefined })), REMOTE, /field write must be a boolean/);
test('write "yes"', badHello, H((h) => ({ ...h, write: 'yes' })), REMOTE, /field write must be a boolean/);
test('write 1', badHello, H((h) => ({ ...h, write: 1 })), REMOTE, /field write must be a boolean/);
test('write for a source', badHello, H((h) => ({ ...h, role: 'source' })), REMOTE, /field write is true for a source/);
test('targetSnapshot null', badHello, H((h) => ({ ...h, targetSnapshot: null })), REMOTE, /field targetSnapshot must be an object/);
test('targetSnapshot keep -1', badHello, H((h) => ({ ...h, targetSnapshot: { job: 'j', keep: -1 } })), REMOTE, /targetSnapshot.keep must be a whole number >= 0/);
test('targetSnapshot keep 1.5', badHello, H((h) => ({ ...h, targetSnapshot: { job: 'j', keep: 1.5 } })), REMOTE, /targetSnapshot.keep/);
test('targetSnapshot job a number', badHello, H((h) => ({ ...h, targetSnapshot: { job: 5, keep: 1 } })), REMOTE, /field job must be a string/);
test('targetSnapshot size a number', badHello, H((h) => ({ ...h, targetSnapshot: { job: 'j', keep: 1, size: 5 } })), REMOTE, /field size must be a string/);
test('START first', badHello, (d) => json(Msg.START, start(MiB, { path: d })), REMOTE, /did not start with HELLO \(got START\)/);
test('frame type 99', badHello, () => frame(99, '{}'), REMOTE, /invalid frame\.type at byte 0: unknown message type 99/);
test('reserved bits set', badHello, (d) => { const f = json(Msg.HELLO, hello(d)); f[1] = 1; return f; }, REMOTE, /invalid frame\.reserved/);
test('a truncated frame', badHello, (d) => json(Msg.HELLO, hello(d)).subarray(0, 20), REMOTE, /connection closed in the middle of a HELLO frame/);

// ---- START, one row per field, after a valid HELLO for a 1 MiB target ----

const badStart = test.macro({
  async exec(t, body: unknown, code: number, words: RegExp, role: 'target' | 'source' = 'target', write = true) {
    const dst = target();
    const before = state(dst);
    const payload = typeof body === 'string' ? frame(Msg.START, body) : json(Msg.START, body);
    const r = await session([json(Msg.HELLO, hello(dst, { role, write })), payload]);
    t.is(r.code, code, r.error?.message);
    t.is(r.error?.code, code);
    t.regex(r.error?.message ?? '', words);
    t.false(r.frames.some((f) => f.type === Msg.READY), 'no READY after a bad START');
    t.deepEqual(state(dst), before, 'the target is unchanged (content and size)');
  },
  title: (name) => `START ${name}`,
});

const S = (extra: Record<string, unknown>) => start(MiB, extra);
const E53 = 2 ** 53;
const whole = /must be a whole number of magnitude below 2\^53/;
test('not JSON', badStart, '{blockSize:', REMOTE, /malformed START message/);
test('null', badStart, 'null', REMOTE, /malformed START: not a JSON object/);
test('an array', badStart, '[]', REMOTE, /malformed START: not a JSON object/);
for (const [v, words] of [[0, /blockSize 0 is not a power of two from 512/], [-4096, /blockSize -4096 is not a power of two/], [3000, /blockSize 3000/], [256, /blockSize 256/],
  [32 * MiB, /blockSize 33554432/], [4096.5, whole], ['4096', /field blockSize must be a whole number/], [null, /field blockSize/]] as const) {
  test(`blockSize ${JSON.stringify(v)}`, badStart, S({ blockSize: v }), REMOTE, words);
}
for (const [v, words] of [[0, /chunkSize 0 is not a positive multiple of the block size 4096/], [-MiB, /chunkSize -1048576 is not a positive multiple/],
  [1000, /chunkSize 1000 is not a positive multiple/], [4096 * 3 + 1, /chunkSize 12289/], [32 * MiB, /chunkSize 33554432 exceeds the largest record, 16777216/],
  [E53, whole], [1.5, whole], ['1M', /field chunkSize must be a whole number/]] as const) {
  test(`chunkSize ${JSON.stringify(v)}`, badStart, S({ chunkSize: v }), REMOTE, words);
}
for (const [v, words] of [['abc', /field seed is not a decimal u64/], ['18446744073709551616', /seed is not a decimal u64/], ['-1', /seed/], ['', /seed/], [5, /field seed must be a string/]] as const) {
  test(`seed ${JSON.stringify(v)}`, badStart, S({ seed: v }), REMOTE, words);
}
for (const [v, words] of [[-1, /field compareSize -1 is negative/], [1.5, whole], [E53, whole], [2 ** 60, whole], ['1', /field compareSize must be/], [MiB + 4096, /compareSize 1052672 exceeds resultSize 1048576/]] as const) {
  test(`compareSize ${JSON.stringify(v)}`, badStart, S({ compareSize: v }), REMOTE, words);
}
for (const [v, words] of [[-1, /field compareSize 1048576 exceeds resultSize -1|field resultSize -1 is negative/], [1.5, whole], [E53, whole], [MiB - 4096, /resultSize 1044480 is below the target's 1048576 bytes \(a target is never shrunk\)/]] as const) {
  test(`resultSize ${JSON.stringify(v)}`, badStart, S({ resultSize: v, ...(typeof v === 'number' && Number.isSafeInteger(v) ? { compareSize: Math.max(0, v) } : {}) }), REMOTE, words);
}
for (const k of ['recordsToPeer', 'compress', 'verify']) test(`${k} "yes"`, badStart, S({ [k]: 'yes' }), REMOTE, new RegExp(`field ${k} must be a boolean`));
for (const [v, words] of [['x', /field ranges is not an array/], [[[0, 0]], /entry 0 is empty/], [[[5, 1], [1, 1]], /not sorted and disjoint/], [[[250, 10]], /ends at block 260, past the compared 256 blocks/], [[[0, 1.5]], /entry 0 is not \[first, count\]/]] as const) {
  test(`ranges ${JSON.stringify(v)}`, badStart, S({ ranges: v }), REMOTE, words);
}
for (const [v, ranges, words] of [[[[1, 1]], undefined, /field sample needs ranges/], [[[1, 2]], [[2, 1]], /field sample shares blocks with the ranges/], [[[9, 1], [3, 1]], [[0, 1]], /field sample entry 1 starts at block 3/]] as const) {
  test(`sample ${JSON.stringify(v)} with ranges ${JSON.stringify(ranges)}`, badStart, S({ sample: v, ...(ranges ? { ranges } : {}) }), REMOTE, words);
}
// a frame of many tiny arrays (their parse would cost ~70 MiB): refused by counting, before JSON.parse
const manyRanges = (n: number) => Array.from({ length: n }, (_, i) => [i * 2, 1]);
test('ranges: 400000 entries (over the JSON node bound)', badStart, S({ ranges: manyRanges(400_000) }), REMOTE, /malformed START message: more than \d+ arrays and objects/);
test('sample: 400000 entries (over the JSON node bound)', badStart, S({ ranges: [[0, 1]], sample: manyRanges(400_000) }), REMOTE, /malformed START message: more than \d+ arrays and objects/);
test('compareSize beyond a source', badStart, S({ compareSize: 2 * MiB, resultSize: 2 * MiB }), REMOTE, /compareSize 2097152 exceeds the source's 1048576 bytes/, 'source', false);
test('growth not covered by compareSize', badStart, S({ resultSize: 2 * MiB }), REMOTE, /field compareSize 1048576 must equal resultSize 2097152 when the target grows/);
test('growth to 10 TiB (beyond its file system)', badStart, S({ compareSize: 10 * 2 ** 40, resultSize: 10 * 2 ** 40 }), ExitCode.SIZE_MISMATCH, /cannot grow to resultSize 10995116277760: that is more than its whole file system/);

test('a dry run (write false) past the end of a file target compares zeros and never grows it', async (t) => {
  const dst = target();
  const before = state(dst);
  const r = await session([json(Msg.HELLO, hello(dst, { write: false })), json(Msg.START, S({ compareSize: 2 * MiB, resultSize: 2 * MiB }))]);
  t.true(r.frames.some((f) => f.type === Msg.READY), r.error?.message);
  t.is(r.code, REMOTE, 'the client went away before DONE');
  t.deepEqual(state(dst), before);
});

test('a session that grew its target and then failed truncates it back', async (t) => {
  const dst = target();
  const before = state(dst);
  const r = await session([json(Msg.HELLO, hello(dst)), json(Msg.START, S({ compareSize: 3 * MiB, resultSize: 3 * MiB }))]);
  t.true(r.frames.some((f) => f.type === Msg.READY), r.error?.message);
  t.is(r.code, REMOTE);
  t.regex(r.error?.message ?? '', /closed the connection before the end of the sync/);
  t.deepEqual(state(dst), before, 'size and content as before the session');
});

// ---- through `blkdelta server` over a pipe: the rows that used to hang, grow or crash ----

test('blkdelta server: START chunkSize 0 then EOF exits 9 (it used to loop forever)', async (t) => {
  const dst = target();
  const before = state(dst);
  const r = await server([json(Msg.HELLO, hello(dst)), json(Msg.START, S({ chunkSize: 0 }))]);
  t.is(r.code, REMOTE, r.stderr);
  t.regex(r.stderr, /malformed START: field chunkSize 0 is not a positive multiple/);
  t.deepEqual(state(dst), before);
});

test('blkdelta server: HELLO null and not JSON exit 9, not 1', async (t) => {
  for (const body of ['null', 'not json']) {
    const r = await server([frame(Msg.HELLO, body)]);
    t.is(r.code, REMOTE, r.stderr);
    t.regex(r.stderr, /malformed HELLO: not (a JSON object|JSON)/);
    t.notRegex(r.stderr, /internal error/);
  }
});

test('blkdelta server: resultSize 10 TiB on a 1 MiB file is refused and the file keeps its size', async (t) => {
  const dst = target();
  const before = state(dst);
  const r = await server([json(Msg.HELLO, hello(dst)), json(Msg.START, S({ compareSize: 10 * 2 ** 40, resultSize: 10 * 2 ** 40 }))]);
  t.is(r.code, ExitCode.SIZE_MISMATCH, r.stderr);
  t.deepEqual(state(dst), before);
});

// ---- the allow list on resolved paths, read-only files, empty globs ----

function allowedDir() {
  const root = ws.fresh('srv');
  const allowed = `${root}/allowed`, outside = `${root}/outside`;
  mkdirSync(allowed, { recursive: true });
  mkdirSync(outside);
  return { allowed, outside, args: ['--allow', `${allowed}/*`], policy: makePolicy([`${allowed}/*`], false) };
}

test('blkdelta server: a symlink in an allowed directory pointing outside it is refused (exit 12), the file outside untouched', async (t) => {
  const d = allowedDir();
  const victim = `${d.outside}/victim.img`;
  randomFile(victim, MiB);
  const before = state(victim);
  symlinkSync(victim, `${d.allowed}/escape.img`);
  const r = await server([json(Msg.HELLO, hello(`${d.allowed}/escape.img`)), json(Msg.START, S({}))], d.args);
  t.is(r.code, ExitCode.PERMISSION, r.stderr);
  t.regex(r.stderr, new RegExp(`device ${esc(d.allowed)}/escape.img \\(it resolves to ${esc(victim)}\\) is outside the server's --allow list`));
  t.deepEqual(state(victim), before);
});

test('allow list: a symlink that stays inside the allowed directory is followed', async (t) => {
  const d = allowedDir();
  randomFile(`${d.allowed}/real.img`, MiB);
  symlinkSync(`${d.allowed}/real.img`, `${d.allowed}/link.img`);
  const r = await session([json(Msg.HELLO, hello(`${d.allowed}/link.img`))], d.policy);
  t.true(r.frames.some((f) => f.type === Msg.WELCOME), r.error?.message);
});

test('allow list: a symlink to a missing file outside is refused as outside, not as missing', async (t) => {
  const d = allowedDir();
  symlinkSync(`${d.outside}/nothing.img`, `${d.allowed}/dangling.img`);
  const r = await session([json(Msg.HELLO, hello(`${d.allowed}/dangling.img`))], d.policy);
  t.is(r.code, ExitCode.PERMISSION, r.error?.message);
  t.regex(r.error?.message ?? '', /is outside the server's --allow list/);
});

test('blkdelta server: a chmod 444 file in an allowed directory is refused for writing (exit 5), readable for a dry run', async (t) => {
  const d = allowedDir();
  const p = `${d.allowed}/ro.img`;
  randomFile(p, MiB);
  chmodSync(p, 0o444);
  const before = state(p);
  const r = await server([json(Msg.HELLO, hello(p)), json(Msg.START, S({}))], d.args);
  t.is(r.code, ExitCode.TARGET_REFUSED, r.stderr);
  t.regex(r.stderr, new RegExp(`target ${esc(p)} refused: the file has no write permission bits \\(mode 0444\\)`));
  t.deepEqual(state(p), before);
  const dry = await session([json(Msg.HELLO, hello(p, { write: false }))], d.policy);
  t.true(dry.frames.some((f) => f.type === Msg.WELCOME), dry.error?.message);
});

for (const args of [['--allow='], ['--allow', ''], ['--allow', '/dev/backup/*', '']]) {
  test(`blkdelta server ${args.map((a) => JSON.stringify(a)).join(' ')} is a usage error (exit 2), never an open server`, async (t) => {
    const r = await blkdelta('server', ...args);
    t.is(r.exitCode, ExitCode.USAGE, r.stderr);
    t.regex(r.stderr, /empty (--allow )?glob.*\(it never means "everything"\)/);
  });
}
