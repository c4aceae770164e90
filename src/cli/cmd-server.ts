// `blkdelta server`: the remote end, speaking the protocol on stdin/stdout. Hidden from the main
// help; run by LocalTransport and by sshd (see docs/ssh.md for the authorized_keys line).
// Its policy comes from `--config FILE` ([server] table, server/config.ts) and the flags, which
// override the file. Parsed without yargs (parseServerArgs): it starts for every sync; the
// config file's reader (server/config.ts, the TOML parser) loads only with --config.
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { DEFAULT_SOURCE_SNAPSHOT, makePolicy, MAX_WAIT_TIMEOUT, type ServerConfig } from '../server/policy.js';
import { log } from '../log.js';
import { openStdin } from '../proto/byte-source.js';
import { serve } from '../server/session.js';
import { parseDuration } from '../units.js';
import { cli, type Command } from './context.js';

/** What the command line says; absent fields leave the file's (or the default) value. */
export interface ServerArgs {
  config?: string;
  allow: string[];
  readOnly: boolean;
  maxConcurrent?: number;
  waitTimeout?: number;
  stateDir?: string;
}

export const SERVER_EXIT_CODES = [ExitCode.OK, ExitCode.USAGE, ExitCode.SOURCE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH, ExitCode.IO, ExitCode.REMOTE,
  ExitCode.PERMISSION, ExitCode.SNAPSHOT, ExitCode.SNAPSHOT_OVERFLOW, ExitCode.CONFIG, ExitCode.BUSY, ExitCode.INTERRUPTED];

export const serverCommand: Command<object> = {
  command: 'server',
  describe: false,
  builder: (y) =>
    y
      .option('config', { type: 'string', describe: 'the server policy file ([server] table, see docs/ssh.md)' })
      .option('allow', { type: 'string', array: true, describe: 'only these device paths (globs, * does not cross /); repeatable; overrides allow' })
      .option('read-only', { type: 'boolean', describe: 'refuse every write' })
      .option('max-concurrent', { type: 'number', describe: 'sessions at once on this host, across all server processes (1-64)' })
      .option('wait-timeout', { type: 'string', describe: 'how long a session over --max-concurrent waits for a slot (e.g. 30m; 0: refuse at once)' })
      .option('state-dir', { type: 'string', describe: 'where the slot locks live (default /var/lib/blkdelta)' })
      .example('blkdelta server --config /etc/blkdelta/server.toml', 'in authorized_keys: restrict,command="..." ssh-ed25519 AAAA...')
      .example("blkdelta server --allow '/dev/backup/*' --max-concurrent 2", 'the same without a file')
      .epilogue('Speaks the blkdelta protocol on stdin/stdout and exits when stdin closes.\n\n' + exitStatusText(SERVER_EXIT_CODES)),
  handler: () => serverMain(process.argv.slice(process.argv.indexOf('server') + 1)),
};

/** The effective policy: the file (if any), then the flags on top; USAGE/CONFIG errors name the culprit. */
export async function serverConfigOf(a: ServerArgs): Promise<ServerConfig> {
  const file: ServerConfig = a.config ? (await import('../server/config.js')).loadServerConfig(a.config) : { allow: [], readOnly: false };
  const cfg: ServerConfig = { ...file, ...makePolicy(a.allow.length ? a.allow : file.allow, a.readOnly || file.readOnly) };
  if (a.maxConcurrent !== undefined) cfg.maxConcurrent = a.maxConcurrent;
  if (a.waitTimeout !== undefined) cfg.waitTimeout = a.waitTimeout;
  if (a.stateDir !== undefined) cfg.stateDir = a.stateDir;
  // a pull's source snapshot: the defaults on an open server; one with an allow list needs a
  // [server.source_snapshot] policy and refuses without it (exit 12)
  if (cfg.allow.length === 0 && !cfg.sourceSnapshot) cfg.sourceSnapshot = DEFAULT_SOURCE_SNAPSHOT;
  return cfg;
}

/**
 * `blkdelta server [--config FILE] [--allow GLOB...] [--read-only] [--max-concurrent N]
 * [--wait-timeout DUR] [--state-dir DIR]` without yargs, as main() runs it: the far end of every
 * sync starts ~0.1 s sooner and ~14 MiB smaller. --allow takes every value up to the next option;
 * every option also takes --opt=VALUE.
 */
export function parseServerArgs(args: readonly string[]): ServerArgs {
  const out: ServerArgs = { allow: [], readOnly: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      if (i + 1 >= args.length || args[i + 1]!.startsWith('--')) throw usage(`${name} needs a value`);
      return args[++i]!;
    };
    if (name === '--read-only' && eq < 0) out.readOnly = true;
    else if (name === '--allow' && eq > 0) out.allow.push(value());
    else if (name === '--allow') {
      if (i + 1 >= args.length || args[i + 1]!.startsWith('--')) throw usage('--allow needs a device path glob');
      while (i + 1 < args.length && !args[i + 1]!.startsWith('--')) out.allow.push(args[++i]!);
    } else if (name === '--config') out.config = nonEmpty(name, value());
    else if (name === '--max-concurrent') out.maxConcurrent = maxConcurrentArg(value());
    else if (name === '--wait-timeout') out.waitTimeout = waitTimeoutArg(value());
    else if (name === '--state-dir') out.stateDir = absolute(name, value());
    else throw usage(`unknown argument ${JSON.stringify(a)} (see blkdelta server --help)`);
  }
  for (const g of out.allow) if (g === '') throw usage('an empty --allow glob is an error (it never means "everything")');
  return out;
}

function usage(msg: string): BlkError {
  return new BlkError(ExitCode.USAGE, `server: ${msg}`);
}

function nonEmpty(name: string, v: string): string {
  if (v === '') throw usage(`${name} needs a value`);
  return v;
}

function absolute(name: string, v: string): string {
  if (!nonEmpty(name, v).startsWith('/')) throw usage(`${name} "${v}" is not an absolute path`);
  return v;
}

function maxConcurrentArg(v: string): number {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) throw usage(`--max-concurrent must be a whole number from 1 to 64, got "${v}"`);
  return n;
}

function waitTimeoutArg(v: string): number {
  let s: number;
  try {
    s = parseDuration(v);
  } catch (err) {
    throw usage(`--wait-timeout: ${(err as Error).message}`);
  }
  if (s > MAX_WAIT_TIMEOUT) throw usage(`--wait-timeout "${v}" is above the maximum of 7 days`);
  return s;
}

export async function serverMain(args: readonly string[]): Promise<number> {
  const cfg = await serverConfigOf(parseServerArgs(args));
  // A client killed mid-session makes our next write fail with EPIPE: without a listener that
  // 'error' event would crash the process before the session's cleanup (a source snapshot's
  // removal) ran. The pending write rejects anyway, so the session ends through its finally.
  process.stdout.on('error', () => { /* the client is gone: see above */ });
  // stdin read into one reused buffer (proto/byte-source.ts); process.stdin only when fd 0 is a
  // file or a terminal: never both, two handles on fd 0 would take turns at its bytes
  const stdin = openStdin();
  log.debug(stdin ? 'stdin: read into one reused buffer' : 'stdin: not a pipe or socket, read through process.stdin');
  return serve(stdin ?? process.stdin, process.stdout, { config: cfg, signal: cli.abort.signal });
}
