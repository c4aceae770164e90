// `blkdelta history` through the server, everything that needs no LVM (the VM lane's `remote`
// scenario in test/vm/history-scenarios.sh does list, verify, restore and prune on real copies):
//  - raw HELLO.history frames against the server session, one row per malformed field and per
//    policy refusal, with its exit code and words, no WELCOME or HISTORY, the target unchanged;
//    a request the policy lets through reaches lvs (a file is no LV: exit 13);
//  - the client's check of a HISTORY reply (pure), one row per malformed field;
//  - the CLI against an older server (it answers WELCOME): exit 9 "does not support history";
//  - a real sshd: list and verify reach the server through ssh, its read_only and allow hold.
import test from 'ava';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { ExitCode } from '../src/errors.js';
import { checkReply } from '../src/history/remote.js';
import { PROTOCOL_MAGIC, PROTOCOL_VERSION } from '../src/proto/messages.js';
import { FrameReader, Msg, encodeFrameHeader, type Frame, type MsgType } from '../src/proto/wire.js';
import type { ServerConfig } from '../src/server/policy.js';
import { serve } from '../src/server/session.js';
import { lockJob } from '../src/locks/lock.js';
import { Workspace, randomFile, sha256 } from './helpers/engine-fixture.js';
import { runBlkdelta } from './helpers/jobs.js';
import { BLKDELTA_BIN, startSshd } from './helpers/sshd.js';

const ws = new Workspace('blkdelta-history-server-');
test.after.always(() => ws.cleanup());
const KiB = 1024;

const json = (type: number, body: unknown): Buffer => {
  const p = Buffer.from(JSON.stringify(body));
  return Buffer.concat([encodeFrameHeader(type as MsgType, p.length), p]);
};
const hello = (path: string, history: unknown, extra: Record<string, unknown> = {}) =>
  ({ magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: ['lz4', 'history'], role: 'target', path, write: false, history, ...extra });

const TS = { size: '4M', poolMaxFill: 80, retention: { keepLast: 3 } };
const POLICY: ServerConfig = { allow: [`${ws.dir}/*`], readOnly: false, targetSnapshot: TS, stateDir: `${ws.dir}/state` };
const READ_ONLY: ServerConfig = { ...POLICY, readOnly: true };
const NARROW: ServerConfig = { ...POLICY, allow: ['/dev/backup/*'] };
const NO_HISTORY: ServerConfig = { allow: [`${ws.dir}/*`], readOnly: false, stateDir: `${ws.dir}/state` };

async function framesOf(out: PassThrough): Promise<Frame[]> {
  const reader = new FrameReader(out);
  const got: Frame[] = [];
  for (let f = await reader.next(); f; f = await reader.next()) got.push({ type: f.type, payload: Buffer.from(f.payload) });
  return got;
}

/** The server session in-process on one HELLO; returns its exit code, frames and ERROR body. */
async function session(h: unknown, config: ServerConfig) {
  const inp = new PassThrough(), out = new PassThrough();
  const frames = framesOf(out);
  inp.end(json(Msg.HELLO, h));
  const code = await serve(inp, out, { config });
  const got = await frames;
  const e = got.find((f) => f.type === Msg.ERROR);
  return { code, frames: got, error: e ? JSON.parse(e.payload.toString()) as { code: number; message: string } : undefined };
}

const refused = test.macro({
  async exec(t, history: unknown, config: ServerConfig, code: number, words: RegExp, extra: Record<string, unknown> = {}) {
    const dst = ws.fresh('dst.img');
    randomFile(dst, 64 * KiB);
    const before = sha256(dst);
    const r = await session(hello(dst, typeof history === 'function' ? (history as (d: string) => unknown)(dst) : history, extra), config);
    t.is(r.code, code, r.error?.message);
    t.is(r.error?.code, code);
    t.regex(r.error?.message ?? '', words);
    t.false(r.frames.some((f) => f.type === Msg.WELCOME || f.type === Msg.HISTORY), 'no WELCOME, no HISTORY');
    t.is(sha256(dst), before, 'the target is unchanged');
  },
  title: (name) => `HELLO.history ${name}`,
});

const R = ExitCode.REMOTE, P = ExitCode.PERMISSION, S = ExitCode.SNAPSHOT;
const list = { op: 'list', job: 'db' };
// malformed: REMOTE
test('null', refused, null, POLICY, R, /malformed HELLO: field history must be an object/);
test('a string', refused, 'list', POLICY, R, /field history must be an object/);
test('op missing', refused, { job: 'db' }, POLICY, R, /field history\.op must be one of list, verify, prune, restore, read, got undefined/);
test('op "delete"', refused, { op: 'delete', job: 'db' }, POLICY, R, /history\.op must be one of .* got "delete"/);
test('job missing', refused, { op: 'list' }, POLICY, R, /field job must be a string/);
test('job a number', refused, { op: 'list', job: 5 }, POLICY, R, /field job must be a string/);
test('job of 65 bytes', refused, { op: 'list', job: 'j'.repeat(65) }, POLICY, R, /field job is 65 bytes long, more than 64/);
test('job "../etc"', refused, { op: 'list', job: '../etc' }, POLICY, R, /malformed HELLO: history\.job: job name "\.\.\/etc" is invalid/);
test('job "-x"', refused, { op: 'list', job: '-x' }, POLICY, R, /history\.job: job name "-x" is invalid/);
test('job with a newline', refused, { op: 'list', job: 'a\nb' }, POLICY, R, /history\.job: job name "a\nb" is invalid/);
test('id "a/b"', refused, { op: 'verify', job: 'db', id: 'a/b' }, POLICY, R, /history\.id: LV name "a\/b" may only contain/);
test('id ".."', refused, { op: 'verify', job: 'db', id: '..' }, POLICY, R, /history\.id: LV name "\.\." is not allowed/);
test('id "-rf"', refused, { op: 'verify', job: 'db', id: '-rf' }, POLICY, R, /history\.id: LV name "-rf" may only contain/);
test('id "snapshot1"', refused, { op: 'verify', job: 'db', id: 'snapshot1' }, POLICY, R, /may not start with snapshot/);
test('id a number', refused, { op: 'verify', job: 'db', id: 7 }, POLICY, R, /field id must be a string/);
test('id of 129 bytes', refused, { op: 'verify', job: 'db', id: 'i'.repeat(129) }, POLICY, R, /field id is 129 bytes long, more than 128/);
test('dryRun "yes"', refused, { op: 'prune', job: 'db', dryRun: 'yes' }, POLICY, R, /field history\.dryRun must be a boolean/);
test('read without id', refused, { op: 'read', job: 'db' }, POLICY, R, /history\.read needs field history\.id/, { role: 'source' });
test('restore without id', refused, { op: 'restore', job: 'db', dest: '/x' }, POLICY, R, /history\.restore needs field history\.id/);
test('restore without dest', refused, { op: 'restore', job: 'db', id: 'c1' }, POLICY, R, /field history\.dest is for history\.restore, which needs it/);
test('list with a dest', refused, { ...list, dest: '/x' }, POLICY, R, /field history\.dest is for history\.restore/);
test('dest a number', refused, { op: 'restore', job: 'db', id: 'c1', dest: 3 }, POLICY, R, /field dest must be a string/);
test('list as a source', refused, list, POLICY, R, /history\.list needs role target and write false/, { role: 'source' });
test('list with write true', refused, list, POLICY, R, /history\.list needs role target and write false/, { write: true });
test('read as a target', refused, { op: 'read', job: 'db', id: 'c1' }, POLICY, R, /history\.read needs role source and write false/);
test('with policySnapshot', refused, list, POLICY, R, /history cannot be combined with a snapshot request/, { policySnapshot: { job: 'db' } });
test('with sourceSnapshot', refused, { op: 'read', job: 'db', id: 'c1' }, POLICY, R, /cannot be combined/, { role: 'source', sourceSnapshot: { job: 'db' } });
// the server's policy: PERMISSION
test('target outside allow', refused, list, NARROW, P, /refused by the server: device \S+ is outside the server's --allow list \(\/dev\/backup\/\*\)/);
test('read outside allow', refused, { op: 'read', job: 'db', id: 'c1' }, NARROW, P, /outside the server's --allow list/, { role: 'source' });
test('prune on a read-only server', refused, { op: 'prune', job: 'db' }, READ_ONLY, P, /refused by the server: history prune removes copies of \S+: the server runs with --read-only/);
test('prune without [server.target_snapshot]', refused, { op: 'prune', job: 'db' }, NO_HISTORY, P, /history prune applies the server's \[server\.target_snapshot\] retention, and this server has none/);
test('prune --dry-run without [server.target_snapshot]', refused, { op: 'prune', job: 'db', dryRun: true }, NO_HISTORY, P, /has none/);
test('restore to a dest outside allow', refused, { op: 'restore', job: 'db', id: 'c1', dest: '/etc/passwd' }, POLICY, P, /device \/etc\/passwd is outside the server's --allow list/);
test('restore on a read-only server', refused, (d: string) => ({ op: 'restore', job: 'db', id: 'c1', dest: `${d}.r` }), READ_ONLY, P, /cannot be written: the server runs with --read-only/);
test('restore to a relative dest', refused, { op: 'restore', job: 'db', id: 'c1', dest: 'x.img' }, POLICY, P, /device path "x\.img" is not absolute/);
test('restore to a dest with ..', refused, (d: string) => ({ op: 'restore', job: 'db', id: 'c1', dest: `${d}/../x` }), POLICY, P, /'\.\.' component/);
// allowed by the policy: the request reaches lvs, and a file is no LV
test('list of a file target', refused, { op: 'list', job: 'db1' }, POLICY, S, /need an LVM logical volume as target: \S+dst\.img is not a block device/);
test('verify of a file target', refused, { op: 'verify', job: 'db2' }, READ_ONLY, S, /need an LVM logical volume/);
test('prune --dry-run on a read-only server', refused, { op: 'prune', job: 'db3', dryRun: true }, READ_ONLY, S, /need an LVM logical volume/);
test('read of a file target', refused, { op: 'read', job: 'db4', id: 'c1' }, READ_ONLY, S, /need an LVM logical volume/, { role: 'source' });

// the job's lock on the server: what reads or rotates copies runs alone (LOCKED), listing does not
// (serial: each row holds the lock of job 'held' itself; other rows use other job names)
const L = ExitCode.LOCKED;
const held = /refused by the server: job held is busy here, history \w+ must wait: locked by process \d+, running since .*; pushes with a target snapshot, pulls from a source snapshot and history verify, restore and prune of one job run one at a time on the server/;
const withLock = test.macro({
  async exec(t, history: unknown, code: number, words: RegExp, extra: Record<string, unknown> = {}) {
    const lock = lockJob(`${ws.dir}/state`, 'server-job-held', new Date());
    try {
      const dst = ws.fresh('dst.img');
      randomFile(dst, 64 * KiB);
      const before = sha256(dst);
      const h = typeof history === 'function' ? (history as (d: string) => unknown)(dst) : history;
      const r = await session(hello(dst, h, extra), POLICY);
      t.is(r.code, code, r.error?.message);
      t.regex(r.error?.message ?? '', words);
      t.is(sha256(dst), before, 'the target is unchanged');
    } finally {
      lock.release();
    }
  },
  title: (name) => `job lock held on the server: ${name}`,
});
test.serial('verify is refused', withLock, { op: 'verify', job: 'held' }, L, held);
test.serial('prune is refused', withLock, { op: 'prune', job: 'held' }, L, held);
test.serial('restore is refused', withLock, (d: string) => ({ op: 'restore', job: 'held', id: 'c1', dest: `${d}.r` }), L, held);
test.serial('read (a restore to the client) is refused', withLock, { op: 'read', job: 'held', id: 'c1' }, L, held, { role: 'source' });
test.serial('a push with a policy snapshot is refused', withLock, undefined, L,
  /refused by the server: job held is busy here, this push with a target snapshot must wait: locked by process \d+/, { write: true, policySnapshot: { job: 'held' } });
test.serial('list goes ahead', withLock, { op: 'list', job: 'held' }, S, /need an LVM logical volume/);
test.serial('prune --dry-run goes ahead', withLock, { op: 'prune', job: 'held', dryRun: true }, S, /need an LVM logical volume/);
test.serial('another job goes ahead', withLock, { op: 'verify', job: 'web' }, S, /need an LVM logical volume/);

// ---- the client's check of a HISTORY reply ----

const badReply = test.macro({
  exec(t, reply: unknown, op: 'list' | 'verify' | 'prune' | 'restore', words: RegExp) {
    const err = t.throws(() => checkReply(reply, op, 'ssh u@h:22'));
    t.is((err as { code?: number }).code, ExitCode.REMOTE);
    t.regex(err!.message, words);
  },
  title: (name) => `HISTORY reply ${name} is refused`,
});
const entry = { id: 'c1', lv: 'vg/c1', kind: 'thin', state: 'good', dataTime: null, created: null, size: 1, fingerprint: null };
test('null', badReply, null, 'list', /malformed HISTORY: not a JSON object/);
test('version 2', badReply, { version: 2, op: 'list', entries: [] }, 'list', /expected version 1 and op list/);
test('for another op', badReply, { version: 1, op: 'prune', entries: [] }, 'list', /expected version 1 and op list/);
test('entries missing', badReply, { version: 1, op: 'list' }, 'list', /field entries must be a list/);
test('an entry without id', badReply, { version: 1, op: 'list', entries: [{ ...entry, id: 3 }] }, 'list', /malformed HISTORY\.entries: field id must be a string/);
test('a check without result', badReply, { version: 1, op: 'verify', checks: [{ id: 'c', lv: 'v/c', detail: '' }] }, 'verify', /HISTORY\.checks: field result/);
test('prune without verdicts', badReply, { version: 1, op: 'prune', prune: { kept: [], removed: [], retention: {} } }, 'prune', /HISTORY\.prune: field verdicts/);
test('restore without bytesWritten', badReply, { version: 1, op: 'restore', restore: { copy: 'c', dest: '/d' } }, 'restore', /HISTORY\.restore: field bytesWritten/);

test('a HISTORY reply\'s strings are made printable (no terminal escapes from the other host)', (t) => {
  const r = checkReply({ version: 1, op: 'list', entries: [{ ...entry, id: 'c1\x1b[2J\n' }] }, 'list', 'peer');
  t.is(r.entries![0]!.id, 'c1\\x1b[2J\\n');
});

// ---- the CLI: an older server, --rsh on a local job ----

/** A stand-in for a blkdelta server older than the history capability: it answers any HELLO with WELCOME. */
function oldServer(): string {
  const p = ws.fresh('old-server.mjs');
  writeFileSync(p, `const caps = ['lz4', 'zero', 'grow', 'verify', 'source-snapshot', 'policy-snapshot', 'wait'];
let sent = false;
process.stdin.on('data', () => {
  if (sent) return;
  sent = true;
  const body = Buffer.from(JSON.stringify({ magic: 'BLKDELTA', version: 1, caps, kind: 'file', size: 65536 }));
  const h = Buffer.alloc(8); h.writeUInt32LE(2, 0); h.writeUInt32LE(body.length, 4);
  process.stdout.write(Buffer.concat([h, body]));
});
process.stdin.on('end', () => process.exit(0));
`);
  return p;
}

function jobConfig(target: string, extra = ''): string {
  const src = ws.fresh('src.img');
  randomFile(src, 64 * KiB);
  const cfg = ws.fresh('c.toml');
  writeFileSync(cfg, `state_dir = "${ws.dir}/state"\n[jobs.r]\nsource = "${src}"\ntarget = "${target}"\ntarget_snapshot = true\n${extra}\n[jobs.here]\nsource = "${src}"\ntarget = "${src}.dst"\ntarget_snapshot = true\n`);
  return cfg;
}

test('an older server (no history capability) gets a clear "upgrade it", exit 9; a restore writes nothing', async (t) => {
  const cfg = jobConfig('backup@h:/dev/vg0/db');
  const rsh = `sh -c 'exec node ${oldServer()}' rsh`;
  const l = await runBlkdelta(['history', 'list', 'r', '--config', cfg, '--rsh', rsh]);
  t.is(l.code, ExitCode.REMOTE, l.stderr);
  t.regex(l.stderr, /the server at backup@h does not support history \(an older blkdelta\); upgrade blkdelta there \(nothing was read or changed\)/);
  t.is(l.stdout, '');
  const dest = ws.fresh('dest.img');
  writeFileSync(dest, Buffer.alloc(65536, 7));
  const r = await runBlkdelta(['history', 'restore', 'r', 'db-blkdelta-tgt-r-20261124T020000Z', dest, '--config', cfg, '--rsh', rsh]);
  t.is(r.code, ExitCode.REMOTE, r.stderr);
  t.regex(r.stderr, /does not support history; upgrade|does not support history \(an older blkdelta\); upgrade/);
  t.deepEqual(readFileSync(dest), Buffer.alloc(65536, 7), 'DEST untouched');
});

test('--rsh is refused for a job whose target is local (exit 2)', async (t) => {
  const cfg = jobConfig('backup@h:/dev/vg0/db');
  const r = await runBlkdelta(['history', 'list', 'here', '--config', cfg, '--rsh', 'ssh']);
  t.is(r.code, ExitCode.USAGE);
  t.regex(r.stderr, /--rsh and --remote-cmd are for a job whose target is remote; here's target \S+ is local/);
});

test('a restore DEST on a third host is refused before connecting (exit 2)', async (t) => {
  const cfg = jobConfig('backup@h:/dev/vg0/db');
  const r = await runBlkdelta(['history', 'restore', 'r', 'c1', 'other:/dev/vg0/x', '--config', cfg, '--rsh', 'false']);
  t.is(r.code, ExitCode.USAGE, r.stderr);
  t.regex(r.stderr, /DEST other:\/dev\/vg0\/x is on another host; give a local path, or a path on the target's host backup@h/);
});

// ---- a real sshd ----

test('over a real sshd: list and verify reach the server (a file is no LV: 13); its read_only and allow hold (12)', async (t) => {
  const sshd = await startSshd();
  t.teardown(() => sshd.stop());
  const dst = ws.fresh('ssh-dst.img');
  randomFile(dst, 64 * KiB);
  const server = (name: string, body: string) => {
    const conf = ws.fresh(`${name}.toml`);
    writeFileSync(conf, body);
    const wrapper = ws.fresh(`${name}.sh`); // run by sshd as "WRAPPER server"
    writeFileSync(wrapper, `#!/bin/sh\nshift\nexec ${process.execPath} ${BLKDELTA_BIN} server --config ${conf} "$@"\n`);
    chmodSync(wrapper, 0o755);
    return wrapper;
  };
  const open = server('open', `[server]\nallow = ["${ws.dir}/*"]\nread_only = true\nstate_dir = "${ws.dir}/state"\n[server.target_snapshot]\nkeep_last = 3\n`);
  const narrow = server('narrow', '[server]\nallow = ["/dev/backup/*"]\n');
  const ssh = (cmd: string) => `ssh = { port = ${sshd.port}, identity = "${sshd.userKey.privatePath}", known_hosts = "${sshd.knownHosts}", remote_cmd = "${cmd}" }`;
  const cfg = jobConfig(`${sshd.user}@127.0.0.1:${dst}`, ssh(open));
  const before = sha256(dst);
  for (const action of ['list', 'verify']) {
    const r = await runBlkdelta(['history', action, 'r', '--config', cfg]);
    t.is(r.code, ExitCode.SNAPSHOT, r.stderr);
    t.regex(r.stderr, new RegExp(`ssh ${sshd.user}@127\\.0\\.0\\.1:${sshd.port}: target copies .* need an LVM logical volume as target: \\S+ssh-dst\\.img is not a block device`));
  }
  const p = await runBlkdelta(['history', 'prune', 'r', '--config', cfg]);
  t.is(p.code, ExitCode.PERMISSION, p.stderr);
  t.regex(p.stderr, /refused by the server: history prune removes copies of \S+: the server runs with --read-only/);
  const n = await runBlkdelta(['history', 'list', 'r', '--config', jobConfig(`${sshd.user}@127.0.0.1:${dst}`, ssh(narrow))]);
  t.is(n.code, ExitCode.PERMISSION, n.stderr);
  t.regex(n.stderr, /outside the server's --allow list/);
  const old = ws.fresh('old.sh');
  writeFileSync(old, `#!/bin/sh\nexec ${process.execPath} ${oldServer()}\n`);
  chmodSync(old, 0o755);
  const o = await runBlkdelta(['history', 'verify', 'r', '--config', jobConfig(`${sshd.user}@127.0.0.1:${dst}`, ssh(old))]);
  t.is(o.code, ExitCode.REMOTE, o.stderr);
  t.regex(o.stderr, /the server at \S+@127\.0\.0\.1 does not support history/);
  t.is(sha256(dst), before, 'the target is unchanged');
  t.false(readFileSync(cfg, 'utf8').includes('keep_last'), 'the client never sets retention');
});
