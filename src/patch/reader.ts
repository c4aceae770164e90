// Reading a patch file (version 1 or 2) in two passes, so that a corrupt patch writes nothing:
//   pass 1 validatePatch: read every byte once, check every field, decompress and checksum every
//     record, check the trailer's counts and stream checksum, and that nothing follows it;
//     (version 2: base items after each record, regions in order up to compare_size);
//   pass 2 readRecords: read it again and yield each record's plain data (null = zeros). Every
//     record is checked again, so a file changed between the passes fails on the changed record.
// Both read sequentially with readSync through one fixed buffer of max_record_len + 1 MiB, plus
// at most one decompressed record: memory never depends on the file's size. Every 4 MiB they
// yield an event-loop turn (lz4-napi frees its buffers only then). Reading leaves nothing behind.
import { closeSync, openSync, readSync } from 'node:fs';
import { setImmediate as turn } from 'node:timers/promises';
import { BlkError, ExitCode, FormatError, describe } from '../errors.js';
import type { Hasher, StreamHasher } from '../hash.js';
import {
  BASE_TYPE, RECORD_HEADER_LEN, REGION_TYPE, TRAILER_TYPE,
  decodeHeader, decodePayload, decodeRecordHeader, decodeTrailer, headerLenOf, trailerLen,
  type PatchHeader, type RecordHeader, type Trailer,
} from './format.js';
import { BASE_HEAD_LEN, REGION_LEN, decodeBaseHead, decodeRegion, type RegionItem } from './state.js';

const SLACK = 1024 * 1024;
const YIELD_EVERY = 4 * 1024 * 1024;

/** Pass 1: checks the whole file; throws FormatError (PATCH_INVALID) naming the first bad field. */
export async function validatePatch(path: string, hasher: Hasher, signal?: AbortSignal): Promise<{ header: PatchHeader; trailer: Trailer }> {
  let header: PatchHeader | undefined;
  for await (const item of scan(path, hasher)) {
    if (signal?.aborted) throw new BlkError(ExitCode.INTERRUPTED, `validation of patch ${path} interrupted; nothing was written`, { cause: signal.reason });
    if ('header' in item) header = item.header;
    if ('trailer' in item) return { header: header!, trailer: item.trailer };
  }
  throw new Error('validatePatch: scan ended without a trailer');
}

/** Pass 2 (after validatePatch): each record's plain data; a raw record's data is only valid until the next step. */
export async function* readRecords(path: string, header: PatchHeader, hasher: Hasher): AsyncGenerator<{ offset: number; length: number; data: Buffer | null }> {
  for await (const item of scan(path, hasher)) {
    if ('header' in item && !sameHeader(item.header, header)) {
      throw new FormatError('header', 0, `patch ${path} changed since it was validated`);
    }
    if ('record' in item) yield { offset: item.record.offset, length: item.record.length, data: item.data };
  }
}

export type Item = { header: PatchHeader } | { record: RecordHeader; data: Buffer | null; base?: Buffer } | { region: RegionItem } | { trailer: Trailer };

/**
 * Parses and checks the stream, yielding the header, each record (v2: with its base hashes), each
 * region (v2), then the checked trailer. payloads: false skips decoding the records' data (data is
 * null): for a cursor that only needs the state items of a validated file.
 */
export async function* scan(path: string, hasher: Hasher, opts: { payloads?: boolean } = {}): AsyncGenerator<Item> {
  const src = new ChunkReader(path);
  try {
    const stream = hasher.create64(0n);
    const hb = src.take(headerLenOf(src.peek(src.available(10) || 1, 'header')), 'header');
    const header = decodeHeader(hb, hasher);
    stream.update(hb);
    yield { header };
    src.reserve(header.maxRecordLen + SLACK);
    const seen = { records: 0, data: 0, stored: 0, regions: 0, nextRegion: 0, recordEnd: 0 };
    let sinceYield = 0;
    for (;;) {
      const at = src.pos;
      const type = src.peek(1, 'trailer', 'truncated: the file ends before the end marker')[0];
      if (type === TRAILER_TYPE) break;
      if (header.state && type === REGION_TYPE) {
        yield { region: takeRegion(src, header, stream, seen) };
        continue;
      }
      if (header.state && type === BASE_TYPE) throw new FormatError('base.type', at, 'a base item must follow a record');
      const item = takeRecord(src, header, hasher, stream, seen, opts.payloads ?? true);
      yield item;
      sinceYield += item.record.length;
      if (sinceYield >= YIELD_EVERY) { sinceYield = 0; await turn(); }
    }
    yield { trailer: readTrailer(src, header, stream, seen) };
  } finally {
    src.close();
  }
}

type Seen = { records: number; data: number; stored: number; regions: number; nextRegion: number; recordEnd: number };

function takeRegion(src: ChunkReader, header: PatchHeader, stream: StreamHasher, seen: Seen): RegionItem {
  const at = src.pos;
  const rb = src.take(REGION_LEN, 'region');
  const region = decodeRegion(rb, at, header, seen.nextRegion);
  stream.update(rb);
  seen.nextRegion += region.length;
  seen.regions++;
  return region;
}

/** A record, its payload, and (v2) its base item, all read before any view of them is handed out. */
function takeRecord(src: ChunkReader, header: PatchHeader, hasher: Hasher, stream: StreamHasher, seen: Seen, payloads: boolean): { record: RecordHeader; data: Buffer | null; base?: Buffer } {
  const at = src.pos;
  const rb = src.take(RECORD_HEADER_LEN, 'record');
  const record = decodeRecordHeader(rb, at, header);
  if (header.state && record.offset < seen.recordEnd) throw new FormatError('record.offset', at + 8, `${record.offset} is before the end of the previous record (${seen.recordEnd}): records come in offset order`);
  stream.update(rb);
  let baseLen = 0;
  if (header.state) {
    // payload and base item are made resident together, so that no view is moved by a later read
    const bAt = src.pos + record.storedLength;
    const head = src.peek(record.storedLength + BASE_HEAD_LEN, 'base').subarray(record.storedLength);
    baseLen = decodeBaseHead(head, bAt, record, header);
    src.peek(record.storedLength + baseLen, 'base');
  }
  const payload = src.take(record.storedLength, 'record.payload');
  const data = payloads ? decodePayload(record, payload, at, hasher) : null;
  stream.update(payload);
  seen.records++; seen.data += record.length; seen.stored += record.storedLength; seen.recordEnd = record.offset + record.length;
  if (!header.state) return { record, data };
  const bb = src.take(baseLen, 'base');
  stream.update(bb);
  return { record, data, base: bb.subarray(BASE_HEAD_LEN) };
}

function readTrailer(src: ChunkReader, header: PatchHeader, stream: StreamHasher, seen: Seen): Trailer {
  const at = src.pos;
  const len = trailerLen(header), sumAt = len - 8;
  const tb = src.take(len, 'trailer');
  const t = decodeTrailer(tb, at, header.state ? 2 : 1);
  const sum = stream.update(tb.subarray(0, sumAt)).digest();
  if (sum !== t.streamChecksum) throw new FormatError('trailer.stream_checksum', at + sumAt, 'mismatch: the patch is corrupt');
  const check = (name: string, off: number, stored: number, counted: number) => {
    if (stored !== counted) throw new FormatError(`trailer.${name}`, at + off, `says ${stored}, the stream adds up to ${counted}`);
  };
  check('record_count', 8, t.recordCount, seen.records);
  check('data_bytes', 16, t.dataBytes, seen.data);
  check('stored_bytes', 24, t.storedBytes, seen.stored);
  if (header.state) {
    check('region_count', 32, t.state!.regionCount, seen.regions);
    if (seen.nextRegion !== header.state.compareSize) throw new FormatError('trailer', at, `the regions end at ${seen.nextRegion}, compare_size is ${header.state.compareSize}`);
  }
  if (src.peekEof() === false) throw new FormatError('trailer', src.pos, 'data follows the trailer (the stream must end there)');
  return t;
}

function sameHeader(a: PatchHeader, b: PatchHeader): boolean {
  return a.blockSize === b.blockSize && a.targetSize === b.targetSize && a.resultSize === b.resultSize &&
    a.maxRecordLen === b.maxRecordLen && a.sourceFingerprint.equals(b.sourceFingerprint) &&
    a.state?.seed === b.state?.seed && a.state?.regionSize === b.state?.regionSize && a.state?.compareSize === b.state?.compareSize;
}

/** Sequential reads through one buffer; `pos` is the stream offset of the next unread byte. */
class ChunkReader {
  private fd: number | undefined;
  private buf = Buffer.allocUnsafe(64 * 1024);
  private start = 0;
  private end = 0;
  private filePos = 0;

  constructor(private readonly path: string) {
    try {
      this.fd = openSync(path, 'r');
    } catch (err) {
      throw new BlkError(ExitCode.IO, `cannot open patch ${path}: ${describe(err)}`, { cause: err });
    }
  }

  get pos(): number { return this.filePos - (this.end - this.start); }

  /** Grows the buffer to `size` bytes (once, after the header fixed the record bound). */
  reserve(size: number): void {
    if (size <= this.buf.length) return;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, this.start, this.end);
    this.end -= this.start; this.start = 0; this.buf = next;
  }

  /** The next n bytes, not consumed; at end of file a FormatError naming `field`. */
  peek(n: number, field: string, detail?: string): Buffer {
    if (!this.fill(n)) throw new FormatError(field, this.pos, detail ?? `truncated: the file ends after ${this.end - this.start} of its ${n} bytes`);
    return this.buf.subarray(this.start, this.start + n);
  }

  take(n: number, field: string): Buffer {
    const b = this.peek(n, field);
    this.start += n;
    return b;
  }

  /** True when no byte is left. */
  peekEof(): boolean { return !this.fill(1); }

  /** How many of the next n bytes the file still has (at most n). */
  available(n: number): number {
    this.fill(n);
    return Math.min(n, this.end - this.start);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Makes n bytes available at buf[start..]; false at end of file. */
  private fill(n: number): boolean {
    if (this.end - this.start >= n) return true;
    if (n > this.buf.length) throw new Error(`ChunkReader: ${n} bytes exceed the buffer`);
    if (this.start > 0) {
      this.buf.copy(this.buf, 0, this.start, this.end);
      this.end -= this.start; this.start = 0;
    }
    while (this.end < n) {
      let got: number;
      try {
        got = readSync(this.fd!, this.buf, this.end, this.buf.length - this.end, this.filePos);
      } catch (err) {
        throw new BlkError(ExitCode.IO, `cannot read patch ${this.path} at byte ${this.filePos}: ${describe(err)}`, { cause: err });
      }
      if (got === 0) return false;
      this.end += got; this.filePos += got;
    }
    return true;
  }
}
