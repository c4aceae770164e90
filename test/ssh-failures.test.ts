// `blkdelta sync/verify` over SSH through the CLI, against real sshds on 127.0.0.1: each failure
// gets its exit code and a message naming the cause, and nothing is written where it must not be.
// One sshd with a plain key; one whose authorized_keys forces `blkdelta server --allow ...`
// (one key read-write, one key --read-only), as docs/ssh.md tells operators to set it up.
import test from 'ava';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { fingerprint } from '../src/transport/knownhosts.js';
import { makePair, sha256, type ImagePair } from './helpers/images.js';
import { runBlkdelta, type Run } from './helpers/jobs.js';
import { makeKey, type TestKey } from './helpers/keys.js';
import { BLKDELTA_BIN, startSshd, type TestSshd } from './helpers/sshd.js';

let plain: TestSshd;
let locked: TestSshd;
let roKey: TestKey;
const root = mkdtempSync(join(tmpdir(), 'blkdelta-sshfail-'));
const allowed = join(root, 'allowed');

test.before(async () => {
  [plain, locked] = await Promise.all([startSshd(), startSshd()]);
  mkdirSync(allowed);
  roKey = makeKey(locked.dir, 'readonly_user');
  const force = (extra: string) => `restrict,command="${BLKDELTA_BIN} server --allow '${allowed}/*'${extra}"`;
  writeFileSync(locked.authorizedKeys, `${force('')} ${locked.userKey.publicLine}\n${force(' --read-only')} ${roKey.publicLine}\n`);
});
test.after.always(async () => {
  await Promise.all([plain?.stop(), locked?.stop()]);
  rmSync(root, { recursive: true, force: true });
});

const url = (s: TestSshd, path: string) => `ssh://127.0.0.1:${s.port}${path}`;
const shellQuote = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;
const rshLine = (s: TestSshd) => s.rshArgv().map(shellQuote).join(' ');
const sshArgs = (s: TestSshd, key = s.userKey.privatePath) =>
  ['-i', key, '--known-hosts', s.knownHosts, '--remote-cmd', BLKDELTA_BIN, '--no-progress'];
const cli = (args: string[]): Promise<Run> => runBlkdelta(args, { env: { SSH_AUTH_SOCK: '' } });
const pair = (): ImagePair => makePair(mkdtempSync(join(root, 'p-')), 256, 9);
const pairIn = (dir: string): ImagePair => makePair(mkdtempSync(join(dir, 'p-')), 256, 9);

test('push and pull through the CLI give identical images', async (t) => {
  const p = pair();
  const push = await cli(['sync', ...sshArgs(plain), p.source, url(plain, p.target)]);
  t.is(push.code, 0, push.stderr);
  t.is(sha256(p.target), sha256(p.source));
  const q = pair();
  const pull = await cli(['sync', ...sshArgs(plain), url(plain, q.source), q.target]);
  t.is(pull.code, 0, pull.stderr);
  t.is(sha256(q.target), sha256(q.source));
  const verify = await cli(['verify', ...sshArgs(plain), q.source, url(plain, q.target)]);
  t.is(verify.code, 0, verify.stderr);
});

test('-i is repeatable and does not swallow SRC and DST', async (t) => {
  const p = pair();
  const r = await cli(['sync', '--no-progress', '--known-hosts', plain.knownHosts, '--remote-cmd', BLKDELTA_BIN,
    '-i', roKey.privatePath, '-i', plain.userKey.privatePath, p.source, url(plain, p.target)]);
  t.is(r.code, 0, r.stderr);
  t.is(sha256(p.target), sha256(p.source));
});

test('--rsh: OpenSSH refusing an unknown host key gives exit 9 with its message', async (t) => {
  const p = pair();
  const argv = plain.rshArgv().map((a) => (a.startsWith('UserKnownHostsFile=') ? 'UserKnownHostsFile=/dev/null' : a));
  const r = await cli(['sync', '--rsh', argv.map(shellQuote).join(' '), '--remote-cmd', BLKDELTA_BIN, p.source, `127.0.0.1:${p.target}`]);
  t.is(r.code, ExitCode.REMOTE, r.stderr);
  t.true(r.stderr.includes('Host key verification failed'), r.stderr);
});

test('unknown host key: exit 10 with the fingerprint; --accept-new-host-key then lets runs pass', async (t) => {
  const p = pair();
  const kh = join(root, 'kh-new');
  const args = ['-i', plain.userKey.privatePath, '--known-hosts', kh, '--remote-cmd', BLKDELTA_BIN, '--no-progress'];
  const before = sha256(p.target);
  const refused = await cli(['sync', ...args, p.source, url(plain, p.target)]);
  t.is(refused.code, ExitCode.HOST_KEY, refused.stderr);
  t.true(refused.stderr.includes(fingerprint(plain.hostKey.blob)), refused.stderr);
  t.false(existsSync(kh));
  t.is(sha256(p.target), before, 'nothing written');
  const accepted = await cli(['sync', ...args, '--accept-new-host-key', p.source, url(plain, p.target)]);
  t.is(accepted.code, 0, accepted.stderr);
  const later = await cli(['verify', ...args, p.source, url(plain, p.target)]);
  t.is(later.code, 0, later.stderr);
});

test('changed host key: exit 10 even with --accept-new-host-key', async (t) => {
  const p = pair();
  const kh = join(root, 'kh-changed');
  const other = makeKey(root, 'other_host');
  writeFileSync(kh, `[127.0.0.1]:${plain.port} ${other.type} ${other.blob.toString('base64')}\n`);
  const before = sha256(p.target);
  const r = await cli(['sync', '-i', plain.userKey.privatePath, '--known-hosts', kh, '--accept-new-host-key', '--remote-cmd', BLKDELTA_BIN, p.source, url(plain, p.target)]);
  t.is(r.code, ExitCode.HOST_KEY, r.stderr);
  t.true(r.stderr.includes('HAS CHANGED'), r.stderr);
  t.is(sha256(p.target), before);
});

test('wrong user key: exit 11', async (t) => {
  const p = pair();
  const r = await cli(['sync', ...sshArgs(plain, roKey.privatePath), p.source, url(plain, p.target)]);
  t.is(r.code, ExitCode.AUTH, r.stderr);
  t.true(r.stderr.includes('authentication'), r.stderr);
});

test('remote binary missing: exit 9 with the remote shell\'s message', async (t) => {
  const p = pair();
  const r = await cli(['sync', '-i', plain.userKey.privatePath, '--known-hosts', plain.knownHosts, '--remote-cmd', '/opt/none/blkdelta', p.source, url(plain, p.target)]);
  t.is(r.code, ExitCode.REMOTE, r.stderr);
  t.true(r.stderr.includes('/opt/none/blkdelta: No such file or directory'), r.stderr);
});

test('remote device missing: the remote refusal with its exit code and path', async (t) => {
  const p = pair();
  const missing = join(root, 'no', 'such.img');
  const push = await cli(['sync', ...sshArgs(plain), p.source, url(plain, missing)]);
  t.is(push.code, ExitCode.TARGET_REFUSED, push.stderr);
  t.true(push.stderr.includes(missing), push.stderr);
  const pull = await cli(['sync', ...sshArgs(plain), url(plain, missing), p.target]);
  t.is(pull.code, ExitCode.SOURCE, pull.stderr);
  t.true(pull.stderr.includes(missing), pull.stderr);
});

test('forced command: a device matching --allow syncs; outside it, exit 12 and nothing written', async (t) => {
  const p = pair();
  const flat = join(allowed, 'disk.img');
  writeFileSync(flat, Buffer.alloc(256 * 4096, 1));
  const good = await cli(['sync', ...sshArgs(locked), p.source, url(locked, flat)]);
  t.is(good.code, 0, good.stderr);
  t.is(sha256(flat), sha256(p.source));
  const deeper = pairIn(allowed); // allowed/p-XXXX/dst.img: '*' does not cross '/'
  const deep = await cli(['sync', ...sshArgs(locked), p.source, url(locked, deeper.target)]);
  t.is(deep.code, ExitCode.PERMISSION, deep.stderr);
  const before = sha256(p.target);
  const out = await cli(['sync', ...sshArgs(locked), p.source, url(locked, p.target)]);
  t.is(out.code, ExitCode.PERMISSION, out.stderr);
  t.true(out.stderr.includes('outside'), out.stderr);
  t.is(sha256(p.target), before);
  const dotdot = await cli(['sync', ...sshArgs(locked), flat, url(locked, `${allowed}/..${p.target.slice(root.length)}`)]);
  t.is(dotdot.code, ExitCode.PERMISSION, dotdot.stderr);
  t.true(dotdot.stderr.includes("'..'"), dotdot.stderr);
  t.is(sha256(p.target), before);
});

test('forced command: a symlink in the allowed directory pointing outside is refused (12); a chmod 444 file is refused (5) even for root', async (t) => {
  const p = pair(); // outside the allowed directory
  const before = sha256(p.target);
  const link = join(allowed, 'escape.img');
  symlinkSync(p.target, link);
  const escape = await cli(['sync', ...sshArgs(locked), p.source, url(locked, link)]);
  t.is(escape.code, ExitCode.PERMISSION, escape.stderr);
  t.true(escape.stderr.includes(`resolves to ${p.target}) is outside the server's --allow list`), escape.stderr);
  t.is(sha256(p.target), before, 'the file outside was not written');
  const ro = join(allowed, 'mode444.img');
  writeFileSync(ro, Buffer.alloc(256 * 4096, 6));
  chmodSync(ro, 0o444);
  const refused = await cli(['sync', ...sshArgs(locked), p.source, url(locked, ro)]);
  t.is(refused.code, ExitCode.TARGET_REFUSED, refused.stderr);
  t.true(refused.stderr.includes('the file has no write permission bits (mode 0444)'), refused.stderr);
  t.true(readFileSync(ro).every((b) => b === 6), 'the chmod 444 file is unchanged');
});

test('forced --read-only: pull and verify work, a push is refused with exit 12', async (t) => {
  const img = join(allowed, 'ro.img');
  writeFileSync(img, Buffer.alloc(256 * 4096, 3));
  const local = join(root, 'ro-copy.img');
  writeFileSync(local, Buffer.alloc(256 * 4096, 4));
  const args = sshArgs(locked, roKey.privatePath);
  const pull = await cli(['sync', ...args, url(locked, img), local]);
  t.is(pull.code, 0, pull.stderr);
  t.is(sha256(local), sha256(img));
  const verify = await cli(['verify', ...args, local, url(locked, img)]);
  t.is(verify.code, 0, verify.stderr);
  writeFileSync(local, Buffer.alloc(256 * 4096, 5));
  const push = await cli(['sync', ...args, local, url(locked, img)]);
  t.is(push.code, ExitCode.PERMISSION, push.stderr);
  t.true(push.stderr.includes('--read-only'), push.stderr);
  t.true(readFileSync(img).every((b) => b === 3), 'the read-only device is unchanged');
});

test('shell metacharacters in a device path are a plain path: nothing runs', async (t) => {
  const dir = mkdtempSync(join(root, 'meta-'));
  const p = makePair(dir, 64, 3);
  const names = ['a;touch pwned', '$(touch pwned)', '`touch pwned`', "x' 'y | touch pwned &", 'sp ace\"q'];
  const home = process.env.HOME ?? '/root';
  for (const name of names) {
    const target = join(dir, name);
    writeFileSync(target, Buffer.alloc(64 * 4096));
    for (const args of [sshArgs(plain), ['--rsh', rshLine(plain), '--remote-cmd', BLKDELTA_BIN, '--no-progress']]) {
      writeFileSync(target, Buffer.alloc(64 * 4096));
      const dest = args[0] === '--rsh' ? `127.0.0.1:${target}` : url(plain, target);
      const r = await cli(['sync', ...args, p.source, dest]);
      t.is(r.code, 0, `${name}: ${r.stderr}`);
      t.is(sha256(target), sha256(p.source), name);
    }
  }
  t.false(existsSync(join(home, 'pwned')), 'no command ran in the remote home');
  t.false(existsSync(join(dir, 'pwned')));
  t.false(existsSync(join(process.cwd(), 'pwned')));
});

test('--bwlimit caps the rate of a push (lower bound only: no timing upper bound is asserted)', async (t) => {
  const p = makePair(mkdtempSync(join(root, 'bw-')), 512, 512); // 2 MiB, every block differs, random
  const r = await cli(['sync', ...sshArgs(plain), '--json', '--bwlimit', '1M', p.source, url(plain, p.target)]);
  t.is(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { bytesSent: number; durationS: number };
  t.true(summary.bytesSent > 1.9 * 1024 * 1024, 'random data is sent in full');
  // bursts are 1/10 s worth, so 1.9 MiB at 1 MiB/s cannot take less than ~1.8 s
  t.true(summary.durationS >= 1.5, `took ${summary.durationS} s`);
  t.is(sha256(p.target), sha256(p.source));
});
