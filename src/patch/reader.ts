// Reading a patch file in two passes, so that a corrupt patch writes nothing:
//   pass 1 validatePatch: read every byte once, check every field, decompress and checksum every
//     record, check the trailer's counts and stream checksum, and that nothing follows it;
//   pass 2 readRecords: read it again and yield each record's plain data (null = zeros). Every
//     record is checked again, so a file changed between the passes fails on the changed record.
// Both read sequentially with readSync through one fixed buffer of max_record_len + 1 MiB, plus
// at most one decompressed record: memory never depends on the file's size. Every 4 MiB they
// yield an event-loop turn (lz4-napi frees its buffers only then). Reading leaves nothing behind.
import { closeSync, openSync, readSync } from 'node:fs';
import { setImmediate as turn } from 'node:timers/promises';
import { BlkError, ExitCode, FormatError, describe } from '../errors.js';
import type { Hasher } from '../hash.js';
import {
  HEADER_LEN, RECORD_HEADER_LEN, TRAILER_LEN, TRAILER_TYPE,
  decodeHeader, decodePayload, decodeRecordHeader, decodeTrailer,
  type PatchHeader, type RecordHeader, type Trailer,
} from './format.js';

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

type Item = { header: PatchHeader } | { record: RecordHeader; data: Buffer | null } | { trailer: Trailer };

/** Parses and checks the stream, yielding the header, each record, then the checked trailer. */
async function* scan(path: string, hasher: Hasher): AsyncGenerator<Item> {
  const src = new ChunkReader(path);
  try {
    const stream = hasher.create64(0n);
    const hb = src.take(HEADER_LEN, 'header');
    const header = decodeHeader(hb, hasher);
    stream.update(hb);
    yield { header };
    src.reserve(header.maxRecordLen + SLACK);
    const counts = { records: 0, data: 0, stored: 0 };
    let sinceYield = 0;
    for (;;) {
      const at = src.pos;
      const type = src.peek(1, 'trailer', 'truncated: the file ends before the end marker')[0];
      if (type === TRAILER_TYPE) break;
      const rb = src.take(RECORD_HEADER_LEN, 'record');
      const record = decodeRecordHeader(rb, at, header);
      stream.update(rb);
      const payload = src.take(record.storedLength, 'record.payload');
      const data = decodePayload(record, payload, at, hasher);
      stream.update(payload);
      counts.records++; counts.data += record.length; counts.stored += record.storedLength;
      yield { record, data };
      sinceYield += record.length;
      if (sinceYield >= YIELD_EVERY) { sinceYield = 0; await turn(); }
    }
    yield { trailer: readTrailer(src, stream, counts) };
  } finally {
    src.close();
  }
}

function readTrailer(src: ChunkReader, stream: ReturnType<Hasher['create64']>, counts: { records: number; data: number; stored: number }): Trailer {
  const at = src.pos;
  const tb = src.take(TRAILER_LEN, 'trailer');
  const t = decodeTrailer(tb, at);
  const sum = stream.update(tb.subarray(0, 32)).digest();
  if (sum !== t.streamChecksum) throw new FormatError('trailer.stream_checksum', at + 32, 'mismatch: the patch is corrupt');
  const check = (name: string, off: number, stored: number, seen: number) => {
    if (stored !== seen) throw new FormatError(`trailer.${name}`, at + off, `says ${stored}, the records add up to ${seen}`);
  };
  check('record_count', 8, t.recordCount, counts.records);
  check('data_bytes', 16, t.dataBytes, counts.data);
  check('stored_bytes', 24, t.storedBytes, counts.stored);
  if (src.peekEof() === false) throw new FormatError('trailer', src.pos, 'data follows the trailer (the stream must end there)');
  return t;
}

function sameHeader(a: PatchHeader, b: PatchHeader): boolean {
  return a.blockSize === b.blockSize && a.targetSize === b.targetSize && a.resultSize === b.resultSize &&
    a.maxRecordLen === b.maxRecordLen && a.sourceFingerprint.equals(b.sourceFingerprint);
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
