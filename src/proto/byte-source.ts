// Where FrameReader (wire.ts) gets its bytes: a ByteSource hands them over to a synchronous
// `take` that consumes what it can and says how much. Two of them:
//   ReadableSource: a Readable's chunks (a child's stdout, an ssh2 channel, a test's PassThrough);
//     each chunk is a buffer of its own, counted towards the next GC (gc.ts).
//   OnreadSource: a net.Socket read with the `onread` option (the server's stdin, openStdin): every
//     read lands in one buffer, reused; no allocation per read. `take` runs inside the read's
//     callback, while the bytes are valid: a placed record's data goes from there straight to its
//     batch slot. What it leaves (a frame ended mid-read, the reader waiting for a write behind the
//     record) is copied to a staging buffer before the callback returns, and the socket paused
//     until the reader has consumed it and asks for more.
// Memory (OnreadSource): the read buffer (READ_SIZE, 64 KiB) and the staging buffer; staging holds
// what one read left, so at most READ_SIZE (it grows only should a read ever arrive while paused).
// Interrupted: nothing to clean up; a read in flight ends with the socket (destroy).
import { fstatSync } from 'node:fs';
import type { OnReadOpts, Socket, SocketConstructorOpts } from 'node:net';
import type { Readable } from 'node:stream';
import { gcAfter } from '../gc.js';

/** Bytes read from the socket at a time (a pipe's default capacity). */
export const READ_SIZE = 64 * 1024;

/**
 * Consumes bytes: called synchronously with the next bytes available (valid during the call
 * only), returns how many it took (0 to bytes.length); the rest is offered again by the next pull.
 */
export type Take = (bytes: Buffer) => number;

export interface ByteSource {
  /**
   * Calls take once with the next bytes; resolves true after it ran, false at the end of the
   * stream (take not called). Rejects with a stream error or what take threw. placing: the bytes
   * are mostly copied out at once (a placed record's data), a hint for the GC budget.
   */
  pull(take: Take, placing: boolean): Promise<boolean>;
}

export function isByteSource(x: unknown): x is ByteSource {
  return typeof (x as Partial<ByteSource>).pull === 'function';
}

/**
 * What a chunk read for a placed frame counts towards the next full GC (gc.ts): it is copied out
 * as it arrives, so scavenges free it and none is promoted. A 4 GiB full copy's server, measured:
 * a full GC every 64 MiB of chunks vs every 512 MiB, peak RSS 74.0-74.6 MiB both, 0.5-1.5 s less CPU.
 */
export const PLACED_FULL_WEIGHT = 1 / 8;

const EMPTY = Buffer.alloc(0);

/** A Readable's chunks, through its async iterator: one chunk held at a time. */
export class ReadableSource implements ByteSource {
  private readonly it: AsyncIterator<Buffer | string>;
  private rest: Buffer = EMPTY;

  constructor(input: Readable) {
    this.it = input[Symbol.asyncIterator]();
  }

  async pull(take: Take, placing: boolean): Promise<boolean> {
    if (this.rest.length === 0) {
      const r = await this.it.next();
      if (r.done) return false;
      this.rest = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      gcAfter(this.rest.length, placing ? PLACED_FULL_WEIGHT : 1);
    }
    this.rest = this.rest.subarray(take(this.rest));
    return true;
  }
}

interface Waiter { take: Take; resolve: (more: boolean) => void; reject: (err: unknown) => void }

/** A socket read into one reused buffer (see the header). `open` makes the socket with the onread option given. */
export class OnreadSource implements ByteSource {
  readonly socket: Socket;
  private staged: Buffer;
  private stagedAt = 0;
  private stagedEnd = 0;
  private waiter: Waiter | undefined;
  /** The last read's callback returned false: the socket reads no more until resumed. */
  private paused = false;
  private ended = false;
  private failed: { err: unknown } | undefined;

  constructor(open: (onread: OnReadOpts) => Socket, size = READ_SIZE) {
    this.staged = Buffer.allocUnsafe(size);
    this.socket = open({ buffer: Buffer.allocUnsafe(size), callback: (n, buf) => this.onRead(n, buf as Buffer) });
    this.socket.on('end', () => this.settle()).on('close', () => this.settle()).on('error', (err) => this.settle({ err }));
  }

  pull(take: Take): Promise<boolean> {
    if (this.failed) return Promise.reject(this.failed.err); // destroyed (an abort): at once, staged bytes or not
    if (this.stagedEnd > this.stagedAt) return this.fromStaging(take);
    if (this.ended) return Promise.resolve(false);
    if (this.waiter) return Promise.reject(new Error('OnreadSource: a pull is already waiting'));
    return new Promise((resolve, reject) => {
      this.waiter = { take, resolve, reject };
      if (!this.paused) return;
      this.paused = false;
      this.socket.resume();
    });
  }

  /** Bytes staged so far (tests: the bound). */
  get stagedBytes(): number {
    return this.stagedEnd - this.stagedAt;
  }

  private fromStaging(take: Take): Promise<boolean> {
    try {
      this.stagedAt += take(this.staged.subarray(this.stagedAt, this.stagedEnd));
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.stagedAt === this.stagedEnd) this.stagedAt = this.stagedEnd = 0;
    return Promise.resolve(true);
  }

  // One read's n bytes in buf: to the waiting take first; the rest is staged and the socket
  // paused (returning false) until the reader drained it.
  private onRead(n: number, buf: Buffer): boolean {
    const w = this.waiter;
    this.waiter = undefined;
    let used = 0;
    if (w) {
      try {
        used = w.take(buf.subarray(0, n));
        w.resolve(true);
      } catch (err) {
        w.reject(err);
      }
    }
    if (used === n) return true;
    this.stage(buf, used, n);
    this.paused = true;
    return false;
  }

  private stage(buf: Buffer, from: number, to: number): void {
    const k = to - from;
    if (this.stagedEnd + k > this.staged.length) {
      const kept = this.stagedEnd - this.stagedAt;
      const into = kept + k > this.staged.length ? Buffer.allocUnsafe(kept + k) : this.staged;
      this.staged.copy(into, 0, this.stagedAt, this.stagedEnd);
      this.staged = into;
      this.stagedAt = 0;
      this.stagedEnd = kept;
    }
    this.stagedEnd += buf.copy(this.staged, this.stagedEnd, from, to);
  }

  // The end of the stream (end, close) or its failure (error, destroy(err)): a waiting pull settles.
  private settle(failure?: { err: unknown }): void {
    if (failure) this.failed ??= failure;
    else this.ended = true;
    const w = this.waiter;
    this.waiter = undefined;
    if (w && this.failed) w.reject(this.failed.err);
    else w?.resolve(false);
  }
}

/**
 * The server's stdin as an OnreadSource. undefined when fd 0 is not a pipe or socket (a file, a
 * terminal; or process.stdin already made): read process.stdin then. Otherwise process.stdin is
 * this socket from now on: a second handle on fd 0 fails (EEXIST), and Node makes one on the
 * first use of process.stdin, which includes the first import of node:process (its ESM facade
 * reads every property: a dependency that imports node:process, for instance).
 */
export function openStdin(): OnreadSource | undefined {
  if (!isPipeOrSocket(0)) return undefined; // node:net is loaded only then: a bare server's start-up
  const { Socket } = process.getBuiltinModule('node:net') as typeof import('node:net');
  let src: OnreadSource;
  try {
    src = new OnreadSource((onread) => new Socket({ fd: 0, readable: true, writable: false, onread } as SocketConstructorOpts));
  } catch {
    return undefined;
  }
  const d = Object.getOwnPropertyDescriptor(process, 'stdin');
  Object.defineProperty(process, 'stdin', { configurable: true, enumerable: d?.enumerable ?? true, get: () => src.socket });
  return src;
}

function isPipeOrSocket(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false; // closed
  }
}
