// SshTransport against a real OpenSSH sshd on 127.0.0.1: host keys, authentication, the remote
// command. Each test opens a channel to `blkdelta server` (this checkout) and closes it.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { BlkError, ExitCode } from '../src/errors.js';
import { fingerprint } from '../src/transport/knownhosts.js';
import { SshTransport, type SshOptions } from '../src/transport/ssh.js';
import { makeKey } from './helpers/keys.js';
import { BLKDELTA_BIN, childrenOf, startSshd, type TestSshd } from './helpers/sshd.js';

let sshd: TestSshd;
const dir = mkdtempSync(join(tmpdir(), 'blkdelta-sshkh-'));
test.before(async () => {
  sshd = await startSshd();
});
test.after.always(async () => {
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function knownHostsFile(text: string): string {
  const f = join(dir, `known_hosts.${n++}`);
  writeFileSync(f, text);
  return f;
}

// closeTimeoutMs: a round trip closes the channel at once, so the wait for the exit status also
// covers the remote node's start-up, which takes over 10 s (the default) on a loaded machine.
function transport(over: Partial<SshOptions>): SshTransport {
  return new SshTransport({
    host: sshd.host, port: sshd.port, identityFiles: [sshd.userKey.privatePath], knownHostsFiles: [sshd.knownHosts],
    agent: false, remoteCmd: BLKDELTA_BIN, connectTimeoutMs: 20_000, closeTimeoutMs: 120_000, ...over,
  });
}

// Opens and closes a channel; the server sees EOF before HELLO and exits 0.
async function roundTrip(t: SshTransport): Promise<number | null> {
  const ch = await t.open();
  ch.input.resume();
  return ch.close();
}

async function refusal(t: SshTransport): Promise<BlkError> {
  const err = await t.open().then(
    async (ch) => { await ch.close(); throw new Error('open() succeeded'); },
    (e: unknown) => e,
  );
  if (!(err instanceof BlkError)) throw err;
  return err;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return ''; // exited meanwhile
  }
}

const hostLine = () => `[127.0.0.1]:${sshd.port} ${sshd.hostKey.type} ${sshd.hostKey.blob.toString('base64')}\n`;

test('a known host key connects and the server exits 0 on end of input', async (t) => {
  t.is(await roundTrip(transport({})), 0);
});

test('unknown host key: refused with the fingerprint and how to accept it', async (t) => {
  const kh = knownHostsFile('# nothing yet\n');
  const err = await refusal(transport({ knownHostsFiles: [kh] }));
  t.is(err.code, ExitCode.HOST_KEY);
  const sshKeygen = execFileSync('/usr/bin/ssh-keygen', ['-lf', sshd.hostKey.publicPath], { encoding: 'utf8' }).split(' ')[1];
  t.is(fingerprint(sshd.hostKey.blob), sshKeygen);
  t.true(err.message.includes(sshKeygen), err.message);
  t.true(err.message.includes('ssh-ed25519'), err.message);
  t.true(err.message.includes('--accept-new-host-key'), err.message);
  t.true(err.message.includes(hostLine().trim()), 'shows the line to add');
  t.is(readFileSync(kh, 'utf8'), '# nothing yet\n', 'known_hosts untouched');
});

test('changed host key: refused loudly, also with --accept-new-host-key, file untouched', async (t) => {
  const other = makeKey(dir, 'impostor');
  const text = `[127.0.0.1]:${sshd.port} ${other.type} ${other.blob.toString('base64')}\n`;
  const kh = knownHostsFile(text);
  for (const acceptNewHostKey of [false, true]) {
    const err = await refusal(transport({ knownHostsFiles: [kh], acceptNewHostKey }));
    t.is(err.code, ExitCode.HOST_KEY);
    t.true(err.message.includes('HAS CHANGED'), err.message);
    t.true(err.message.includes(fingerprint(other.blob)), 'names the known key');
    t.true(err.message.includes(fingerprint(sshd.hostKey.blob)), 'names the presented key');
    t.true(err.message.includes(`${kh}:1`), 'names the offending line');
  }
  t.is(readFileSync(kh, 'utf8'), text);
});

test('hashed known_hosts entry (ssh-keygen -H) is accepted', async (t) => {
  const kh = knownHostsFile(hostLine());
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-H', '-f', kh], { stdio: 'ignore' });
  t.true(readFileSync(kh, 'utf8').startsWith('|1|'));
  t.is(await roundTrip(transport({ knownHostsFiles: [kh] })), 0);
});

test('an entry without the port does not vouch for [host]:port', async (t) => {
  const kh = knownHostsFile(`127.0.0.1 ${sshd.hostKey.type} ${sshd.hostKey.blob.toString('base64')}\n`);
  const err = await refusal(transport({ knownHostsFiles: [kh] }));
  t.is(err.code, ExitCode.HOST_KEY);
  t.true(err.message.includes('not known'), err.message);
});

test('the key is found in the second known_hosts file (like /etc/ssh/ssh_known_hosts)', async (t) => {
  t.is(await roundTrip(transport({ knownHostsFiles: [join(dir, 'absent'), knownHostsFile(hostLine())] })), 0);
});

test('@revoked host key is refused', async (t) => {
  const kh = knownHostsFile(hostLine() + `@revoked * ${sshd.hostKey.type} ${sshd.hostKey.blob.toString('base64')}\n`);
  const err = await refusal(transport({ knownHostsFiles: [kh], acceptNewHostKey: true }));
  t.is(err.code, ExitCode.HOST_KEY);
  t.true(err.message.includes('REVOKED'), err.message);
});

test('--accept-new-host-key adds an unknown key, and a later run passes without it', async (t) => {
  const kh = join(dir, 'fresh', 'known_hosts');
  t.is(await roundTrip(transport({ knownHostsFiles: [kh], acceptNewHostKey: true })), 0);
  t.is(readFileSync(kh, 'utf8'), hostLine());
  t.is(await roundTrip(transport({ knownHostsFiles: [kh] })), 0);
});

test('a user key the server does not know: AUTH, naming the key tried', async (t) => {
  const stranger = makeKey(dir, 'stranger');
  const err = await refusal(transport({ identityFiles: [stranger.privatePath] }));
  t.is(err.code, ExitCode.AUTH);
  t.true(err.message.includes(stranger.privatePath), err.message);
});

test('an --identity file that does not exist is a usage error naming it', async (t) => {
  const err = await refusal(transport({ identityFiles: [join(dir, 'nokey')] }));
  t.is(err.code, ExitCode.USAGE);
  t.true(err.message.includes(join(dir, 'nokey')), err.message);
});

test('remote binary missing: the channel fails with the remote stderr and status 127', async (t) => {
  const ch = await transport({ remoteCmd: '/nonexistent/blkdelta' }).open();
  // finished() also sees an error raised before it was called: on a loaded host the exec reply, the
  // exit status and the channel's close can arrive in one read, and the error is emitted before
  // open()'s caller runs (a listener added here would miss it and wait forever).
  ch.input.resume();
  const err = await finished(ch.input).then(() => new Error('input ended without an error'), (e: unknown) => e as Error);
  t.is((err as BlkError).code, ExitCode.REMOTE);
  t.true(err.message.includes('status 127'), err.message);
  t.true(err.message.includes('No such file or directory'), err.message);
  t.true(ch.stderrTail().includes('/nonexistent/blkdelta'), ch.stderrTail());
  t.is(await ch.close(), 127);
});

test('close() gives up on a remote command that ignores end of input, and ends the connection', async (t) => {
  const ch = await transport({ remoteCmd: 'sleep 20 #', closeTimeoutMs: 500 }).open();
  ch.input.resume();
  let remote: number[] = [];
  for (let i = 0; i < 100 && remote.length === 0; i++) {
    remote = sshd.sessionPids().flatMap((pid) => childrenOf(pid)).filter((pid) => cmdline(pid) === 'sleep\u000020\u0000');
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(remote.length, 1, 'the remote command runs');
  try {
    t.is(await ch.close(), null, 'no exit status');
    t.is(await ch.close(), null, 'safe to call twice');
  } finally {
    // sshd does not signal a root session's command when the connection ends: stop it here.
    for (const pid of remote) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

test('nothing listening: REMOTE naming the address', async (t) => {
  const err = await refusal(new SshTransport({
    host: '127.0.0.1', port: 1, identityFiles: [sshd.userKey.privatePath], knownHostsFiles: [sshd.knownHosts], agent: false,
  }));
  t.is(err.code, ExitCode.REMOTE);
  t.true(err.message.includes('127.0.0.1:1'), err.message);
  t.true(err.message.includes('ECONNREFUSED'), err.message);
});

test('a peer that never speaks SSH: REMOTE after the connect timeout', async (t) => {
  const socks: Socket[] = [];
  const silent = createServer((sock) => socks.push(sock.on('error', () => {})));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as AddressInfo).port;
  try {
    const err = await refusal(transport({ port, connectTimeoutMs: 1_000 }));
    t.is(err.code, ExitCode.REMOTE);
    t.true(err.message.includes('no ssh handshake within 1 s'), err.message);
  } finally {
    for (const s of socks) s.destroy();
    silent.close();
  }
});

test('an aborted signal stops a pending open', async (t) => {
  const ac = new AbortController();
  const p = transport({}).open(ac.signal);
  ac.abort(new BlkError(ExitCode.INTERRUPTED, 'interrupted by test'));
  const err = await p.then((ch) => ch.close().then(() => undefined), (e: unknown) => e);
  t.is((err as BlkError)?.code, ExitCode.INTERRUPTED);
});

test('a host with several keys, known by its ecdsa or rsa key only, is not mistaken for changed', async (t) => {
  const multi = await startSshd({ hostKeyTypes: ['ed25519', 'ecdsa', 'rsa'] });
  try {
    for (const known of multi.hostKeys) {
      const kh = knownHostsFile(`[127.0.0.1]:${multi.port} ${known.type} ${known.blob.toString('base64')}\n`);
      const tr = new SshTransport({
        host: multi.host, port: multi.port, identityFiles: [multi.userKey.privatePath], knownHostsFiles: [kh], agent: false, remoteCmd: BLKDELTA_BIN,
      });
      t.is(await roundTrip(tr), 0, `known by ${known.type}`);
    }
    const none = knownHostsFile('');
    const err = await refusal(new SshTransport({
      host: multi.host, port: multi.port, identityFiles: [multi.userKey.privatePath], knownHostsFiles: [none], agent: false, remoteCmd: BLKDELTA_BIN,
    }));
    t.true(err.message.includes('ssh-ed25519'), 'unknown: the preferred ed25519 key is the one shown');
  } finally {
    await multi.stop();
  }
});

// A real ssh-agent holding the user key; the passphrase-protected copy given as --identity is
// only usable through the agent.
test('ssh-agent: a passphrase-protected --identity works through the agent, and without it says so', async (t) => {
  const locked = join(dir, 'locked_key');
  execFileSync('/bin/cp', [sshd.userKey.privatePath, locked]);
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-p', '-P', '', '-N', 'secret', '-f', locked], { stdio: 'ignore' });
  const noAgent = await refusal(transport({ identityFiles: [locked], agent: false }));
  t.is(noAgent.code, ExitCode.AUTH);
  t.true(noAgent.message.includes('passphrase-protected') && noAgent.message.includes('ssh-add'), noAgent.message);

  const sock = join(dir, 'agent.sock');
  const agent = spawn('/usr/bin/ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    execFileSync('/usr/bin/ssh-add', ['-q', sshd.userKey.privatePath], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
    t.is(await roundTrip(transport({ identityFiles: [locked], agent: sock })), 0);
  } finally {
    agent.kill('SIGTERM');
  }
});
