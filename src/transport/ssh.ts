// SshTransport: runs `blkdelta server` on another host over an ssh2 exec channel.
//   connect (readyTimeout) -> check the host key against known_hosts (knownhosts.ts; unknown and
//   changed keys are refused, --accept-new-host-key adds unknown ones) -> authenticate (agent,
//   then --identity files, else the default ~/.ssh keys) -> exec `${remoteCmd} server` -> Channel.
// The device path is never on the exec command: it travels inside the protocol.
// close(): ends the server's stdin (the server exits on EOF; root sessions cannot be signalled),
// waits for its exit status up to closeTimeoutMs, then ends the connection (destroys it after
// 2 s). A dropped connection (keepalives detect a dead peer) makes the channel streams error.
// Memory: the ssh2 channel window (2 MiB by default) plus the ServerEnd buffers.
import { createRequire } from 'node:module';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { AnyAuthMethod, Client, ClientChannel, ConnectConfig } from 'ssh2';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import { CLOSE_TIMEOUT_MS, withTimeout, type Channel, type Transport } from './transport.js';
import { hostKeyAlgorithms, hostVerifier, type HostCheck } from './ssh-hostkey.js';
import { authMethods, describeAuth, type AuthMethod } from './ssh-auth.js';
import { ServerEnd, serverCommand } from './remote-end.js';
import { throttleChannel } from './throttle.js';

// ssh2 (CommonJS) is loaded on first use: a local sync never pays its ~10 MiB of resident memory.
const ssh2 = (): typeof import('ssh2') => createRequire(import.meta.url)('ssh2');

export interface SshOptions {
  host: string;
  port?: number;
  /** Default: the current user. */
  user?: string;
  /** --identity files (passphrase-less, or loaded in the agent); default ~/.ssh/id_{ed25519,ecdsa,rsa}. */
  identityFiles?: string[];
  /** ssh-agent socket; default SSH_AUTH_SOCK; false: no agent. */
  agent?: string | false;
  /** Default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts; --accept-new-host-key adds to the first. */
  knownHostsFiles?: string[];
  acceptNewHostKey?: boolean;
  connectTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Command that starts blkdelta on the remote host (default "blkdelta"); runs `${remoteCmd} server`. */
  remoteCmd?: string;
  /** Bytes per second, each direction. */
  bwlimit?: number;
  closeTimeoutMs?: number;
}

export function defaultKnownHosts(): string[] {
  return [join(homedir(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'];
}

export class SshTransport implements Transport {
  readonly label: string;
  private readonly port: number;
  private readonly user: string;

  constructor(private readonly opts: SshOptions) {
    this.port = opts.port ?? 22;
    this.user = opts.user ?? userInfo().username;
    this.label = `ssh ${this.user}@${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${this.port}`;
  }

  async open(signal?: AbortSignal): Promise<Channel> {
    signal?.throwIfAborted();
    const auths = authMethods(this.user, this.opts.identityFiles, this.opts.agent);
    const client = new (ssh2().Client)();
    const check: HostCheck = {
      files: this.opts.knownHostsFiles ?? defaultKnownHosts(),
      host: this.opts.host,
      port: this.port,
      acceptNew: !!this.opts.acceptNewHostKey,
    };
    // our own TCP socket, which ssh2 takes as is, so that writes can wait for it (Forwarder)
    const sock = tcpConnect({ host: this.opts.host, port: this.port });
    await this.connect(client, { ...this.config(check, auths), sock }, check, auths, signal);
    try {
      const ch = await this.exec(client, sock, signal);
      return this.opts.bwlimit ? throttleChannel(ch, this.opts.bwlimit) : ch;
    } catch (err) {
      client.destroy();
      throw err;
    }
  }

  private config(check: HostCheck, auths: AuthMethod[]): ConnectConfig {
    let next = 0;
    return {
      host: this.opts.host,
      port: this.port,
      username: this.user,
      readyTimeout: 0, // connect() keeps the deadline: ssh2's timer would win over a handshake read after a stall
      keepaliveInterval: this.opts.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: this.opts.keepaliveCountMax ?? 4,
      hostVerifier: hostVerifier(check),
      algorithms: { serverHostKey: hostKeyAlgorithms(check) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] },
      // ssh2 takes false as "no more methods" (its types do not say so)
      authHandler: (_left, _partial, done) => (done as (a: AnyAuthMethod | false) => void)(next < auths.length ? auths[next++].auth : false),
    };
  }

  // Resolves on 'ready'; maps every failure before it to HOST_KEY, AUTH or REMOTE, and no
  // 'ready' within connectTimeoutMs (withTimeout: a stalled process reads what arrived first) to REMOTE.
  private async connect(client: Client, cfg: ConnectConfig, check: HostCheck, auths: AuthMethod[], signal?: AbortSignal): Promise<void> {
    const ms = this.opts.connectTimeoutMs ?? 30_000;
    if (await withTimeout(this.handshake(client, cfg, check, auths, signal), ms)) return;
    client.destroy();
    throw new BlkError(ExitCode.REMOTE, `cannot connect to ${this.where()}: no ssh handshake within ${ms / 1000} s`);
  }

  private handshake(client: Client, cfg: ConnectConfig, check: HostCheck, auths: AuthMethod[], signal?: AbortSignal): Promise<true> {
    client.on('error', () => {}); // later errors reach the channel through 'close'
    return new Promise((resolve, reject) => {
      const onAbort = () => settle(signal!.reason);
      const onError = (err: Error & { level?: string }) => settle(this.connectError(err, check, auths));
      const onClose = () => settle(check.refusal ?? new BlkError(ExitCode.REMOTE, `cannot connect to ${this.where()}: connection closed during the handshake`));
      const settle = (err?: unknown) => {
        signal?.removeEventListener('abort', onAbort);
        client.off('error', onError).off('close', onClose).off('ready', onReady);
        if (err === undefined) return resolve(true);
        client.destroy();
        reject(err);
      };
      const onReady = () => settle();
      signal?.addEventListener('abort', onAbort, { once: true });
      client.on('ready', onReady).on('error', onError).on('close', onClose);
      client.connect(cfg);
    });
  }

  private connectError(err: Error & { level?: string }, check: HostCheck, auths: AuthMethod[]): BlkError {
    if (check.refusal) return check.refusal;
    const where = this.where();
    if (err.level === 'client-authentication') {
      return new BlkError(ExitCode.AUTH, `ssh authentication to ${where} failed (the server accepted none of: ${describeAuth(auths)})`, { cause: err });
    }
    const code = (err as NodeJS.ErrnoException).code;
    return new BlkError(ExitCode.REMOTE, `cannot connect to ${where}: ${code ? code + ', ' : ''}${err.message}`, { cause: err });
  }

  private exec(client: Client, sock: Socket, signal?: AbortSignal): Promise<Channel> {
    const command = serverCommand(this.opts.remoteCmd);
    return new Promise((resolve, reject) => {
      signal?.throwIfAborted();
      client.exec(command, (err, stream) => {
        if (err) return reject(new BlkError(ExitCode.REMOTE, `cannot start "${command}" on ${this.where()}: ${err.message}`, { cause: err }));
        resolve(this.channel(client, stream, command, sock));
      });
    });
  }

  private channel(client: Client, stream: ClientChannel, command: string, sock: Socket): Channel {
    const end = new ServerEnd(this.where(), command, stream, stream, stream.stderr, sock);
    stream.on('exit', (code: number | null, sig?: string) => end.exitedWith(code ?? null, sig));
    stream.on('close', () => end.lost(new Error('the channel closed without an exit status')));
    client.on('error', (err) => end.lost(err));
    let clientClosed = false;
    client.on('close', () => {
      clientClosed = true;
      end.lost(new Error('connection closed'));
    });
    let closing: Promise<number | null> | undefined;
    const close = async (): Promise<number | null> => {
      end.finish();
      const timeout = this.opts.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
      const info = await withTimeout(end.exited, timeout);
      if (!info) {
        log.warn(`remote server on ${this.where()} did not exit within ${timeout / 1000} s of end of input: closing the connection`);
        trySignal(stream); // honoured for non-root sessions only (FACTS.md); the server exits on EOF anyway
      }
      if (!clientClosed) await endClient(client);
      return info?.code ?? null;
    };
    return {
      input: end.input,
      output: end.output,
      stderrTail: () => end.tail.text(),
      close: () => (closing ??= close()),
    };
  }

  private where(): string {
    return this.label.slice('ssh '.length);
  }
}

function trySignal(stream: ClientChannel): void {
  try {
    stream.signal('TERM');
  } catch {
    // the channel is already closed
  }
}

// Ends the connection politely; destroys it when the peer does not close within 2 s.
async function endClient(client: Client): Promise<void> {
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.end();
  await withTimeout(closed, 2_000);
  client.destroy();
}
