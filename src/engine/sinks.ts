// Where records go. Source side: PeerSink sends them to the target, PatchSink writes them to a
// patch file. Target side: DeviceWriter decodes, checks and writes them to the device, then
// fsyncs, optionally re-reads every written range, and digs holes where zeros were written to a
// file. Every record is checked (bounds against the geometry, checksum of the plain data) before
// a byte of it is written.
//
// A raw record bound for an O_DIRECT batch is read from the wire straight into that batch (place)
// and its checksum computed there (the batches live in an xxhash-wasm instance's memory): one copy
// per byte instead of three (reader, h64Raw, batch). It joins the batch only once it matched.
//
// Memory: one decoded record at a time, the two write batches, the re-read journal, which keeps
// at most JOURNAL_MEM entries in memory and spills the rest to a temporary file. That file goes
// on every exit path: finish, and dispose (runTarget's finally: errors, a lost peer, SIGINT).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlkError, ExitCode, describe } from '../errors.js';
import { blockHasher, hashedBuffers, type BlockHasher, type HashedBuffers, type Hasher } from '../hash.js';
import { log } from '../log.js';
import { Encoding, RECORD_HEADER_LEN, checkRecordSum, decodePayload, decodeRecordHeader, isAllZero, type PatchHeader, type RecordHeader } from '../patch/format.js';
import type { PatchWriter } from '../patch/writer.js';
import { Msg } from '../proto/wire.js';
import type { Conn } from '../proto/messages.js';
import { readFull, type Device } from '../io/device.js';
import { BATCHES, DirectIo, WRITE_BATCH, alignedBuffer, type Slot } from '../io/direct.js';
import type { RecordSink } from './source.js';
import type { TargetSink } from './target.js';

export class PeerSink implements RecordSink {
  constructor(private readonly conn: Conn) {}
  record(_offset: number, header: Buffer, payload: Buffer): Promise<void> {
    return this.conn.writer.sendBatched(Msg.RECORD, header, payload); // DONE's send flushes the batch
  }
}

/** Source side, patch output: each record with the target's hashes under it, and each chunk's region. */
export class PatchSink implements RecordSink {
  constructor(private readonly writer: PatchWriter) {}
  async record(_offset: number, header: Buffer, payload: Buffer, base: Buffer): Promise<void> {
    this.writer.addRecord(header, payload, base);
    await this.writer.yieldIfDue();
  }
  async region(offset: number, length: number, baseHashes: Buffer): Promise<void> {
    this.writer.addRegion(offset, length, baseHashes);
    await this.writer.drain();
  }
}

/**
 * Target side, patch output (a pull with --patch-out): checks each record, then stores it with the
 * hashes of the blocks it overwrites, re-read from this side's device (only the blocks the patch
 * writes: the device is not written in patch mode). Regions come from the hashes as they are sent.
 */
export class PatchFromPeerSink implements TargetSink {
  private records = 0;
  private bytes = 0;
  private readonly base: Buffer;
  private constructor(private readonly writer: PatchWriter, private readonly header: PatchHeader, private readonly h: Hasher,
    private readonly dev: Device, private readonly bh: BlockHasher) {
    this.base = Buffer.allocUnsafe((header.maxRecordLen / header.blockSize) * 8);
  }

  static async create(writer: PatchWriter, header: PatchHeader, h: Hasher, dev: Device): Promise<PatchFromPeerSink> {
    return new PatchFromPeerSink(writer, header, h, dev, await blockHasher(header.maxRecordLen, header.blockSize, header.state!.seed));
  }

  async record(frame: Buffer, at: number): Promise<void> {
    const rh = decodeRecordHeader(frame.subarray(0, RECORD_HEADER_LEN), at, this.header);
    decodePayload(rh, frame.subarray(RECORD_HEADER_LEN), at, this.h);
    readFull(this.dev, this.bh.chunk, rh.length, rh.offset, true);
    const n = this.bh.hash(rh.length, this.base);
    this.writer.addRecord(frame.subarray(0, RECORD_HEADER_LEN), frame.subarray(RECORD_HEADER_LEN), this.base.subarray(0, n * 8));
    this.records++;
    this.bytes += rh.length;
    await this.writer.yieldIfDue();
  }

  hashes(offset: number, length: number, hashes: Buffer): void {
    this.writer.addRegion(offset, length, hashes);
  }

  async finish() {
    return { blocksWritten: Math.ceil(this.bytes / this.header.blockSize), bytesWritten: this.bytes, verified: false };
  }
}

/** Remembers written ranges for the re-read check, in bounded memory. */
class Journal {
  static readonly ENTRY = 24;
  static readonly JOURNAL_MEM = 4096;
  private mem = Buffer.allocUnsafe(Journal.ENTRY * Journal.JOURNAL_MEM);
  private n = 0;
  private spill: { path: string; fd: number } | undefined;

  add(offset: number, length: number, checksum: bigint): void {
    if (this.n === Journal.JOURNAL_MEM) this.flush();
    const at = this.n++ * Journal.ENTRY;
    this.mem.writeBigUInt64LE(BigInt(offset), at);
    this.mem.writeBigUInt64LE(BigInt(length), at + 8);
    this.mem.writeBigUInt64LE(checksum, at + 16);
  }

  private flush(): void {
    if (!this.spill) {
      const p = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'blkdelta-journal-')), 'journal');
      this.spill = { path: p, fd: fs.openSync(p, 'w+') };
    }
    fs.writeSync(this.spill.fd, this.mem, 0, this.n * Journal.ENTRY);
    this.n = 0;
  }

  *entries(): Generator<[number, number, bigint]> {
    if (this.spill) {
      this.flush();
      const buf = this.mem;
      for (let pos = 0; ; pos += buf.length) {
        const got = fs.readSync(this.spill.fd, buf, 0, buf.length, pos);
        if (got === 0) break;
        for (let at = 0; at < got; at += Journal.ENTRY) yield [Number(buf.readBigUInt64LE(at)), Number(buf.readBigUInt64LE(at + 8)), buf.readBigUInt64LE(at + 16)];
      }
      return;
    }
    for (let at = 0; at < this.n * Journal.ENTRY; at += Journal.ENTRY) {
      yield [Number(this.mem.readBigUInt64LE(at)), Number(this.mem.readBigUInt64LE(at + 8)), this.mem.readBigUInt64LE(at + 16)];
    }
  }

  dispose(): void {
    if (!this.spill) return;
    fs.closeSync(this.spill.fd);
    fs.rmSync(path.dirname(this.spill.path), { recursive: true, force: true });
    this.spill = undefined;
  }
}

export interface DeviceWriterOptions {
  verify: boolean;
}

export class DeviceWriter implements TargetSink {
  private journal = new Journal();
  private blocksWritten = 0;
  private bytesWritten = 0;
  /** Zero ranges to punch as holes in a file target; at most MAX_HOLES, the rest stay written zeros. */
  private holes: [number, number][] = [];
  private static readonly MAX_HOLES = 64;
  /** Writes (and the re-read check) bypass the page cache where the device allows it. */
  private readonly direct: DirectIo;
  /** The O_DIRECT batch buffers, where raw records are read to (place) and checked in place. */
  private readonly batches: HashedBuffers;
  /** The record place() put in a batch, committed by record() once its checksum matches. */
  private placed: { rh: RecordHeader; slot: Slot } | undefined;

  constructor(private readonly dev: Device, private readonly geometry: PatchHeader, private readonly h: Hasher, private readonly opts: DeviceWriterOptions) {
    this.batches = hashedBuffers(WRITE_BATCH, BATCHES);
    this.direct = DirectIo.open(dev, { write: true, batches: this.batches.buffers });
  }

  get io(): string {
    return this.direct.mode;
  }

  /**
   * Where the data of a raw record that goes into an O_DIRECT batch is to be read to (its slot
   * there; FrameReader's Placer): no copy through the reader's buffer and h64Raw's memory.
   * Anything else (small, lz4, zero, a length that does not add up) is read and checked as usual.
   */
  async place(head: Buffer, length: number, at: number): Promise<Buffer | undefined> {
    const rh = decodeRecordHeader(head, at, this.geometry);
    if (rh.encoding !== Encoding.RAW || rh.storedLength !== length - RECORD_HEADER_LEN) return undefined;
    const slot = await this.direct.slot(rh.offset, rh.length);
    if (!slot) return undefined;
    this.placed = { rh, slot };
    return slot.buf.subarray(slot.at, slot.at + rh.length);
  }

  async record(frame: Buffer, at: number, placed?: boolean): Promise<void> {
    const rh = placed ? await this.commitPlaced(at) : await this.writeRecord(frame, at);
    if (this.opts.verify) this.journal.add(rh.offset, rh.length, rh.checksum);
    this.blocksWritten += Math.ceil(rh.length / this.geometry.blockSize);
    this.bytesWritten += rh.length;
  }

  // A record read into its batch slot (place): checked there, then part of the batch.
  private async commitPlaced(at: number): Promise<RecordHeader> {
    const { rh, slot } = this.placed!;
    this.placed = undefined;
    checkRecordSum(rh, this.batches.h64At(slot.which, slot.at, rh.length, BigInt(rh.offset)), at);
    await this.direct.commit(rh.length);
    return rh;
  }

  private async writeRecord(frame: Buffer, at: number): Promise<RecordHeader> {
    const rh = decodeRecordHeader(frame.subarray(0, RECORD_HEADER_LEN), at, this.geometry);
    const plain = decodePayload(rh, frame.subarray(RECORD_HEADER_LEN), at, this.h);
    if (plain) await this.direct.writeAsync(plain, rh.offset);
    else await this.zeros(rh.offset, rh.length);
    return rh;
  }

  private async zeros(offset: number, length: number): Promise<void> {
    await this.direct.writeZerosAsync(offset, length);
    const last = this.holes.at(-1);
    if (last && last[1] === offset) last[1] += length;
    else if (this.holes.length < DeviceWriter.MAX_HOLES) this.holes.push([offset, offset + length]);
  }

  async finish() {
    await this.direct.drain(); // the writes still behind the records (their I/O errors are thrown here)
    try {
      fs.fsyncSync(this.dev.fd);
    } catch (err) {
      throw new BlkError(ExitCode.IO, `fsync of ${this.dev.path} failed: ${describe(err)}`, { cause: err });
    }
    try {
      this.direct.dropWritten(); // the small writes' pages: written back by the fsync, now dropped
      if (this.dev.kind === 'file') await this.punchHoles();
      if (this.opts.verify) await this.reread();
    } finally {
      this.dispose();
    }
    return { blocksWritten: this.blocksWritten, bytesWritten: this.bytesWritten, verified: this.opts.verify };
  }

  /** Removes the re-read journal's temp file, if it spilled one; runTarget calls it on every exit path. */
  dispose(): void {
    this.journal.dispose();
    this.direct.close();
  }

  /**
   * Zero ranges of a file target become holes (the zeros are written first, so the data is right
   * even where punching fails). Not --dig-holes: util-linux 2.38 punches one block past its range.
   */
  private async punchHoles(): Promise<void> {
    if (this.holes.length === 0) return; // exec.ts (node:child_process) loads only when needed: server start-up
    const { howEnded, runProgram } = await import('../exec.js');
    for (const [a, b] of this.holes) {
      const timeoutMs = 60_000;
      const r = await runProgram('fallocate', ['--punch-hole', '--offset', String(a), '--length', String(b - a), this.dev.path], { timeoutMs });
      if (!r.ok) return log.warn(`could not make zero blocks of ${this.dev.path} sparse: ${r.stderr || howEnded(r, timeoutMs)}`);
    }
    if (this.holes.length) fs.fsyncSync(this.dev.fd);
  }

  /**
   * Re-reads the written ranges from the device and checks them: with O_DIRECT (which reads the
   * disk, not the cache), else after dropping the file's pages (posix_fadvise via dd nocache).
   */
  private async reread(): Promise<void> {
    if (!this.direct.direct) await this.direct.dropClean(); // so the re-read comes from the device, not the cache
    const buf = alignedBuffer(this.geometry.maxRecordLen);
    for (const [offset, length, checksum] of this.journal.entries()) {
      const data = buf.subarray(0, length);
      this.direct.read(buf, length, offset);
      const ok = checksum === 0n ? isAllZero(data) : this.h.h64(data, BigInt(offset)) === checksum;
      if (!ok) throw new BlkError(ExitCode.VERIFY_FAILED, `verify failed: ${this.dev.path} bytes ${offset}..${offset + length} read back differ from what was written`);
    }
  }
}
