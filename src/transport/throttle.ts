// --bwlimit: a token bucket capping the bytes per second through a stream, and a Channel wrapper
// that applies one bucket to each direction.
//   bucket holds up to `burst` = max(16 KiB, rate/10) tokens, refilled at `rate` per second;
//   each chunk is passed on in pieces of at most `burst` bytes; a piece takes its size in
//   tokens (the balance may go negative) and, when negative, waits until it is paid back.
// Memory: one incoming chunk plus the Transform's two 64 KiB buffers; backpressure is kept
// (the callback for a chunk runs only after its last piece went out and its debt was paid).
// Rates: plain bytes/s, or with K, M, G (powers of 1024), optionally followed by "B", "iB", "/s".
import { Transform, pipeline, type TransformCallback } from 'node:stream';
import { BlkError, ExitCode } from '../errors.js';
import type { Channel } from './transport.js';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** Parses a --bwlimit RATE ("40M", "512K", "1G", "1000000") into bytes per second. */
export function parseRate(text: string, option = '--bwlimit'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:\/s)?\s*$/i.exec(text);
  const bytes = m ? Math.floor(Number(m[1]) * UNITS[m[2].toUpperCase()]) : NaN;
  if (!Number.isFinite(bytes) || bytes < 1) {
    throw new BlkError(ExitCode.USAGE, `${option} "${text}": expected bytes per second such as 40M, 512K, 1G or 1000000`);
  }
  return bytes;
}

/** A pass-through Transform that averages at most `rate` bytes per second. */
export class Throttle extends Transform {
  readonly rate: number;
  readonly burst: number;
  private tokens: number;
  private last = performance.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(rate: number) {
    super();
    this.rate = rate;
    this.burst = Math.max(16 * 1024, Math.floor(rate / 10));
    this.tokens = this.burst;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.sendFrom(chunk, 0, done);
  }

  private sendFrom(chunk: Buffer, offset: number, done: TransformCallback): void {
    if (offset >= chunk.length || this.destroyed) return done();
    this.refill();
    const n = Math.min(this.burst, chunk.length - offset);
    this.push(chunk.subarray(offset, offset + n));
    this.tokens -= n;
    const waitMs = this.tokens < 0 ? (-this.tokens / this.rate) * 1000 : 0;
    if (waitMs === 0) return this.sendFrom(chunk, offset + n, done);
    this.timer = setTimeout(() => this.sendFrom(chunk, offset + n, done), Math.ceil(waitMs));
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    cb(err);
  }
}

/** The same channel with each direction capped at `rate` bytes per second. */
export function throttleChannel(ch: Channel, rate: number): Channel {
  const input = new Throttle(rate);
  const output = new Throttle(rate);
  pipeline(ch.input, input, () => {});
  const drained = new Promise<void>((resolve) => pipeline(output, ch.output, () => resolve()));
  return {
    input,
    output,
    stderrTail: () => ch.stderrTail(),
    // Lets the throttled bytes still queued reach the server before the channel closes.
    close: async () => {
      output.end();
      await Promise.race([drained, new Promise((r) => setTimeout(r, 10_000).unref())]);
      return ch.close();
    },
  };
}
