// Glue between the command line and the remote transports: the SSH options that sync and verify
// add to their builders, and transportFor(), which picks SshTransport (built-in ssh2 client) or
// RshTransport (--rsh, an external command) for a remote endpoint. Options are validated here,
// before anything connects, so a bad --bwlimit or --rsh is a usage error naming the option.
// The transport's module (ssh.js and its host-key and auth glue, or rsh.js) loads only when a
// remote end is named: a local sync does not pay for it (~30 ms of start-up CPU here).
import type { Argv } from 'yargs';
import { BlkError, ExitCode } from '../errors.js';
import type { RemoteEndpoint } from './address.js';
import { parseRate } from './throttle.js';
import type { Transport } from './transport.js';

// identity and known-hosts are repeatable but not yargs arrays: an array option would swallow
// SRC and DST in `sync -i KEY SRC DST`.
export interface RemoteArgs {
  identity?: string | string[];
  'known-hosts'?: string | string[];
  'accept-new-host-key'?: boolean;
  'remote-cmd'?: string;
  rsh?: string;
  bwlimit?: string;
  'connect-timeout'?: number;
}

/** The options that only make sense with a remote end (refused on a local sync). */
export const SSH_OPTIONS = ['identity', 'known-hosts', 'accept-new-host-key', 'remote-cmd', 'rsh', 'connect-timeout'] as const;

/** The SSH options of sync and verify: `remoteOptions(y).option(...)`. */
export function remoteOptions<T>(y: Argv<T>) {
  return y
    .option('identity', { alias: 'i', type: 'string', requiresArg: true, describe: 'ssh private key file (passphrase-less, or loaded in ssh-agent); repeatable. Default: ssh-agent, ~/.ssh/id_ed25519, id_ecdsa, id_rsa' })
    .option('known-hosts', { type: 'string', requiresArg: true, describe: 'known_hosts files to check the host key against (default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts)' })
    .option('accept-new-host-key', { type: 'boolean', describe: 'add an unknown host key to known_hosts (a changed key is still refused)' })
    .option('remote-cmd', { type: 'string', requiresArg: true, describe: 'how to start blkdelta on the remote host (default: blkdelta); runs "<cmd> server"' })
    .option('rsh', { type: 'string', requiresArg: true, describe: 'connect with this external command instead, e.g. "ssh -p 2222 -o ProxyJump=gw"' })
    .option('bwlimit', { type: 'string', requiresArg: true, describe: 'cap the bytes per second sent each way between the two ends, local or remote (40M, 512K, 1G, bytes)' })
    .option('connect-timeout', { type: 'number', requiresArg: true, describe: 'seconds to wait for the ssh connection and handshake (default 30)' })
    .conflicts('rsh', ['identity', 'known-hosts', 'accept-new-host-key'])
    .group(['identity', 'known-hosts', 'accept-new-host-key', 'remote-cmd', 'rsh', 'connect-timeout'], 'SSH (when SRC or DST is [user@]host:/path):');
}

/** The transport that reaches a remote endpoint with the command line's options. */
export async function transportFor(e: RemoteEndpoint, argv: RemoteArgs): Promise<Transport> {
  const bwlimit = argv.bwlimit !== undefined ? parseRate(argv.bwlimit, '--bwlimit') : undefined;
  const remoteCmd = argv['remote-cmd'];
  if (remoteCmd !== undefined && remoteCmd.trim() === '') throw new BlkError(ExitCode.USAGE, '--remote-cmd is empty');
  if (argv.rsh !== undefined) {
    const { RshTransport, splitWords } = await import('./rsh.js');
    splitWords(argv.rsh);
    return new RshTransport({ rsh: argv.rsh, host: e.host, user: e.user, port: e.port, remoteCmd, bwlimit });
  }
  const timeout = argv['connect-timeout'] ?? 30;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new BlkError(ExitCode.USAGE, `--connect-timeout ${String(argv['connect-timeout'])}: expected a number of seconds above 0`);
  }
  const { SshTransport } = await import('./ssh.js');
  return new SshTransport({
    host: e.host, port: e.port, user: e.user, identityFiles: list(argv.identity), knownHostsFiles: list(argv['known-hosts']),
    acceptNewHostKey: argv['accept-new-host-key'], remoteCmd, bwlimit, connectTimeoutMs: timeout * 1000,
  });
}

function list(v: string | string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : ([] as string[]).concat(v);
}
