// Reads a run's pieces ahead of the caller, several at a time (issue 13: cold compares near
// `cat`). One O_DIRECT read of 1 MiB in flight read this virtio disk at ~0.8-1 GB/s per device;
// buffered `cat` gets the kernel's read-ahead. With a few reads in flight the disk queue stays full.
//   buffers: `count` chunk buffers (readBuffers(chunkSize): about READ_AHEAD_BYTES of them)
//   next():  the buffer the caller had is free again; every free buffer gets the next piece's
//            read (DirectIo.readAsync: libuv's pool); then the oldest read is awaited and its
//            piece handed out with its buffer, which the caller holds until its next next()
//   close(): awaits every read still in flight (errors dropped: the caller's own is thrown)
// Pieces come out in order; reads only ever run for pieces after the one the caller holds (a
// target writes records only into pieces whose hashes it sent: never under a read in flight).
// Memory: the caller's `count` buffers (two of them through the page cache) and a queue of at
// most `count` reads. Interrupted (an error, an abort): the caller's finally calls close() before
// closing the DirectIo, so no read outlives its fd; nothing is left behind.
import type { DirectIo } from './direct.js';
import { handled } from './direct.js';

/** Bytes read ahead of the caller: 4 reads of 1 MiB in flight read two files about as fast as cold `cat` in a raw probe here. */
export const READ_AHEAD_BYTES = 4 * 1024 * 1024;
/** The most reads in flight: libuv's pool has 4 threads (UV_THREADPOOL_SIZE), shared with writes. */
export const MAX_READS = 4;

/**
 * Chunk buffers for a run of chunkSize chunks: one the caller hashes, plus enough reads in flight
 * to cover READ_AHEAD_BYTES (at least one, as before: large chunks keep two buffers; at most MAX_READS).
 */
export function readBuffers(chunkSize: number): number {
  return 1 + Math.min(MAX_READS, Math.max(1, Math.floor(READ_AHEAD_BYTES / chunkSize)));
}

/** A piece of a run: [pos, len, ...what the caller keeps with it]. */
export type Piece = readonly [number, number, ...unknown[]];

interface Pending<P> { piece: P; which: number; read: Promise<void> }

/** The pieces of a run, read ahead into `buffers` (page-aligned for O_DIRECT: a BlockHasher's chunks). */
export class ReadAhead<P extends Piece> {
  private readonly queue: Pending<P>[] = [];
  private readonly free: number[];
  /** The piece handed out last: its buffer is the caller's until the next next(). */
  private held: Pending<P> | undefined;
  private done = false;

  /** zeroFill: past the end of the device the buffer is zeros (a target shorter than the source). */
  constructor(private readonly io: DirectIo, private readonly buffers: readonly Buffer[], private readonly pieces: Iterator<P>, private readonly zeroFill = false) {
    // Through the page cache a read is a copy made at once (readAsync reads synchronously): reading
    // ahead gains nothing there, and two buffers leave the others' WASM pages never touched (not resident).
    this.free = buffers.slice(0, io.direct ? buffers.length : Math.min(2, buffers.length)).map((_, i) => i);
  }

  /** The next piece, read into buffers[which]; undefined after the last. A read error is thrown here. */
  async next(): Promise<{ piece: P; which: number } | undefined> {
    if (this.held) this.free.push(this.held.which);
    this.fill();
    const p = (this.held = this.queue.shift());
    if (!p) return undefined;
    await p.read;
    return { piece: p.piece, which: p.which };
  }

  /** Waits for every read in flight; after it, no read of this run touches the device. */
  async close(): Promise<void> {
    this.done = true;
    const all = [...(this.held ? [this.held] : []), ...this.queue.splice(0)];
    await Promise.allSettled(all.map((p) => p.read));
  }

  // Every free buffer starts the read of the next piece.
  private fill(): void {
    while (!this.done && this.free.length) {
      const it = this.pieces.next();
      if (it.done) {
        this.done = true;
        return;
      }
      const which = this.free.shift()!;
      const [pos, len] = it.value;
      this.queue.push({ piece: it.value, which, read: handled(this.io.readAsync(this.buffers[which]!, len, pos, this.zeroFill)) });
    }
  }
}
