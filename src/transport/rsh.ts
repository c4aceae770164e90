// RshTransport: `--rsh "ssh -p 2222 -o ProxyJump=gw"` runs `blkdelta server` through an external
// command, for what ssh_config does and ssh2 does not (ProxyJump, GSSAPI, ControlMaster...).
//   argv = splitWords(rsh) + [-p PORT] + -- + [user@]host + "${remoteCmd} server"
// ('--' ends ssh's options: the destination is never read as one; OpenSSH accepts it)
// spawned without a shell; the device path travels inside the protocol, never on this argv.
// The external command checks host keys itself (OpenSSH: known_hosts, StrictHostKeyChecking).
// Exit 255 (OpenSSH's own failures: connection refused or lost, host key, auth) counts as a
// lost connection. close(): end the command's stdin, wait for it to exit up to closeTimeoutMs,
// then SIGTERM, then SIGKILL 2 s later. Memory: the ServerEnd buffers.
import { spawn, type ChildProcess } from 'node:child_process';
import { BlkError, ExitCode } from '../errors.js';
import { CLOSE_TIMEOUT_MS, withTimeout, type Channel, type Transport } from './transport.js';
import { ServerEnd, serverCommand } from './remote-end.js';
import { throttleChannel } from './throttle.js';

export interface RshOptions {
  /** The --rsh command line, split with splitWords. */
  rsh: string;
  host: string;
  user?: string;
  port?: number;
  remoteCmd?: string;
  bwlimit?: number;
  closeTimeoutMs?: number;
}

/** Splits a command line like a POSIX shell would split words (quotes, backslashes), no expansion. */
export function splitWords(line: string, option = '--rsh'): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) word += line[++i];
      else word += c;
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new BlkError(ExitCode.USAGE, `${option} "${line}": ends with a backslash`);
      word = (word ?? '') + line[++i];
    } else word = (word ?? '') + c;
  }
  if (quote) throw new BlkError(ExitCode.USAGE, `${option} "${line}": unterminated ${quote} quote`);
  if (word !== undefined) words.push(word);
  if (words.length === 0) throw new BlkError(ExitCode.USAGE, `${option} is empty: name a command such as "ssh -p 2222"`);
  return words;
}

/** The full argv RshTransport runs (exported for tests and --debug output). */
export function rshArgv(o: RshOptions): string[] {
  const dest = o.user ? `${o.user}@${o.host}` : o.host;
  return [...splitWords(o.rsh), ...(o.port ? ['-p', String(o.port)] : []), '--', dest, serverCommand(o.remoteCmd)];
}

export class RshTransport implements Transport {
  readonly label: string;
  private readonly argv: string[];

  constructor(private readonly opts: RshOptions) {
    this.argv = rshArgv(opts);
    this.label = `${this.argv[0]} ${opts.user ? opts.user + '@' : ''}${opts.host}`;
  }

  async open(signal?: AbortSignal): Promise<Channel> {
    signal?.throwIfAborted();
    const [cmd, ...args] = this.argv;
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new BlkError(ExitCode.REMOTE, `cannot run --rsh command ${cmd}: ${err.message}`, { cause: err })));
    });
    const ch = this.channel(child);
    return this.opts.bwlimit ? throttleChannel(ch, this.opts.bwlimit) : ch;
  }

  private channel(child: ChildProcess): Channel {
    const end = new ServerEnd(this.label, this.argv.at(-1)!, child.stdout!, child.stdin!, child.stderr!);
    child.once('exit', (code, sig) => {
      if (code === 255) end.lost(new Error(`${this.argv[0]} exited with status 255`));
      else end.exitedWith(code, sig ?? undefined);
    });
    let closing: Promise<number | null> | undefined;
    const close = async (): Promise<number | null> => {
      end.finish();
      const info = await withTimeout(end.exited, this.opts.closeTimeoutMs ?? CLOSE_TIMEOUT_MS);
      if (info) return info.code;
      child.kill('SIGTERM');
      const late = await withTimeout(end.exited, 2_000);
      if (!late) child.kill('SIGKILL');
      return null;
    };
    return { input: end.input, output: end.output, stderrTail: () => end.tail.text(), close: () => (closing ??= close()) };
  }
}
