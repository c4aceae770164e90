// Incremental pulls (the server keeps the base, the client the record): every new field of HELLO,
// WELCOME, ROTATE and BASE refused when malformed, as tables (pure functions), the server's
// refusals in-process before anything is created, and the real CLI refused by a server whose
// policy has no [server.source_snapshot] (exit 12, target and state dir untouched). The LVM part
// runs in the VM lane (test/vm/incremental-scenarios.sh, scenario pulled).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { BlkError, ExitCode } from '../src/errors.js';
import { incrementalOf, newBaseOf } from '../src/engine/pull-incremental.js';
import { CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Hello } from '../src/proto/messages.js';
import { FrameReader, Msg, encodeFrameHeader, type Frame, type MsgType } from '../src/proto/wire.js';
import { MAX_PASSES, incrementalAsk, incrementalInfo, rotateStep, sessionStep } from '../src/server/incremental.js';
import { serve } from '../src/server/session.js';
import { DEFAULT_SOURCE_SNAPSHOT } from '../src/server/snapshots.js';
import { parseServerConfig } from '../src/server/config.js';
import { BIN, runBlkdelta } from './helpers/jobs.js';

const UUID = 'aB3dE5-fG7h-iJ9k-lM1n-oP3q-rS5t-uV7wX9';
const BASE = { name: 'data-blkdelta-base-j1-20260101T000000Z', uuid: UUID, thinId: 7 };

// ---- HELLO.incremental, checked by the server ----

type H = Pick<Hello, 'role' | 'sourceSnapshot' | 'incremental'>;
const hello = (inc: unknown, o: Record<string, unknown> = {}): H => ({ role: 'source', sourceSnapshot: { job: 'j1' }, incremental: inc, ...o }) as H;

test('incrementalAsk: a valid request, with and without a base', (t) => {
  t.deepEqual(incrementalAsk(hello({ base: BASE, delta: true, blockSize: 4096 })), { named: BASE, delta: true, blockSize: 4096 });
  t.deepEqual(incrementalAsk(hello({ base: null, delta: false, blockSize: 65536, extra: 1 })), { named: null, delta: false, blockSize: 65536 });
});

const askRefused = test.macro({
  exec(t: ExecutionContext, h: H, words: string) {
    const err = t.throws(() => incrementalAsk(h), { instanceOf: BlkError });
    t.is(err?.code as number, ExitCode.REMOTE, err?.message);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (title) => `incrementalAsk refuses ${title} (exit 9)`,
});
const ok = { base: BASE, delta: true, blockSize: 4096 };
test('incremental null', askRefused, hello(null), 'field incremental must be an object');
test('incremental an array', askRefused, hello([]), 'field incremental must be an object');
test('incremental a string', askRefused, hello('yes'), 'field incremental must be an object');
test('no sourceSnapshot', askRefused, hello(ok, { sourceSnapshot: undefined }), 'needs role source and sourceSnapshot');
test('role target', askRefused, hello(ok, { role: 'target' }), 'needs role source and sourceSnapshot');
test('delta missing', askRefused, hello({ ...ok, delta: undefined }), 'incremental.delta must be a boolean');
test('delta a string', askRefused, hello({ ...ok, delta: 'true' }), 'incremental.delta must be a boolean');
test('blockSize a string', askRefused, hello({ ...ok, blockSize: '4096' }), 'incremental.blockSize must be a number');
test('blockSize 3000', askRefused, hello({ ...ok, blockSize: 3000 }), 'blockSize 3000 is not a power of two');
test('blockSize 256', askRefused, hello({ ...ok, blockSize: 256 }), 'blockSize 256 is not a power of two');
test('blockSize 2^30', askRefused, hello({ ...ok, blockSize: 2 ** 30 }), 'is not a power of two');
test('base missing', askRefused, hello({ ...ok, base: undefined }), 'incremental.base must be null or {name, uuid, thinId}');
test('base a string', askRefused, hello({ ...ok, base: 'data' }), 'incremental.base must be null or');
test('base an array', askRefused, hello({ ...ok, base: [] }), 'incremental.base must be null or');
test('base.name a number', askRefused, hello({ ...ok, base: { ...BASE, name: 1 } }), 'incremental.base.name must be a string');
test('base.name empty', askRefused, hello({ ...ok, base: { ...BASE, name: '' } }), 'incremental.base.name:');
test('base.name with a slash (another VG)', askRefused, hello({ ...ok, base: { ...BASE, name: 'vg1/data' } }), 'incremental.base.name:');
test('base.name an option (-ff)', askRefused, hello({ ...ok, base: { ...BASE, name: '-ff' } }), 'incremental.base.name:');
test('base.name with a space', askRefused, hello({ ...ok, base: { ...BASE, name: 'a b' } }), 'incremental.base.name:');
test('base.name with a NUL', askRefused, hello({ ...ok, base: { ...BASE, name: 'a\0b' } }), 'incremental.base.name:');
test('base.name of 200 characters', askRefused, hello({ ...ok, base: { ...BASE, name: 'a'.repeat(200) } }), 'incremental.base.name:');
test('base.uuid missing', askRefused, hello({ ...ok, base: { ...BASE, uuid: undefined } }), 'incremental.base.uuid must be an LVM uuid');
test('base.uuid malformed', askRefused, hello({ ...ok, base: { ...BASE, uuid: 'x; rm -rf /' } }), 'incremental.base.uuid must be an LVM uuid');
test('base.thinId negative', askRefused, hello({ ...ok, base: { ...BASE, thinId: -1 } }), 'incremental.base.thinId must be a whole number');
test('base.thinId a fraction', askRefused, hello({ ...ok, base: { ...BASE, thinId: 1.5 } }), 'incremental.base.thinId must be a whole number');
test('base.thinId over 24 bits', askRefused, hello({ ...ok, base: { ...BASE, thinId: 2 ** 24 } }), 'incremental.base.thinId must be a whole number');
test('base.thinId a string', askRefused, hello({ ...ok, base: { ...BASE, thinId: '7' } }), 'incremental.base.thinId must be a whole number');

// ---- ROTATE, checked by the server against what came before ----

const rot = (body: unknown): Frame => ({ type: Msg.ROTATE, payload: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)) });
test('rotateStep: make after a pass, drop after make', (t) => {
  t.is(rotateStep(rot({ step: 'make' }), { passes: 2, made: false }), 'make');
  t.is(rotateStep(rot({ step: 'drop' }), { passes: 2, made: true }), 'drop');
  t.is(MAX_PASSES, 4);
});
const rotRefused = test.macro({
  exec(t: ExecutionContext, f: Frame, state: { passes: number; made: boolean }, words: string) {
    const err = t.throws(() => rotateStep(f, state), { instanceOf: BlkError });
    t.is(err?.code as number, ExitCode.REMOTE, err?.message);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (title) => `rotateStep refuses ${title} (exit 9)`,
});
test('not JSON', rotRefused, rot('{'), { passes: 1, made: false }, 'malformed ROTATE: not JSON');
test('an array', rotRefused, rot([]), { passes: 1, made: false }, 'not a JSON object');
test('step missing', rotRefused, rot({}), { passes: 1, made: false }, 'field step must be "make" or "drop"');
test('step "remove"', rotRefused, rot({ step: 'remove' }), { passes: 1, made: false }, 'field step must be "make" or "drop"');
test('a huge frame', rotRefused, rot({ step: 'make', pad: 'x'.repeat(2000) }), { passes: 1, made: false }, 'exceeds the limit');
test('make before any pass', rotRefused, rot({ step: 'make' }), { passes: 0, made: false }, 'ROTATE make before any pass');
test('make twice', rotRefused, rot({ step: 'make' }), { passes: 2, made: true }, 'ROTATE make twice');
test('drop before make', rotRefused, rot({ step: 'drop' }), { passes: 2, made: false }, 'ROTATE drop before ROTATE make');

const frameOf = (type: number, body: unknown = {}): Frame => ({ type: type as MsgType, payload: Buffer.from(JSON.stringify(body)) });
test('sessionStep: passes up to MAX_PASSES, then make, then drop', (t) => {
  const state = { passes: 0, made: false };
  for (let i = 0; i < MAX_PASSES; i++) t.is(sessionStep(frameOf(Msg.START), state), 'start');
  t.is(state.passes, MAX_PASSES);
  t.is(sessionStep(rot({ step: 'make' }), state), 'make');
});
const stepRefused = test.macro({
  exec(t: ExecutionContext, f: Frame, state: { passes: number; made: boolean }, words: string) {
    const err = t.throws(() => sessionStep(f, { ...state }), { instanceOf: BlkError });
    t.is(err?.code as number, ExitCode.REMOTE, err?.message);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (title) => `an incremental session refuses ${title} (exit 9)`,
});
test(`a pass beyond ${MAX_PASSES}`, stepRefused, frameOf(Msg.START), { passes: MAX_PASSES, made: false }, `more than ${MAX_PASSES} passes in one incremental session`);
test('a START after ROTATE make', stepRefused, frameOf(Msg.START), { passes: 1, made: true }, 'START after ROTATE make');
test('HASHES instead of START', stepRefused, frameOf(Msg.HASHES), { passes: 0, made: false }, 'HASHES in an incremental session (expected START, ROTATE or the end)');
test('a second HELLO', stepRefused, frameOf(Msg.HELLO), { passes: 1, made: false }, 'HELLO in an incremental session');
test('BASE from the client', stepRefused, frameOf(Msg.BASE), { passes: 1, made: true }, 'BASE in an incremental session');
test('a ROTATE drop first', stepRefused, rot({ step: 'drop' }), { passes: 0, made: false }, 'ROTATE drop before ROTATE make');

// ---- WELCOME.incremental and BASE, checked by the client ----

const caps = [...CAPS];
const welcome = (inc: unknown, size = 1 << 20, c: string[] = caps) => ({ caps: c, size, incremental: inc }) as never;

test('incrementalOf: a server\'s findings as the run uses them; an old server: full compare, saying why', (t) => {
  const d = incrementalInfo({ thin: true, size: 1 << 20, ranges: [[0, 2], [10, 1]], removedBases: ['b1'] });
  t.deepEqual(incrementalOf(welcome(d), 4096, 'ssh h'), { thin: true, size: 1 << 20, ranges: [[0, 2], [10, 1]], removedBases: ['b1'] });
  t.deepEqual(incrementalOf(welcome({ thin: false, reason: 'source vg0/x is not a thin LV', removedBases: [] }), 4096, 'ssh h'),
    { thin: false, size: 1 << 20, reason: 'source vg0/x is not a thin LV', removedBases: [] });
  const old = incrementalOf(welcome(undefined, 1 << 20, caps.filter((c) => c !== 'incremental')), 4096, 'ssh backup@h:22');
  t.false(old.thin);
  t.regex(old.reason!, /^ssh backup@h:22 is an older blkdelta server without the incremental capability/);
  t.is(incrementalOf(welcome({ thin: true, reason: 'a\u001b[31mb', removedBases: [] }), 4096, 'h').reason, 'a\\x1b[31mb', 'control characters escaped');
});

const welcomeRefused = test.macro({
  exec(t: ExecutionContext, inc: unknown, words: string) {
    const err = t.throws(() => incrementalOf(welcome(inc), 4096, 'ssh h'), { instanceOf: BlkError });
    t.is(err?.code as number, ExitCode.REMOTE, err?.message);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (title) => `incrementalOf refuses a WELCOME with ${title} (exit 9)`,
});
const good = { thin: true, removedBases: [] };
test('no incremental field', welcomeRefused, undefined, 'field incremental must be an object');
test('incremental null', welcomeRefused, null, 'field incremental must be an object');
test('thin missing', welcomeRefused, { removedBases: [] }, 'incremental.thin must be a boolean');
test('removedBases missing', welcomeRefused, { thin: true }, 'incremental.removedBases must be a list');
test('removedBases of numbers', welcomeRefused, { ...good, removedBases: [1] }, 'incremental.removedBases must be a list');
test('65 removedBases', welcomeRefused, { ...good, removedBases: Array(65).fill('b') }, 'incremental.removedBases must be a list');
test('reason a number', welcomeRefused, { ...good, reason: 3 }, 'incremental.reason must be a string');
test('dropped an object', welcomeRefused, { ...good, dropped: {} }, 'incremental.dropped must be a string');
test('ranges not a list', welcomeRefused, { ...good, ranges: 'all' }, 'incremental.ranges:');
test('ranges past the source (256 blocks)', welcomeRefused, { ...good, ranges: [[250, 10]] }, 'incremental.ranges:');
test('ranges overlapping', welcomeRefused, { ...good, ranges: [[0, 5], [3, 2]] }, 'incremental.ranges:');
test('ranges negative', welcomeRefused, { ...good, ranges: [[-1, 2]] }, 'incremental.ranges:');
test('not thin without a reason', welcomeRefused, { thin: false, removedBases: [] }, 'incremental.reason is missing');

test('newBaseOf: the new base, checked', (t) => {
  t.deepEqual(newBaseOf({ base: BASE, pinnedBytes: 65536 }, 'h'), { base: BASE, pinnedBytes: 65536 });
  t.deepEqual(newBaseOf({ base: BASE }, 'h'), { base: BASE });
});
const baseRefused = test.macro({
  exec(t: ExecutionContext, body: unknown, words: string) {
    const err = t.throws(() => newBaseOf(body, 'ssh h'), { instanceOf: BlkError });
    t.is(err?.code as number, ExitCode.REMOTE, err?.message);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (title) => `newBaseOf refuses a BASE with ${title} (exit 9)`,
});
test('null', baseRefused, null, 'not an object');
test('no base', baseRefused, {}, 'field base must be');
test('a name with a slash', baseRefused, { base: { ...BASE, name: '../etc' } }, 'field base.name must be an LV name');
test('a name of 300 characters', baseRefused, { base: { ...BASE, name: 'a'.repeat(300) } }, 'field base.name must be an LV name');
test('a uuid with a newline', baseRefused, { base: { ...BASE, uuid: 'a\nb' } }, 'field base.uuid must be an LVM uuid');
test('a thinId of -1', baseRefused, { base: { ...BASE, thinId: -1 } }, 'field base.thinId must be a whole number');
test('pinnedBytes a string', baseRefused, { base: BASE, pinnedBytes: '1' }, 'field pinnedBytes must be a whole number');

// ---- the server in-process: refusals before anything is created ----

const frame = (type: number, body: unknown): Buffer => {
  const p = Buffer.from(JSON.stringify(body));
  return Buffer.concat([encodeFrameHeader(type as MsgType, p.length), p]);
};
async function session(h: Record<string, unknown>, sourceSnapshot: boolean | object = true): Promise<{ code: number; error?: { code: number; message: string } }> {
  const inp = new PassThrough(), out = new PassThrough();
  const reader = new FrameReader(out);
  const frames: Frame[] = [];
  const read = (async () => { for (let f = await reader.next(); f; f = await reader.next()) frames.push({ type: f.type, payload: Buffer.from(f.payload) }); })();
  inp.end(frame(Msg.HELLO, { magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps, role: 'source', path: '/dev/blkdelta-test-novg/data', write: false, ...h }));
  const policy = typeof sourceSnapshot === 'object' ? sourceSnapshot : sourceSnapshot ? DEFAULT_SOURCE_SNAPSHOT : undefined;
  const code = await serve(inp, out, { config: { allow: [], readOnly: false, ...(policy ? { sourceSnapshot: policy } : {}) } as never });
  await read;
  const e = frames.find((f) => f.type === Msg.ERROR);
  return { code, ...(e ? { error: JSON.parse(e.payload.toString()) as { code: number; message: string } } : {}) };
}

test('server: an incremental pull without a [server.source_snapshot] policy is refused (exit 12) before anything is made', async (t) => {
  const r = await session({ sourceSnapshot: { job: 'j1' }, incremental: ok }, false);
  t.is(r.code, ExitCode.PERMISSION);
  t.is(r.error?.code, ExitCode.PERMISSION);
  t.regex(r.error!.message, /refused by the server: it has no \[server.source_snapshot\] policy/);
});
test('server: [server.source_snapshot] incremental = false refuses an incremental pull (exit 12) before anything is made', async (t) => {
  const cfg = parseServerConfig('[server]\nallow = ["/dev/*"]\n[server.source_snapshot]\nincremental = false\n', 's.toml');
  t.is(cfg.sourceSnapshot?.incremental, false);
  t.is(parseServerConfig('[server]\nallow = ["/dev/*"]\n[server.source_snapshot]\n', 's.toml').sourceSnapshot?.incremental, undefined, 'default: allowed');
  const r = await session({ sourceSnapshot: { job: 'j1' }, incremental: ok }, cfg.sourceSnapshot!);
  t.is(r.code, ExitCode.PERMISSION);
  t.regex(r.error!.message, /refused by the server: its \[server.source_snapshot\] policy has incremental = false, so it keeps no base of blkdelta-test-novg\/data/);
  const plain = await session({ sourceSnapshot: { job: 'j1' } }, cfg.sourceSnapshot!);
  t.notRegex(plain.error?.message ?? '', /incremental = false/, 'a plain pull is not refused for it');
  t.throws(() => parseServerConfig('[server]\nallow = ["/dev/*"]\n[server.source_snapshot]\nincremental = "no"\n', 's.toml'), { message: /server.source_snapshot.incremental/ });
});

test('server: a malformed HELLO.incremental is refused (exit 9) before any LVM command', async (t) => {
  const r = await session({ sourceSnapshot: { job: 'j1' }, incremental: { ...ok, base: { ...BASE, name: '--yes' } } });
  t.is(r.code, ExitCode.REMOTE);
  t.regex(r.error!.message, /malformed HELLO: field incremental\.base\.name/);
});
test('server: HELLO.incremental without sourceSnapshot is refused (exit 9)', async (t) => {
  const r = await session({ incremental: ok });
  t.is(r.code, ExitCode.REMOTE);
  t.regex(r.error!.message, /field incremental needs role source and sourceSnapshot/);
});

// ---- the real CLI through a real server (--rsh runs it here) ----

test('sync --incremental pulling from a server without [server.source_snapshot]: exit 12, target and state dir untouched', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-pullinc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dst = join(dir, 'dst.img'), state = join(dir, 'state');
  const content = randomBytes(256 * 1024);
  writeFileSync(dst, content);
  const r = await runBlkdelta(['sync', '--no-progress', '--incremental', '--state-dir', state, '--rsh', `sh -c 'shift 2; exec sh -c "$1 --allow /dev/vg0/*"' rsh`,
    '--remote-cmd', `${process.execPath} ${BIN}`, '--snapshot', 'localhost:vg0/data', dst]);
  t.is(r.code, ExitCode.PERMISSION, r.stderr);
  t.regex(r.stderr, /refused by the server: it has no \[server.source_snapshot\] policy, so a pull cannot snapshot \/dev\/vg0\/data here/);
  t.true(readFileSync(dst).equals(content), 'the target is untouched');
  t.true(!existsSync(state) || readdirSync(state).length === 0, 'no base record written');
});

test('a client that goes away mid-session: the server\'s write fails with EPIPE and it ends through its cleanup, not an unhandled error', async (t) => {
  const { spawn } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-epipe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'src.img');
  writeFileSync(src, randomBytes(1 << 20));
  const child = spawn(process.execPath, [BIN, 'server'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.on('error', () => { /* the server may be gone */ });
  const reader = new FrameReader(child.stdout);
  child.stdin.write(frame(Msg.HELLO, { magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps, role: 'source', path: src, write: false }));
  t.is((await reader.next())?.type, Msg.WELCOME);
  child.stdout.destroy(); // the client's end of the server's output is gone: the next write fails
  child.stdin.write(frame(Msg.START, { blockSize: 4096, seed: '1', compareSize: 1 << 20, resultSize: 1 << 20, chunkSize: 1 << 20, recordsToPeer: false, compress: true, verify: false }));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  // the client's input ends once the server has seen its write fail (or has exited), however loaded the machine
  for (let i = 0; i < 1200 && child.exitCode === null && !/EPIPE/.test(stderr); i++) await new Promise((r) => setTimeout(r, 50));
  child.stdin.end();
  const code = await exited;
  t.notRegex(stderr, /Unhandled 'error' event|internal error/, stderr);
  t.regex(stderr, /EPIPE/, 'the failed write ended the session');
  t.not(code, null);
});
