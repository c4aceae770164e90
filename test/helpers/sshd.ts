// A private OpenSSH sshd for tests and benchmarks: its own config, host key, user key,
// authorized_keys and known_hosts in a temp dir, listening on 127.0.0.1 at a free port.
// It never reads the machine's /etc/ssh/sshd_config; it is stopped by PID (stop() also removes
// the temp dir). Logins are as the current user (root here) with the generated user key.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { makeKey, requireTool, type TestKey } from './keys.js';

export const SSHD = '/usr/sbin/sshd';
/** This checkout's CLI, the remote command tests run over SSH. */
export const BLKDELTA_BIN = resolve(process.cwd(), 'bin/blkdelta');

export interface TestSshd {
  host: '127.0.0.1';
  port: number;
  user: string;
  dir: string;
  pid: number;
  /** The first of hostKeys (ed25519 unless told otherwise). */
  hostKey: TestKey;
  hostKeys: TestKey[];
  userKey: TestKey;
  /** known_hosts with all of this sshd's host keys as `[127.0.0.1]:PORT`. */
  knownHosts: string;
  authorizedKeys: string;
  /** Replaces authorized_keys: each entry is "options" put before the user key, or '' for none. */
  setAuthorized(options: string[]): void;
  /** PIDs of the per-connection sshd processes (children of the listener). */
  sessionPids(): number[];
  /** argv for --rsh: OpenSSH's ssh with this sshd's port, key and known_hosts, nothing else. */
  rshArgv(): string[];
  log(): string;
  stop(): Promise<void>;
}

export type KeyType = 'ed25519' | 'ecdsa' | 'rsa';

/** Starts a private sshd; throws with an install hint when OpenSSH is missing. */
export async function startSshd(opts: { hostKeyTypes?: KeyType[] } = {}): Promise<TestSshd> {
  requireTool(SSHD, 'openssh-server');
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-sshd-'));
  const hostKeys = (opts.hostKeyTypes ?? ['ed25519']).map((t) => makeKey(dir, `host_${t}`, t));
  const hostKey = hostKeys[0];
  const userKey = makeKey(dir, 'user_ed25519');
  const port = await freePort();
  const authorizedKeys = join(dir, 'authorized_keys');
  writeFileSync(authorizedKeys, userKey.publicLine + '\n');
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, hostKeys.map((k) => `[127.0.0.1]:${port} ${k.type} ${k.blob.toString('base64')}\n`).join(''));
  const config = join(dir, 'sshd_config');
  writeFileSync(config, sshdConfig(dir, port, hostKeys.map((k) => k.privatePath), authorizedKeys));
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const logLines: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    logLines.push(s);
    if (logLines.length > 400) logLines.splice(0, 200);
  });
  await waitListening(child, logLines, port);
  return {
    host: '127.0.0.1', port, user: userInfo().username, dir, pid: child.pid!, hostKey, hostKeys, userKey, knownHosts, authorizedKeys,
    setAuthorized: (options) => writeFileSync(authorizedKeys, options.map((o) => `${o ? o + ' ' : ''}${userKey.publicLine}\n`).join('')),
    sessionPids: () => childrenOf(child.pid!, false),
    rshArgv: () => ['ssh', '-F', '/dev/null', '-p', String(port), '-i', userKey.privatePath, '-o', 'IdentitiesOnly=yes',
      '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes', '-l', userInfo().username],
    log: () => logLines.join(''),
    stop: () => stopSshd(child, dir),
  };
}

function sshdConfig(dir: string, port: number, hostKeys: string[], authorizedKeys: string): string {
  return [
    `Port ${port}`, 'ListenAddress 127.0.0.1', ...hostKeys.map((k) => `HostKey ${k}`), `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorizedKeys}`, 'StrictModes no', 'PermitRootLogin prohibit-password',
    'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'PubkeyAuthentication yes',
    'AuthenticationMethods publickey', 'MaxStartups 100:30:200', 'MaxSessions 20', 'LogLevel VERBOSE',
    'PrintMotd no', 'Subsystem sftp internal-sftp', '',
  ].join('\n');
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

function waitListening(child: ChildProcess, logLines: string[], port: number): Promise<void> {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => fail(new Error(`sshd did not start within 10 s:\n${logLines.join('')}`)), 10_000);
    const fail = (err: Error) => { clearTimeout(timer); child.kill('SIGKILL'); rej(err); };
    const onData = () => {
      if (!logLines.join('').includes(`Server listening on 127.0.0.1 port ${port}`)) return;
      clearTimeout(timer);
      child.stderr!.off('data', onData);
      res();
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code) => fail(new Error(`sshd exited with ${code} at start:\n${logLines.join('')}`)));
  });
}

/** PIDs whose parent is pid, and (recursive) their descendants, from /proc. */
export function childrenOf(pid: number, recursive = true): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name), ...(recursive ? childrenOf(Number(name)) : []));
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}

async function stopSshd(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    for (const pid of childrenOf(child.pid!)) tryKill(pid, 'SIGTERM');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(dir, { recursive: true, force: true });
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** `ssh-keyscan` output for the sshd, as a user would fetch it. */
export function keyscan(sshd: TestSshd): string {
  return execFileSync('/usr/bin/ssh-keyscan', ['-p', String(sshd.port), '-t', 'ed25519', '127.0.0.1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}
