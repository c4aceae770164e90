// Shared by the SSH and --rsh transports: the bounded tail of the server's stderr, the errors
// for a server that failed before saying anything, and the exec command (device paths never go
// on it: they travel inside the protocol).
// ServerEnd turns a server's stdout/stdin/stderr into the Channel streams:
//   stdout -> input (a PassThrough, backpressure kept); output -> stdin.
//   server exited (status known) and stdout ended -> input ends, or, when it failed before
//   sending a byte, input errors with exitedEarly (so the engine shows stderr, not "EOF");
//   connection gone before an exit status -> input and output error with connectionLost.
// Memory: two stream buffers (64 KiB each) and the stderr tail, at most TAIL_BYTES (8 KiB).
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { BlkError, ExitCode } from '../errors.js';

export const TAIL_BYTES = 8 * 1024;

/** The command a remote shell runs: `${remoteCmd} server`, e.g. "blkdelta server". */
export function serverCommand(remoteCmd = 'blkdelta'): string {
  return `${remoteCmd} server`;
}

/** Keeps the last TAIL_BYTES of what a stream wrote; never holds more. */
export class TailBuffer {
  private buf = Buffer.alloc(0);

  attach(stream: Readable): this {
    stream.on('data', (chunk: Buffer | string) => this.add(Buffer.from(chunk)));
    stream.on('error', () => {});
    return this;
  }

  add(chunk: Buffer): void {
    const joined = Buffer.concat([this.buf, chunk.length > TAIL_BYTES ? chunk.subarray(-TAIL_BYTES) : chunk]);
    this.buf = joined.length > TAIL_BYTES ? Buffer.from(joined.subarray(-TAIL_BYTES)) : joined;
  }

  text(): string {
    return this.buf.toString('utf8').trim();
  }
}

/**
 * The error for a server that exited with a failure before sending a byte (missing binary,
 * bad --remote-cmd, refused by a forced command...): names the command, the status and stderr.
 */
export function exitedEarly(where: string, command: string, status: number | null, signal: string | undefined, tail: string): BlkError {
  const how = status !== null ? `exited with status ${status}` : `was killed by ${signal ?? 'a signal'}`;
  const hint = status === 127 ? ' (is blkdelta installed there? --remote-cmd sets its path)' : '';
  const said = tail ? `: ${tail}` : ' and printed nothing';
  return new BlkError(ExitCode.REMOTE, `remote command "${command}" on ${where} ${how}${hint}${said}`);
}

/** The error for a connection that went away before the server reported its exit. */
export function connectionLost(where: string, cause: unknown, tail: string): BlkError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  const said = tail ? ` (remote stderr: ${tail})` : '';
  return new BlkError(ExitCode.REMOTE, `connection to ${where} lost${why}${said}`, { cause });
}

export interface ExitInfo {
  code: number | null;
  signal?: string;
  lost?: boolean;
}

/** The client-side half of a running server: see the header. */
export class ServerEnd {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  readonly tail = new TailBuffer();
  /** Resolves once the server's exit status is known or the connection is lost. */
  readonly exited: Promise<ExitInfo>;
  private resolveExit!: (e: ExitInfo) => void;
  private exit: ExitInfo | undefined;
  private bytesIn = 0;
  private stdoutEnded = false;

  constructor(readonly where: string, readonly command: string, private readonly stdout: Readable, stdin: Writable, stderr: Readable) {
    this.exited = new Promise((r) => (this.resolveExit = r));
    this.tail.attach(stderr);
    stdout.on('data', (c: Buffer) => (this.bytesIn += c.length));
    stdout.pipe(this.input, { end: false });
    stdout.once('end', () => {
      this.stdoutEnded = true;
      this.settle();
    });
    stdout.on('error', (err) => this.lost(err));
    this.output.pipe(stdin);
    stdin.on('error', (err) => this.lost(err));
  }

  /** Ends the server's stdin and discards what it still sends, so it never blocks writing to us. */
  finish(): void {
    this.output.end();
    this.stdout.unpipe(this.input);
    this.stdout.resume();
  }

  /** The server reported its exit status (or signal). */
  exitedWith(code: number | null, signal?: string): void {
    if (this.exit) return;
    this.exit = { code, signal };
    this.resolveExit(this.exit);
    this.settle();
  }

  /** The connection or process went away; a no-op once the exit status is known. */
  lost(cause: unknown): void {
    if (this.exit) return;
    this.exit = { code: null, lost: true };
    this.resolveExit(this.exit);
    const err = connectionLost(this.where, cause, this.tail.text());
    this.input.destroy(err);
    this.output.destroy(err);
  }

  private settle(): void {
    if (!this.exit || this.exit.lost || !this.stdoutEnded || this.input.writableEnded) return;
    const { code, signal } = this.exit;
    if (code !== 0 && this.bytesIn === 0) {
      this.input.destroy(exitedEarly(this.where, this.command, code, signal, this.tail.text()));
    } else {
      this.input.end();
    }
  }
}
