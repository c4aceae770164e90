// Shared by the SSH and --rsh transports: the bounded tail of the server's stderr, the errors
// for a server that failed before saying anything, and the exec command (device paths never go
// on it: they travel inside the protocol).
// ServerEnd turns a server's stdout/stdin/stderr into the Channel streams:
//   stdout -> input (a PassThrough, backpressure kept); output -> stdin through a Forwarder,
//   whose write callbacks fire only when stdin's do (the engine reuses a buffer once its write
//   callback ran, so a buffering PassThrough here would let it overwrite queued data).
//   server exited -> pending and later writes fail, naming the exit status and stderr.
//   server exited (status known) and stdout ended -> input ends, or, when it failed before
//   sending a byte, input errors with exitedEarly (so the engine shows stderr, not "EOF");
//   connection gone before an exit status -> input and output error with connectionLost.
// Memory: the input PassThrough (64 KiB), the Forwarder's queue (16 KiB of references to the
// caller's buffers, nothing copied) and the stderr tail, at most TAIL_BYTES (8 KiB).
import { PassThrough, Writable, type Readable } from 'node:stream';
import { BlkError, ExitCode, printable } from '../errors.js';
import { gcAfterSsh } from '../gc.js';

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

  /** The tail as printable text (control characters escaped: it comes from the other host). */
  text(): string {
    return printable(this.buf.toString('utf8').trim());
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

/**
 * A Writable that hands each chunk to `inner` and calls back only when inner calls back: no
 * copy, and the caller's buffer is free exactly when its callback runs. fail() errors the write
 * in flight (ssh2 never calls back once its channel is closed) and every later one.
 * `below`, if given, is the TCP socket under ssh2: a write also waits for it to drain (ssh2
 * turns a write into packets at once and queues them on its socket whatever the socket says:
 * 2 MiB less peak RSS), and counts towards gc.ts's full-GC budget for ssh2's packet buffers.
 */
export class Forwarder extends Writable {
  private pending: ((err?: Error | null) => void) | undefined;

  constructor(private readonly inner: Writable, private readonly below?: Writable) {
    super();
    this.on('error', () => {}); // writers see errors through their callbacks
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.below) gcAfterSsh(chunk.length);
    this.pending = cb;
    const done = (err?: Error | null) => {
      if (this.pending !== cb) return;
      this.pending = undefined;
      cb(err);
    };
    this.inner.write(chunk, (err) => {
      if (!err && this.below?.writableNeedDrain) this.below.once('drain', () => done());
      else done(err);
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end();
    cb();
  }

  fail(err: Error): void {
    const cb = this.pending;
    this.pending = undefined;
    cb?.(err);
    if (!this.writableFinished) this.destroy(err);
  }
}

/** The client-side half of a running server: see the header. */
export class ServerEnd {
  readonly input = new PassThrough();
  readonly output: Forwarder;
  readonly tail = new TailBuffer();
  /** Resolves once the server's exit status is known or the connection is lost. */
  readonly exited: Promise<ExitInfo>;
  private resolveExit!: (e: ExitInfo) => void;
  private exit: ExitInfo | undefined;
  private bytesIn = 0;
  private stdoutEnded = false;

  /** `socket`: the connection under stdin, when there is one to wait for (see Forwarder). */
  constructor(readonly where: string, readonly command: string, private readonly stdout: Readable, stdin: Writable, stderr: Readable, socket?: Writable) {
    this.exited = new Promise((r) => (this.resolveExit = r));
    this.tail.attach(stderr);
    this.input.on('error', () => {}); // the reader sees errors through its iterator
    stdout.on('data', (c: Buffer) => (this.bytesIn += c.length));
    stdout.pipe(this.input, { end: false });
    stdout.once('end', () => {
      this.stdoutEnded = true;
      this.settle();
    });
    stdout.on('error', (err) => this.lost(err));
    this.output = new Forwarder(stdin, socket);
    stdin.on('error', (err) => this.lost(err));
  }

  /** Ends the server's stdin and discards what it still sends, so it never blocks writing to us. */
  finish(): void {
    this.output.end();
    this.stdout.unpipe(this.input);
    this.stdout.resume();
  }

  /** The server reported its exit status (or signal): it reads nothing more. */
  exitedWith(code: number | null, signal?: string): void {
    if (this.exit) return;
    this.exit = { code, signal };
    this.resolveExit(this.exit);
    const tail = this.tail.text();
    const how = code !== null ? `with status ${code}` : `on ${signal ?? 'a signal'}`;
    this.output.fail(new BlkError(ExitCode.REMOTE, `the server on ${this.where} exited ${how}${tail ? `: ${tail}` : ''}`));
    this.settle();
  }

  /** The connection or process went away; a no-op once the exit status is known. */
  lost(cause: unknown): void {
    if (this.exit) return;
    this.exit = { code: null, lost: true };
    this.resolveExit(this.exit);
    const err = connectionLost(this.where, cause, this.tail.text());
    this.input.destroy(err);
    this.output.fail(err);
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
