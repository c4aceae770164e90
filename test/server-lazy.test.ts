// The server loads its session on a device (server/device-session.ts, the engine, xxhash) only
// after a HELLO asks for one. Run against a copy of the built tree whose device-session.js is
// gone (an incomplete install): a client that leaves before its first frame and a HELLO refused
// on its face (malformed, or by the policy on the path as sent) get what the full tree gives (so
// neither loads it; the allow list is matched on what the path resolves to, when the device
// opens, so its refusals come after the load), and a HELLO that needs the
// session gets a clean ERROR frame (exit 1, naming the module) with its target untouched.
// Memory: a few frames. The copy (dist/src, ~2 MiB) is removed in the teardown.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { PROTOCOL_MAGIC, PROTOCOL_VERSION } from '../src/proto/messages.js';
import { FrameReader, Msg, encodeFrameHeader, type MsgType } from '../src/proto/wire.js';
import { BIN_PATH } from '../src/transport/local.js';
import { randomFile, sha256 } from './helpers/engine-fixture.js';
import { installWithout } from './helpers/partial-install.js';

const MiB = 1 << 20;

const dir = mkdtempSync(join(tmpdir(), 'blkdelta-lazy-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const BROKEN = installWithout(dir, 'install', ['server/device-session.js']);

const frame = (type: number, body: unknown): Buffer => {
  const p = Buffer.from(JSON.stringify(body));
  return Buffer.concat([encodeFrameHeader(type as MsgType, p.length), p]);
};
const hello = (path: string, extra: Record<string, unknown> = {}) =>
  frame(Msg.HELLO, { magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: ['lz4'], role: 'target', path, write: true, ...extra });

interface Outcome { code: number | null; error?: { code: number; message: string } }

/** `BIN server ARGS` with `input` on its stdin, then EOF: its exit code and its ERROR frame, if any. */
function server(bin: string, input: Buffer[], args: string[] = []): Promise<Outcome> {
  const child = spawn(process.execPath, [bin, 'server', ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
  child.stdin.on('error', () => { /* the server may stop reading early */ });
  child.stdin.end(Buffer.concat(input));
  const reader = new FrameReader(child.stdout);
  const frames = (async () => {
    let error: Outcome['error'];
    for (let f = await reader.next(); f; f = await reader.next()) if (f.type === Msg.ERROR) error = JSON.parse(Buffer.from(f.payload).toString());
    return error;
  })();
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', async (code) => resolve({ code, error: await frames }));
  });
}

const rows: [string, (dst: string) => Buffer[], string[]][] = [
  ['stdin closed before any frame', () => [], []],
  ['a write refused by --read-only', (dst) => [hello(dst)], ['--read-only']],
  ['a relative path', () => [hello('relative.img')], []],
  ['a wrong magic', (dst) => [hello(dst, { magic: 'rsync' })], []],
  ['a target snapshot without [server.target_snapshot]', (dst) => [hello(dst, { policySnapshot: {} })], []],
];
for (const [i, [name, input, args]] of rows.entries()) {
  test(`without device-session.js, as with it: ${name}`, async (t) => {
    const dst = join(dir, `${i}-dst.img`);
    randomFile(dst, MiB);
    const want = await server(BIN_PATH, input(dst), args);
    const got = await server(BROKEN, input(dst), args);
    t.deepEqual(got, want);
    t.not(want.code, ExitCode.INTERNAL);
  });
}

test('a session whose module cannot load: ERROR frame, exit 1, target untouched', async (t) => {
  const dst = join(dir, 'target.img');
  randomFile(dst, MiB);
  const before = sha256(dst);
  const r = await server(BROKEN, [hello(dst)]);
  t.is(r.code, ExitCode.INTERNAL);
  t.is(r.error?.code, ExitCode.INTERNAL);
  t.regex(r.error?.message ?? '', /internal error: the server cannot load its session module: .*device-session\.js.*npm run build/);
  t.is(statSync(dst).size, MiB);
  t.is(sha256(dst), before);
});
