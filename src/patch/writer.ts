// PatchWriter: writes a patch file (docs/patch-format.md) so that a failed run never leaves a file
// under the final name.
//   create: open PATH.part exclusively, write the header
//   addRecord*: positional write of header + payload, feed both to the running stream hash
//   finish: trailer (self-checked), fsync, rename PATH.part -> PATH, fsync the directory
// Interrupted (crash, SIGKILL): PATH.part stays behind and the next create refuses until it is
// removed; abort() (or an error in finish) unlinks it. After a write error the writer refuses use.
// Memory: nothing beyond the caller's buffers. lz4-napi frees its buffers only on an event-loop
// turn, so a caller producing records in a loop calls `await writer.yieldIfDue()` after each one.
import { closeSync, fsyncSync, lstatSync, openSync, renameSync, unlinkSync, writeSync, constants, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { BlkError, ExitCode, describe } from '../errors.js';
import type { Hasher, StreamHasher } from '../hash.js';
import { decodeRecordHeader, encodeHeader, encodeTrailer, HEADER_LEN, type PatchHeader } from './format.js';

const YIELD_EVERY = 4 * 1024 * 1024;

export class PatchWriter {
  private pos = HEADER_LEN;
  private records = 0;
  private dataBytes = 0;
  private storedBytes = 0;
  private sinceYield = 0;
  private broken: Error | undefined;
  private done = false;

  private constructor(
    readonly path: string,
    private readonly header: PatchHeader,
    private fd: number | undefined,
    private readonly stream: StreamHasher,
  ) {}

  /**
   * Opens PATH.part (exclusive) and writes the header. Refuses an existing PATH unless overwrite,
   * and never replaces anything but a regular file (finish() renames over PATH: a device node or
   * a directory must not be swapped for a patch).
   */
  static async create(path: string, header: PatchHeader, hasher: Hasher, opts: { overwrite?: boolean } = {}): Promise<PatchWriter> {
    const bytes = encodeHeader(header, hasher);
    const existing = lstatOrNull(path);
    if (existing && !opts.overwrite) {
      throw new BlkError(ExitCode.TARGET_REFUSED, `patch file ${path} already exists: remove it, choose another name, or pass --force to replace it`);
    }
    if (existing && !existing.isFile()) {
      throw new BlkError(ExitCode.TARGET_REFUSED, `patch file ${path} exists and is not a regular file: refusing to replace it`);
    }
    const part = path + '.part';
    let fd: number;
    try {
      fd = openSync(part, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'EEXIST'
        ? 'it exists: another run is writing it, or a crashed run left it (remove it if no run is active)'
        : describe(err);
      throw new BlkError(ExitCode.IO, `cannot create patch file ${part}: ${why}`, { cause: err });
    }
    const w = new PatchWriter(path, header, fd, hasher.create64(0n));
    try {
      writeAll(fd, bytes, 0);
    } catch (err) {
      w.abort();
      throw new BlkError(ExitCode.IO, `cannot write patch file ${part}: ${describe(err)}`, { cause: err });
    }
    w.stream.update(bytes);
    return w;
  }

  /** Appends one record (header from makeRecord/encodeRecordHeader, then its payload). */
  addRecord(header: Buffer, payload: Buffer): void {
    this.usable();
    const r = decodeRecordHeader(header, this.pos, this.header);
    if (payload.length !== r.storedLength) throw new Error(`addRecord: payload of ${payload.length} bytes, header says ${r.storedLength}`);
    this.write(header);
    if (payload.length > 0) this.write(payload);
    this.records++;
    this.dataBytes += r.length;
    this.storedBytes += r.storedLength;
    this.sinceYield += r.length;
  }

  /** Gives lz4-napi's buffers an event-loop turn to be freed, once every few MiB of records. */
  async yieldIfDue(): Promise<void> {
    if (this.sinceYield < YIELD_EVERY) return;
    this.sinceYield = 0;
    await turn();
  }

  /** Writes the trailer, makes the file durable, and gives it its final name. */
  async finish(): Promise<{ bytes: number; records: number }> {
    this.usable();
    const part = this.path + '.part';
    try {
      const trailer = encodeTrailer({ recordCount: this.records, dataBytes: this.dataBytes, storedBytes: this.storedBytes }, this.stream);
      this.write(trailer);
      fsyncSync(this.fd!);
      closeSync(this.fd!);
      this.fd = undefined;
      renameSync(part, this.path);
    } catch (err) {
      this.abort();
      if (err instanceof BlkError) throw err;
      throw new BlkError(ExitCode.IO, `cannot finish patch file ${part}: ${describe(err)}`, { cause: err });
    }
    this.done = true;
    syncDir(dirname(this.path));
    return { bytes: this.pos, records: this.records };
  }

  /** Closes and removes PATH.part. Safe to call twice, and after finish (then it does nothing). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.broken ??= new Error('aborted');
    if (this.fd !== undefined) {
      try { closeSync(this.fd); } catch { /* closing a file we are deleting: nothing to keep */ }
      this.fd = undefined;
    }
    try { unlinkSync(this.path + '.part'); } catch { /* already gone */ }
  }

  private usable(): void {
    if (this.done) throw new Error('PatchWriter: used after finish or abort');
    if (this.broken) throw new BlkError(ExitCode.IO, `patch file ${this.path}.part is unusable after an earlier write error`, { cause: this.broken });
  }

  private write(bytes: Buffer): void {
    try {
      writeAll(this.fd!, bytes, this.pos);
    } catch (err) {
      this.broken = err as Error;
      throw new BlkError(ExitCode.IO, `cannot write patch file ${this.path}.part at byte ${this.pos}: ${describe(err)}`, { cause: err });
    }
    this.stream.update(bytes);
    this.pos += bytes.length;
  }
}

/** Positional write of all of `bytes` (writeSync may write less than asked). */
export function writeAll(fd: number, bytes: Uint8Array, pos: number): void {
  for (let done = 0; done < bytes.length;) {
    const n = writeSync(fd, bytes, done, bytes.length - done, pos + done);
    if (n <= 0) throw new Error(`short write at ${pos + done}`);
    done += n;
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } catch (err) {
    throw new BlkError(ExitCode.IO, `patch file written, but fsync of directory ${dir} failed: ${describe(err)}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BlkError(ExitCode.TARGET_REFUSED, `cannot check patch file ${path}: ${describe(err)}`, { cause: err });
  }
}
