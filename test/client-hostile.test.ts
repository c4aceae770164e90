// A hostile or broken server against the client: every field of WELCOME, one row each. The pure
// checks (checkWelcome, welcomeMountedRw, welcomeLabelSeed, historyCopyOf) as table rows; then
// the CLI pulling from a stand-in server (over --rsh) that answers HELLO with a crafted WELCOME:
// exit 9 (REMOTE) naming the field, and the local target unchanged.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { writeFileSync } from 'node:fs';
import { BlkError, ExitCode } from '../src/errors.js';
import { CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, checkWelcome, historyCopyOf, welcomeLabelSeed, welcomeMountedRw, type Welcome } from '../src/proto/messages.js';
import { Workspace, randomFile, sha256 } from './helpers/engine-fixture.js';
import { MAX_JSON_NODES, Msg, checkJsonNodes } from '../src/proto/wire.js';
import { runBlkdelta } from './helpers/jobs.js';

const ws = new Workspace('blkdelta-client-hostile-');
test.after.always(() => ws.cleanup());

const good = (): Record<string, unknown> => ({ magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], kind: 'file', size: 65536 });
const W = (mutate: (w: Record<string, unknown>) => unknown) => mutate(good());

// ---- checkWelcome: the fields every session uses ----

const badWelcome = test.macro({
  exec(t: ExecutionContext, w: unknown, want: RegExp) {
    const err = t.throws(() => checkWelcome('peer', w), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.REMOTE);
    t.regex(err!.message, want);
  },
  title: (title) => `WELCOME refused: ${title}`,
});
test('not an object', badWelcome, null, /malformed WELCOME: not a JSON object/);
test('an array', badWelcome, [1], /malformed WELCOME: not a JSON object/);
test('magic wrong', badWelcome, W((w) => ({ ...w, magic: 'RSYNC' })), /peer: the other end is not blkdelta \(bad magic\)/);
test('magic missing', badWelcome, W((w) => ({ ...w, magic: undefined })), /bad magic/);
test('version 2', badWelcome, W((w) => ({ ...w, version: 2 })), /protocol version 2 is not supported/);
test('version "1"', badWelcome, W((w) => ({ ...w, version: '1' })), /protocol version 1 is not supported/);
test('kind missing', badWelcome, W((w) => ({ ...w, kind: undefined })), /malformed WELCOME: field kind must be a string/);
test('kind unknown', badWelcome, W((w) => ({ ...w, kind: 'tape' })), /peer: malformed WELCOME: field kind must be "file" or "block", got "tape"/);
test('kind with escapes', badWelcome, W((w) => ({ ...w, kind: '\x1b[2J' })), /got "\\u001b\[2J"/);
test('size missing', badWelcome, W((w) => ({ ...w, size: undefined })), /field size must be a whole number/);
test('size a string', badWelcome, W((w) => ({ ...w, size: '65536' })), /field size must be a whole number/);
test('size fractional', badWelcome, W((w) => ({ ...w, size: 1.5 })), /field size must be a whole number/);
test('size 2^53', badWelcome, W((w) => ({ ...w, size: 2 ** 53 })), /field size must be a whole number of magnitude below 2\^53/);
test('size negative', badWelcome, W((w) => ({ ...w, size: -4096 })), /field size must be a whole number of bytes >= 0, got -4096/);
test('caps missing', badWelcome, W((w) => ({ ...w, caps: undefined })), /field caps must be a list/);
test('caps a string', badWelcome, W((w) => ({ ...w, caps: 'lz4' })), /field caps must be a list/);
test('caps with a number', badWelcome, W((w) => ({ ...w, caps: ['lz4', 7] })), /field caps must be a list of at most 64 strings/);
test('caps 65 entries', badWelcome, W((w) => ({ ...w, caps: Array(65).fill('x') })), /at most 64 strings/);
test('caps a huge string', badWelcome, W((w) => ({ ...w, caps: ['x'.repeat(65)] })), /of at most 64 characters/);

test('WELCOME accepted: file and block, size 0, no caps', (t) => {
  for (const w of [good(), { ...good(), kind: 'block' }, { ...good(), size: 0 }, { ...good(), caps: [] }]) t.notThrows(() => checkWelcome('peer', w));
});

// ---- mountedRw: shown to the operator, never trusted ----

const mounted = test.macro({
  exec(t: ExecutionContext, at: unknown, want: string[] | undefined) {
    t.deepEqual(welcomeMountedRw(at), want);
  },
  title: (title) => `WELCOME.mountedRw: ${title}`,
});
test('absent', mounted, undefined, undefined);
test('not a list', mounted, '/srv', undefined);
test('an object', mounted, { 0: '/srv' }, undefined);
test('empty', mounted, [], undefined);
test('one mount', mounted, ['/srv'], ['/srv']);
test('numbers become text', mounted, [5], ['5']);
test('escape sequences are shown, not sent to the terminal', mounted, ['/srv\x1b[2J\n'], ['/srv\\x1b[2J\\n']);
test('more than 16: the first 16', mounted, Array.from({ length: 40 }, (_, i) => `/m${i}`), Array.from({ length: 16 }, (_, i) => `/m${i}`));
test('a huge mount point: 4096 characters', mounted, ['/' + 'a'.repeat(100_000)], ['/' + 'a'.repeat(4095)]);

// ---- labelSeed: used only when asked for, of this block size, a decimal u64 ----

const seed = test.macro({
  exec(t: ExecutionContext, asked: boolean, l: unknown, want: string | undefined) {
    t.is(welcomeLabelSeed(asked, l, 4096), want);
  },
  title: (title) => `WELCOME.labelSeed: ${title}`,
});
test('good', seed, true, { seed: '123', blockSize: 4096 }, '123');
test('2^64 - 1', seed, true, { seed: '18446744073709551615', blockSize: 4096 }, '18446744073709551615');
test('not asked for (no policy snapshot)', seed, false, { seed: '123', blockSize: 4096 }, undefined);
test('absent', seed, true, undefined, undefined);
test('null', seed, true, null, undefined);
test('a string', seed, true, '123', undefined);
test('another block size', seed, true, { seed: '123', blockSize: 65536 }, undefined);
test('block size a string', seed, true, { seed: '123', blockSize: '4096' }, undefined);
test('seed a number', seed, true, { seed: 123, blockSize: 4096 }, undefined);
test('seed 2^64', seed, true, { seed: '18446744073709551616', blockSize: 4096 }, undefined);
test('seed negative', seed, true, { seed: '-1', blockSize: 4096 }, undefined);
test('seed hex', seed, true, { seed: '0x10', blockSize: 4096 }, undefined);
test('seed of 21 digits', seed, true, { seed: '1'.repeat(21), blockSize: 4096 }, undefined);
test('seed empty', seed, true, { seed: '', blockSize: 4096 }, undefined);

// ---- historyCopy: the kept copy a history read session reads ----

const fp = { algo: 'xxh64x2', seed: '1', blockSize: 4096, size: 65536, digest: 'ab' };
const copy = (c: unknown, caps = [...CAPS]): Welcome => ({ ...good(), caps, historyCopy: c } as unknown as Welcome);
const badCopy = test.macro({
  exec(t: ExecutionContext, w: Welcome, want: RegExp) {
    const err = t.throws(() => historyCopyOf(w, 'peer'), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.REMOTE);
    t.regex(err!.message, want);
  },
  title: (title) => `WELCOME.historyCopy refused: ${title}`,
});
test('no history capability', badCopy, copy({ id: 'c1', lv: 'x', fingerprint: null }, ['lz4']), /the server at peer does not support history/);
test('absent', badCopy, copy(undefined), /malformed WELCOME.historyCopy: not a JSON object/);
test('an array', badCopy, copy(['c1']), /not a JSON object/);
test('id missing', badCopy, copy({ lv: 'x', fingerprint: null }), /WELCOME.historyCopy: field id must be a string/);
test('id a number', badCopy, copy({ id: 1, lv: 'x', fingerprint: null }), /field id must be a string/);
test('lv missing', badCopy, copy({ id: 'c1', fingerprint: null }), /field lv must be a string/);
test('fingerprint missing', badCopy, copy({ id: 'c1', lv: 'x' }), /WELCOME.historyCopy.fingerprint: not a JSON object/);
test('fingerprint a string', badCopy, copy({ id: 'c1', lv: 'x', fingerprint: 'ab' }), /fingerprint: not a JSON object/);
for (const [k, v] of [['algo', 5], ['seed', 1], ['blockSize', '4096'], ['size', -0.5], ['digest', null]] as const) {
  test(`fingerprint.${k} = ${JSON.stringify(v)}`, badCopy, copy({ id: 'c1', lv: 'x', fingerprint: { ...fp, [k]: v } }), new RegExp(`WELCOME.historyCopy.fingerprint: field ${k} must be`));
}
test('WELCOME.historyCopy: id and lv with escapes are made printable', (t) => {
  const c = historyCopyOf(copy({ id: 'c1\x1b[2J', lv: 'x\n', fingerprint: null }), 'peer');
  t.deepEqual(c, { id: 'c1\\x1b[2J', lv: 'x\\n', fingerprint: null });
});

// ---- the CLI against a stand-in server that sends a crafted WELCOME ----

/** A server that answers the first HELLO with `welcome` and then waits for its input to end. */
function standIn(welcome: unknown): string {
  const p = ws.fresh('standin.mjs');
  writeFileSync(p, `const body = Buffer.from(${JSON.stringify(JSON.stringify(welcome))});
let sent = false;
process.stdin.on('data', () => {
  if (sent) return;
  sent = true;
  const h = Buffer.alloc(8); h.writeUInt32LE(2, 0); h.writeUInt32LE(body.length, 4);
  process.stdout.write(Buffer.concat([h, body]));
});
process.stdin.on('end', () => process.exit(0));
`);
  return p;
}

const pulled = test.macro({
  async exec(t: ExecutionContext, welcome: unknown, want: RegExp) {
    const dst = ws.fresh('dst.img');
    randomFile(dst, 65536);
    const before = sha256(dst);
    const r = await runBlkdelta(['sync', 'backup@h:/dev/vg0/x', dst, '--rsh', `sh -c 'exec node ${standIn(welcome)}' rsh`]);
    t.is(r.code, ExitCode.REMOTE, r.stderr);
    t.regex(r.stderr, want);
    t.false(/\n\s+at /.test(r.stderr), 'no stack trace');
    t.is(sha256(dst), before, 'the local target is unchanged');
  },
  title: (title) => `a pull from a server whose WELCOME has ${title}: exit 9, target unchanged`,
});
test('a negative size', pulled, W((w) => ({ ...w, size: -65536 })), /malformed WELCOME: field size must be a whole number of bytes >= 0, got -65536/);
test('an unknown kind', pulled, W((w) => ({ ...w, kind: 'tape' })), /malformed WELCOME: field kind must be "file" or "block", got "tape"/);
test('caps not a list', pulled, W((w) => ({ ...w, caps: 'lz4' })), /malformed WELCOME: field caps must be a list/);
test('no magic', pulled, W((w) => ({ ...w, magic: 'SSH-2.0' })), /the other end is not blkdelta \(bad magic\)/);
test('a size beyond 2^53', pulled, W((w) => ({ ...w, size: 1e300 })), /malformed WELCOME: field size must be a whole number of magnitude below 2\^53/);

// ---- any JSON frame: its arrays and objects are counted before it is parsed ----

const nodes = (n: number, open = '[', close = ']') => Buffer.from(`{"x":[${Array.from({ length: n }, () => `${open}${close}`).join(',')}]}`);
const jsonNodes = test.macro({
  exec(t: ExecutionContext, payload: Buffer, ok: boolean) {
    const f = { type: Msg.WELCOME, payload };
    if (ok) t.notThrows(() => checkJsonNodes(f));
    else t.is(t.throws(() => checkJsonNodes(f), { instanceOf: BlkError })?.code, ExitCode.REMOTE);
  },
  title: (title) => `JSON node bound: ${title}`,
});
// the payload opens 2 nodes of its own ({ and the outer [)
test('at the bound', jsonNodes, nodes(MAX_JSON_NODES - 2), true);
test('one array over', jsonNodes, nodes(MAX_JSON_NODES - 1), false);
test('one object over', jsonNodes, nodes(MAX_JSON_NODES - 1, '{', '}'), false);
test('arrays and objects mixed, over', jsonNodes, Buffer.concat([nodes(MAX_JSON_NODES / 2), nodes(MAX_JSON_NODES / 2, '{', '}')]), false);
test('a small frame', jsonNodes, Buffer.from('{"a":[1,2,[3]]}'), true);
test('empty', jsonNodes, Buffer.alloc(0), true);
test('a pull whose WELCOME holds 400000 arrays: exit 9 before it is parsed, target unchanged', pulled,
  W((w) => ({ ...w, incremental: { thin: true, removedBases: [], ranges: Array.from({ length: 400_000 }, (_, i) => [i, 1]) } })), /malformed WELCOME message: more than \d+ arrays and objects/);
