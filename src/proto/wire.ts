// Wire framing (docs/protocol.md): every message is an 8-byte frame header
//   type u8 | reserved u8 (0) | reserved u16 (0) | payload length u32 LE
// followed by the payload. Control messages carry JSON; HASHES and RECORD are binary.
//
// FrameReader pulls bytes from its ByteSource (byte-source.ts: a Readable's chunks, or the
// server's stdin read into one reused buffer) only when asked for a frame, so the sender's
// backpressure works end to end: memory is bounded by one frame (at most MAX_FRAME bytes, the
// scratch buffer) plus what the source holds (a Readable's highWaterMark; 2 x 64 KiB for the
// stdin socket). The bytes are consumed synchronously as the source offers them (a small state
// machine: header, head, placer's answer, data or payload). A frame the caller places (Placer: a
// record's data, into the device writer's batch) is copied there as it arrives: no frame-sized
// buffer here. FrameWriter.send resolves once the frame is handed to the OS.
import type { Readable, Writable } from 'node:stream';
import { BlkError, ExitCode, FormatError } from '../errors.js';
import { MAX_RANGES, MAX_SAMPLE } from '../ranges.js';
import { isByteSource, ReadableSource, type ByteSource } from './byte-source.js';

export const Msg = {
  HELLO: 1, WELCOME: 2, ERROR: 3, START: 4, READY: 5, HASHES: 6, RECORD: 7, DONE: 8, RESULT: 9, WAIT: 10, HISTORY: 11, ROTATE: 12, BASE: 13,
} as const;
export type MsgType = (typeof Msg)[keyof typeof Msg];
const NAMES = Object.fromEntries(Object.entries(Msg).map(([k, v]) => [v, k])) as Record<number, string>;
export const msgName = (t: number): string => NAMES[t] ?? `unknown(${t})`;

export const FRAME_HEADER_LEN = 8;
/** Largest payload: a record of 16 MiB plus its 32-byte header, with room to spare. */
export const MAX_FRAME = 16 * 1024 * 1024 + 4096;


export interface Frame {
  type: MsgType;
  /** The payload; for a frame placed by a Placer (next()), only its first headLen bytes. */
  payload: Buffer;
  /** A placed frame: the rest of its payload was copied to where the Placer said. */
  placed?: true;
}

/**
 * Lets the caller of FrameReader.next() say where the bulk of a large frame goes (a record's
 * data, straight into the device writer's O_DIRECT batch): no copy into the reader's scratch
 * buffer first. place() sees the frame's first headLen bytes and returns where the other
 * length - headLen go, or undefined (the frame is read as usual).
 */
export interface Placer {
  readonly headLen: number;
  place(type: MsgType, length: number, head: Buffer): Promise<Buffer | undefined> | Buffer | undefined;
}

export function encodeFrameHeader(type: MsgType, length: number): Buffer {
  return writeFrameHeader(Buffer.allocUnsafe(FRAME_HEADER_LEN), 0, type, length);
}

/** Writes a frame header into buf at `at`; returns buf. */
function writeFrameHeader(buf: Buffer, at: number, type: MsgType, length: number): Buffer {
  if (length > MAX_FRAME) throw new BlkError(ExitCode.INTERNAL, `frame of ${length} bytes exceeds ${MAX_FRAME}`);
  buf.writeUInt32LE(type, at); // type u8, then the three reserved bytes: zero
  buf.writeUInt32LE(length, at + 4);
  return buf;
}

/** Parses a frame header; `at` is the stream offset for error messages. */
export function decodeFrameHeader(h: Buffer, at: number): { type: MsgType; length: number } {
  const type = h.readUInt8(0);
  if (!NAMES[type]) throw new FormatError('frame.type', at, `unknown message type ${type} (is the other end blkdelta?)`, ExitCode.REMOTE);
  if (h.readUInt8(1) !== 0 || h.readUInt16LE(2) !== 0) throw new FormatError('frame.reserved', at + 1, 'must be zero', ExitCode.REMOTE);
  const length = h.readUInt32LE(4);
  if (length > MAX_FRAME) throw new FormatError('frame.length', at + 4, `${length} exceeds ${MAX_FRAME}`, ExitCode.REMOTE);
  return { type: type as MsgType, length };
}

type Phase = 'header' | 'head' | 'placing' | 'data' | 'payload' | 'done';

export class FrameReader {
  private readonly src: ByteSource;
  private phase: Phase = 'done';
  /** Bytes of the current phase's part received so far. */
  private got = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_LEN);
  private type: MsgType = Msg.HELLO;
  private length = 0;
  private placer: Placer | undefined;
  private head: Buffer = Buffer.alloc(0);
  private dest: Buffer = Buffer.alloc(0);
  private scratch: Buffer = Buffer.alloc(0);
  /** Bytes consumed so far (frame headers included). */
  bytes = 0;
  private reading = false;

  constructor(input: Readable | ByteSource) {
    this.src = isByteSource(input) ? input : new ReadableSource(input);
  }

  /**
   * The next frame, or null at a clean end of stream. Throws if the stream ends mid-frame.
   * The payload is a view of this reader's scratch buffer: it is valid until the next call.
   * With a placer, a frame longer than its headLen may be placed (Placer).
   */
  async next(placer?: Placer): Promise<Frame | null> {
    // one frame at a time: a second call would restart the state machine under the first (and
    // reuse the scratch buffer under its payload); callers hand a pending next() on instead
    if (this.reading) throw new BlkError(ExitCode.INTERNAL, 'FrameReader: next() called while a frame is being read');
    this.reading = true;
    try {
      this.restart(placer);
      for (let p = this.phase; p !== 'done'; p = this.phase) {
        if (p === 'placing') await this.place();
        else if (!(await this.src.pull(this.take, p === 'data'))) return this.ended();
      }
    } finally {
      this.reading = false;
    }
    this.bytes += FRAME_HEADER_LEN + this.length;
    if (this.dest.length) return { type: this.type, payload: this.head, placed: true };
    return { type: this.type, payload: this.scratch.subarray(0, this.length) };
  }

  private restart(placer: Placer | undefined): void {
    this.phase = 'header';
    this.got = 0;
    this.placer = placer;
  }

  // The source's bytes, consumed synchronously (while they are valid: byte-source.ts) as far as
  // this frame goes and no further; stops at the placer's answer.
  private readonly take = (b: Buffer): number => {
    let at = 0;
    while (at < b.length && this.phase !== 'done' && this.phase !== 'placing') at += this.step(b, at);
    return at;
  };

  // Copies what the current phase still needs from b[at..] into its place; returns how many.
  private step(b: Buffer, at: number): number {
    const [into, want] = this.phase === 'header' ? [this.header, FRAME_HEADER_LEN]
      : this.phase === 'head' ? [this.head, this.placer!.headLen]
        : this.phase === 'data' ? [this.dest, this.dest.length] : [this.scratch, this.length];
    const k = b.copy(into, this.got, at, Math.min(b.length, at + want - this.got));
    this.got += k;
    if (this.got === want) this.complete();
    return k;
  }

  private complete(): void {
    if (this.phase === 'header') return this.decoded(decodeFrameHeader(this.header, this.bytes));
    this.phase = this.phase === 'head' ? 'placing' : 'done';
  }

  // A header read: a frame the placer may place collects its head first, any other its payload.
  private decoded({ type, length }: { type: MsgType; length: number }): void {
    this.type = type;
    this.length = length;
    this.got = 0;
    this.dest = Buffer.alloc(0);
    const n = this.placer?.headLen ?? 0;
    if (this.placer && length > n) {
      if (this.head.length !== n) this.head = Buffer.allocUnsafe(n);
      this.phase = 'head';
    } else {
      this.toPayload();
    }
  }

  // The payload goes to the scratch buffer; it grows to the largest frame (≤ MAX_FRAME), so that
  // 1 MiB records do not leave 1 MiB of garbage each for the GC to find late.
  private toPayload(): void {
    if (this.scratch.length < this.length) this.scratch = Buffer.allocUnsafe(this.length);
    this.phase = this.length === this.got ? 'done' : 'payload';
  }

  // The frame's head to the placer; if it says where, the rest goes there, else to the scratch buffer after the head.
  private async place(): Promise<void> {
    const dest = await this.placer!.place(this.type, this.length, this.head);
    if (dest) {
      const n = this.length - this.head.length;
      if (dest.length < n) throw new BlkError(ExitCode.INTERNAL, `a placer gave ${dest.length} bytes for ${n}`);
      this.dest = dest.subarray(0, n);
      this.got = 0;
      this.phase = 'data';
      return;
    }
    this.got = this.head.length;
    this.toPayload();
    this.head.copy(this.scratch, 0);
  }

  private ended(): null {
    if (this.phase === 'header' && this.got === 0) return null;
    if (this.phase === 'header') throw new BlkError(ExitCode.REMOTE, `connection closed in the middle of a frame header at byte ${this.bytes}`);
    throw new BlkError(ExitCode.REMOTE, `connection closed in the middle of a ${msgName(this.type)} frame at byte ${this.bytes}`);
  }
}

/**
 * Frames up to this size (header included) are copied into a batch buffer and go out as one
 * write; a larger one is written in place after its header. One write per small frame matters
 * over SSH, where ssh2 makes an SSH packet of every write: a 4 KiB record used to cost three.
 */
export const COALESCE = 64 * 1024;

export class FrameWriter {
  /** Bytes written so far (frame headers included), batched frames counted when queued. */
  bytes = 0;
  /** Small frames copied in and not yet written: the batch goes out on flush(). */
  private batch: Buffer | undefined;
  private batchLen = 0;
  constructor(private readonly output: Writable) {}

  /**
   * Writes one frame; resolves once the stream has handed all of it to the OS. A stream keeps a
   * reference to what it could not write yet, and callers reuse their buffers (the source's chunk
   * buffer) as soon as send returns, so waiting for the write callback is what makes that safe;
   * it is also the backpressure. Memory: one frame in flight, and the COALESCE batch buffer.
   */
  async send(type: MsgType, ...parts: Uint8Array[]): Promise<void> {
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (FRAME_HEADER_LEN + length <= COALESCE) {
      if (this.batchLen + FRAME_HEADER_LEN + length > COALESCE) await this.flush();
      this.queue(type, parts, length);
      return this.flush(msgName(type));
    }
    if (this.batchLen) await this.flush(); // frames go out in the order they were given
    const out = this.output;
    if (out.destroyed || out.writableEnded) throw new BlkError(ExitCode.REMOTE, 'connection closed: cannot send ' + msgName(type));
    // the header and the small leading parts (a record's header) in one write, the rest in place
    let headLen = FRAME_HEADER_LEN;
    let k = 0;
    while (k < parts.length && headLen + parts[k]!.length <= COALESCE) headLen += parts[k++]!.length;
    const head = writeFrameHeader(Buffer.allocUnsafe(headLen), 0, type, length);
    for (let i = 0, at = FRAME_HEADER_LEN; i < k; at += parts[i]!.length, i++) head.set(parts[i]!, at);
    const chunks = [head, ...parts.slice(k).filter((p) => p.length)];
    const last = chunks.pop()!;
    for (const c of chunks) out.write(c);
    this.bytes += FRAME_HEADER_LEN + length;
    await written(out, last);
  }

  /**
   * For many small frames in a row (the source's records): copies the frame into the batch,
   * which goes out in one write once full, or with the next send() (DONE, ERROR), or on flush().
   * The caller may reuse its buffers as soon as this resolves; backpressure applies when a full
   * batch is written. Over SSH this turns thousands of scattered 4 KiB records into a few hundred
   * writes: sshd spent 0.8 s of CPU on 10,000 one-record packets.
   */
  async sendBatched(type: MsgType, ...parts: Uint8Array[]): Promise<void> {
    const length = parts.reduce((n, p) => n + p.length, 0);
    if (FRAME_HEADER_LEN + length > COALESCE) return this.send(type, ...parts);
    if (this.batchLen + FRAME_HEADER_LEN + length > COALESCE) await this.flush();
    this.queue(type, parts, length);
  }

  // Copies a frame that fits into the batch. Synchronous, so that send() starts its write (and
  // listens for the stream's errors) before it first awaits.
  private queue(type: MsgType, parts: Uint8Array[], length: number): void {
    const batch = (this.batch ??= Buffer.allocUnsafe(COALESCE));
    writeFrameHeader(batch, this.batchLen, type, length);
    let at = this.batchLen + FRAME_HEADER_LEN;
    for (const p of parts) {
      batch.set(p, at);
      at += p.length;
    }
    this.batchLen = at;
    this.bytes += FRAME_HEADER_LEN + length;
  }

  /** Writes the queued frames; resolves once the stream has handed them to the OS. */
  async flush(what = 'queued frames'): Promise<void> {
    if (this.batchLen === 0) return;
    const batch = this.batch!;
    const len = this.batchLen;
    this.batch = undefined; // a frame queued while this write is in flight starts a new buffer
    this.batchLen = 0;
    if (this.output.destroyed || this.output.writableEnded) throw new BlkError(ExitCode.REMOTE, 'connection closed: cannot send ' + what);
    await written(this.output, batch.subarray(0, len));
    this.batch ??= batch;
  }

  sendJson(type: MsgType, body: unknown): Promise<void> {
    return this.send(type, Buffer.from(JSON.stringify(body)));
  }
}

// Writes the last chunk of a frame and resolves when the stream has flushed it (and, writes being
// ordered, everything before it); rejects when the stream fails or closes first.
function written(out: Writable, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err?: Error | null) => {
      if (settled) return;
      settled = true;
      out.off('close', onClose).off('error', done);
      if (err) reject(new BlkError(ExitCode.REMOTE, `connection lost: ${err.message}`, { cause: err }));
      else resolve();
    };
    const onClose = () => done(new Error('stream closed while sending'));
    out.on('close', onClose).on('error', done);
    out.write(chunk, done);
  });
}

/** Parses a JSON control payload, naming the message on failure. */
export function parseJson<T>(f: Frame): T {
  checkJsonNodes(f);
  try {
    return JSON.parse(f.payload.toString('utf8')) as T;
  } catch {
    throw new BlkError(ExitCode.REMOTE, `malformed ${msgName(f.type)} message (${f.payload.length} bytes)`);
  }
}

/**
 * Arrays and objects one JSON frame may hold: the ranges and the sample of the largest START,
 * with room for the rest. Parsed, each costs tens of bytes of heap: a 16 MiB frame of "[0,1],"
 * would cost about 70 MiB, over the memory bound, so it is refused before JSON.parse.
 */
export const MAX_JSON_NODES = MAX_RANGES + MAX_SAMPLE + 4096;

/** REMOTE when the frame's payload opens more than MAX_JSON_NODES arrays and objects (a byte count, no parse). */
export function checkJsonNodes(f: Frame): void {
  const p = f.payload;
  let n = 0;
  for (let i = p.indexOf(0x5b); i !== -1; i = p.indexOf(0x5b, i + 1)) if (++n > MAX_JSON_NODES) break; // '['
  for (let i = p.indexOf(0x7b); i !== -1 && n <= MAX_JSON_NODES; i = p.indexOf(0x7b, i + 1)) n++; // '{'
  if (n > MAX_JSON_NODES) throw new BlkError(ExitCode.REMOTE, `malformed ${msgName(f.type)} message: more than ${MAX_JSON_NODES} arrays and objects (${f.payload.length} bytes)`);
}
