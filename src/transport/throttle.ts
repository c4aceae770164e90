// --bwlimit: a token bucket capping the bytes per second through a stream, and a Channel wrapper
// that applies one bucket to each direction: a Throttle Transform on what the server sends, a
// ThrottledWriter on what we send (its write callbacks fire only when the channel's do, since
// the engine reuses a buffer as soon as its write called back).
//   bucket holds up to `burst` = max(16 KiB, rate/10) tokens, refilled at `rate` per second;
//   each chunk is passed on in pieces of at most `burst` bytes; a piece takes its size in
//   tokens (the balance may go negative) and, when negative, waits until it is paid back.
// Memory: one incoming chunk plus the Transform's two 64 KiB buffers; backpressure is kept
// (the callback for a chunk runs only after its last piece went out and its debt was paid).
// Rates: plain bytes/s, or with K, M, G (powers of 1024), optionally followed by "B", "iB", "/s".
import { Transform, Writable, pipeline, type TransformCallback } from 'node:stream';
import { BlkError, ExitCode } from '../errors.js';
import type { Channel, Transport } from './transport.js';
import { parseSize } from '../units.js';

/** Parses a --bwlimit RATE ("40M", "512K", "1G", "1000000") into bytes per second; "0" is no limit (0). */
export function parseRate(text: string, option = '--bwlimit'): number {
  let bytes = NaN;
  try {
    bytes = parseSize(text, option);
  } catch { /* reported below */ }
  if (!(bytes >= 1) && !(bytes === 0 && /^0+$/.test(text.trim()))) {
    throw new BlkError(ExitCode.USAGE, `${option} "${text}": expected bytes per second such as 40M, 512K, 1G or 1000000 (0: no limit)`);
  }
  return bytes;
}

/** The token bucket: take(n) says how long to wait before sending n more bytes. */
export class TokenBucket {
  readonly burst: number;
  private tokens: number;
  private last = performance.now();

  constructor(readonly rate: number) {
    this.burst = Math.max(16 * 1024, Math.floor(rate / 10));
    this.tokens = this.burst;
  }

  /** Takes n tokens (the balance may go negative); returns the milliseconds to wait after sending. */
  take(n: number): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate) - n;
    this.last = now;
    return this.tokens < 0 ? Math.ceil((-this.tokens / this.rate) * 1000) : 0;
  }
}

/** A pass-through Transform that averages at most `rate` bytes per second. */
export class Throttle extends Transform {
  private readonly bucket: TokenBucket;
  private timer: NodeJS.Timeout | undefined;

  constructor(rate: number) {
    super();
    this.bucket = new TokenBucket(rate);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.sendFrom(chunk, 0, done);
  }

  private sendFrom(chunk: Buffer, offset: number, done: TransformCallback): void {
    if (offset >= chunk.length || this.destroyed) return done();
    const n = Math.min(this.bucket.burst, chunk.length - offset);
    this.push(chunk.subarray(offset, offset + n));
    const waitMs = this.bucket.take(n);
    if (waitMs === 0) return this.sendFrom(chunk, offset + n, done);
    this.timer = setTimeout(() => this.sendFrom(chunk, offset + n, done), waitMs);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    cb(err);
  }
}

/**
 * Writes through to `inner` at most `rate` bytes per second, in pieces of at most one burst;
 * a write calls back when inner called back for its last piece (and its debt is paid).
 */
export class ThrottledWriter extends Writable {
  private readonly bucket: TokenBucket;
  private timer: NodeJS.Timeout | undefined;
  private pending: ((err?: Error | null) => void) | undefined;

  constructor(private readonly inner: Writable, rate: number) {
    super();
    this.bucket = new TokenBucket(rate);
    this.on('error', () => {}); // writers see errors through their callbacks
    inner.on('error', (err) => this.destroy(err)); // keeps the reason (the peer, the exit status)
    inner.on('close', () => this.destroy());
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pending = cb;
    this.writeFrom(chunk, 0);
  }

  // Calls back the write in flight once (destroy may get there first).
  private settle(err?: Error | null): void {
    const cb = this.pending;
    this.pending = undefined;
    cb?.(err);
  }

  private writeFrom(chunk: Buffer, offset: number): void {
    if (this.destroyed) return this.settle(new Error('connection closed'));
    const n = Math.min(this.bucket.burst, chunk.length - offset);
    const waitMs = this.bucket.take(n);
    if (offset + n < chunk.length) {
      this.inner.write(chunk.subarray(offset, offset + n));
      this.timer = setTimeout(() => this.writeFrom(chunk, offset + n), waitMs);
      return;
    }
    this.inner.write(chunk.subarray(offset), (err) => {
      if (err || waitMs === 0) return this.settle(err);
      this.timer = setTimeout(() => this.settle(), waitMs);
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    this.settle(err ?? new Error('connection closed'));
    cb(err);
  }
}

/** The same channel with each direction capped at `rate` bytes per second. */
export function throttleChannel(ch: Channel, rate: number): Channel {
  const input = new Throttle(rate);
  pipeline(ch.input, input, () => {});
  input.on('error', () => {}); // the reader sees errors through its iterator
  const output = new ThrottledWriter(ch.output, rate);
  return {
    input,
    output,
    stderrTail: () => ch.stderrTail(),
    close: () => ch.close(),
  };
}

/** The same transport with each direction of its channels capped at `rate` bytes per second. */
export function throttled(t: Transport, rate: number): Transport {
  return {
    label: `${t.label}, bwlimit ${rate} B/s`,
    open: async (signal) => throttleChannel(await t.open(signal), rate),
  };
}
