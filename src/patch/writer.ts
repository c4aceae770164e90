// PatchWriter: writes a patch (docs/patch-format.md; version 2 when the header has `state`, else
// version 1) to a file, so that a failed run never leaves a file under the final name, or to stdout.
//   create: open PATH.part exclusively (mode 0600: it holds raw disk blocks), write the header
//   addRecord*: header + payload (+ v2 base item), addRegion* (v2); all fed to the running hash
//   finish: trailer (self-checked), fsync, rename PATH.part -> PATH, fsync the directory
// Interrupted (crash, SIGKILL): PATH.part stays behind and the next create refuses until it is
// removed; abort() (or an error in finish) unlinks it. After a write error the writer refuses use.
// To stdout ("-"): the same bytes in order; an aborted stream simply has no trailer, which every
// reader refuses.
// Memory: nothing beyond the caller's buffers (stdout: a copy of the item being written until the
// pipe takes it; the caller awaits drain()). lz4-napi frees its buffers only on an event-loop
// turn, so a caller producing records in a loop calls `await writer.yieldIfDue()` after each one.
import { closeSync, fsyncSync, lstatSync, openSync, renameSync, unlinkSync, writeSync, constants, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { BlkError, ExitCode, describe } from '../errors.js';
import type { Hasher, StreamHasher } from '../hash.js';
import { decodeRecordHeader, encodeHeader, encodeTrailer, headerLen, type PatchHeader } from './format.js';
import { encodeBase, encodeRegion } from './state.js';

const YIELD_EVERY = 4 * 1024 * 1024;

/** Where the bytes go: a .part file renamed at the end, or stdout. */
interface Output {
  readonly label: string;
  write(bytes: Buffer, pos: number): void;
  drain(): Promise<void>;
  /** Makes the stream durable and gives it its final name. */
  commit(): Promise<void>;
  discard(): void;
}

export class PatchWriter {
  private pos: number;
  private records = 0;
  private dataBytes = 0;
  private storedBytes = 0;
  private regions = 0;
  private nextRegion = 0;
  private recordEnd = 0;
  private sinceYield = 0;
  private broken: Error | undefined;
  private done = false;

  private constructor(
    readonly path: string,
    private readonly header: PatchHeader,
    private readonly out: Output,
    private readonly hasher: Hasher,
    private readonly stream: StreamHasher,
  ) {
    this.pos = headerLen(header);
  }

  /**
   * Opens PATH.part (exclusive, 0600) and writes the header; "-" writes to stdout. Refuses an
   * existing PATH unless overwrite, and never replaces anything but a regular file (finish()
   * renames over PATH: a device node or a directory must not be swapped for a patch).
   */
  static async create(path: string, header: PatchHeader, hasher: Hasher, opts: { overwrite?: boolean } = {}): Promise<PatchWriter> {
    const bytes = encodeHeader(header, hasher);
    const out = path === '-' ? stdoutOutput() : fileOutput(path, !!opts.overwrite);
    const w = new PatchWriter(path, header, out, hasher, hasher.create64(0n));
    try {
      out.write(bytes, 0);
    } catch (err) {
      w.abort();
      throw new BlkError(ExitCode.IO, `cannot write patch ${out.label}: ${describe(err)}`, { cause: err });
    }
    w.stream.update(bytes);
    return w;
  }

  /** Appends one record (header from makeRecord/encodeRecordHeader, then its payload; v2: the base hashes it overwrites). */
  addRecord(header: Buffer, payload: Buffer, base?: Uint8Array): void {
    this.usable();
    const r = decodeRecordHeader(header, this.pos, this.header);
    if (payload.length !== r.storedLength) throw new Error(`addRecord: payload of ${payload.length} bytes, header says ${r.storedLength}`);
    const st = this.header.state;
    if (st && !base) throw new Error('addRecord: a version 2 patch needs the base hashes of every record');
    if (st && r.offset < this.recordEnd) throw new Error(`addRecord: record at ${r.offset} before the end of the previous one (${this.recordEnd})`);
    const baseItem = st ? encodeBase(r, base!, this.header) : undefined;
    this.write(header);
    if (payload.length > 0) this.write(payload);
    if (baseItem) this.write(baseItem);
    this.records++;
    this.dataBytes += r.length;
    this.storedBytes += r.storedLength;
    this.sinceYield += r.length;
    this.recordEnd = r.offset + r.length;
  }

  /** v2: the next region of the target, [offset, offset+length), with its block hashes before the patch. */
  addRegion(offset: number, length: number, baseHashes: Uint8Array): void {
    this.usable();
    if (!this.header.state) throw new Error('addRegion: a version 1 patch has no regions');
    const item = encodeRegion({ offset, length, baseDigest: this.hasher.h64(baseHashes, this.header.state.seed) }, this.header, this.nextRegion);
    this.write(item);
    this.regions++;
    this.nextRegion += length;
  }

  /** Gives lz4-napi's buffers an event-loop turn to be freed, once every few MiB of records. */
  async yieldIfDue(): Promise<void> {
    await this.drain();
    if (this.sinceYield < YIELD_EVERY) return;
    this.sinceYield = 0;
    await turn();
  }

  /** Waits until the output took what was written (stdout: the pipe's reader keeps up). */
  async drain(): Promise<void> {
    try {
      await this.out.drain();
    } catch (err) { // stdout's reader went away (EPIPE): the same error as a failed write
      this.broken ??= err as Error;
      throw new BlkError(ExitCode.IO, `cannot write patch ${this.out.label} at byte ${this.pos}: ${describe(err)}`, { cause: err });
    }
  }

  /**
   * Writes the trailer (v2: with the digests of the target's content before and after, the run's
   * baseFingerprint and fingerprint), makes the patch durable, and gives it its final name.
   */
  async finish(fingerprints?: { base: bigint; result: bigint }): Promise<{ bytes: number; records: number }> {
    this.usable();
    const st = this.header.state;
    try {
      if (st && !fingerprints) throw new Error('finish: a version 2 patch needs the base and result fingerprints');
      if (st && this.nextRegion !== st.compareSize) throw new Error(`finish: regions end at ${this.nextRegion}, compare_size is ${st.compareSize}`);
      const state = st ? { regionCount: this.regions, baseFingerprint: fingerprints!.base, resultFingerprint: fingerprints!.result } : undefined;
      const trailer = encodeTrailer({ recordCount: this.records, dataBytes: this.dataBytes, storedBytes: this.storedBytes, ...(state ? { state } : {}) }, this.stream);
      this.write(trailer);
      await this.out.commit();
    } catch (err) {
      this.abort();
      if (err instanceof BlkError) throw err;
      throw new BlkError(ExitCode.IO, `cannot finish patch ${this.out.label}: ${describe(err)}`, { cause: err });
    }
    this.done = true;
    return { bytes: this.pos, records: this.records };
  }

  /** Closes and removes PATH.part. Safe to call twice, and after finish (then it does nothing). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    this.broken ??= new Error('aborted');
    this.out.discard();
  }

  private usable(): void {
    if (this.done) throw new Error('PatchWriter: used after finish or abort');
    if (this.broken) throw new BlkError(ExitCode.IO, `patch ${this.out.label} is unusable after an earlier write error`, { cause: this.broken });
  }

  private write(bytes: Buffer): void {
    try {
      this.out.write(bytes, this.pos);
    } catch (err) {
      this.broken = err as Error;
      throw new BlkError(ExitCode.IO, `cannot write patch ${this.out.label} at byte ${this.pos}: ${describe(err)}`, { cause: err });
    }
    this.stream.update(bytes);
    this.pos += bytes.length;
  }
}

/** PATH.part, created exclusively with mode 0600, renamed to PATH by commit(). */
function fileOutput(path: string, overwrite: boolean): Output {
  const existing = lstatOrNull(path);
  if (existing && !overwrite) {
    throw new BlkError(ExitCode.TARGET_REFUSED, `patch file ${path} already exists: remove it, choose another name, or pass --force to replace it`);
  }
  if (existing && !existing.isFile()) {
    throw new BlkError(ExitCode.TARGET_REFUSED, `patch file ${path} exists and is not a regular file: refusing to replace it`);
  }
  const part = path + '.part';
  let fd: number | undefined;
  try {
    fd = openSync(part, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'EEXIST'
      ? 'it exists: another run is writing it, or a crashed run left it (remove it if no run is active)'
      : describe(err);
    throw new BlkError(ExitCode.IO, `cannot create patch file ${part}: ${why}`, { cause: err });
  }
  const close = () => {
    if (fd === undefined) return;
    const f = fd;
    fd = undefined;
    closeSync(f);
  };
  return {
    label: `file ${part}`,
    write: (bytes, pos) => writeAll(fd!, bytes, pos),
    drain: async () => undefined,
    commit: async () => {
      fsyncSync(fd!);
      close();
      renameSync(part, path);
      syncDir(dirname(path));
    },
    discard: () => {
      try { close(); } catch { /* closing a file we are deleting: nothing to keep */ }
      try { unlinkSync(part); } catch { /* already gone */ }
    },
  };
}

/** Standard output, through process.stdout (whatever it is: pipe, socket or file). */
function stdoutOutput(): Output {
  const out = process.stdout;
  if (out.isTTY) throw new BlkError(ExitCode.USAGE, 'refusing to write a patch (binary data) to a terminal: redirect stdout to a file or a pipe');
  let failed: Error | undefined;
  const onError = (err: Error) => { failed ??= err; };
  out.on('error', onError);
  const check = () => { if (failed) throw failed; };
  const waitDrain = () => new Promise<void>((resolve) => {
    const done = () => { out.off('drain', done); out.off('error', done); out.off('close', done); resolve(); };
    out.once('drain', done); out.once('error', done); out.once('close', done);
  });
  return {
    label: 'on stdout',
    write: (bytes) => { check(); out.write(Buffer.from(bytes)); }, // a copy: callers reuse their buffers
    drain: async () => {
      check();
      if (out.writableNeedDrain) await waitDrain();
      check();
    },
    commit: async () => {
      // callbacks run in order: this one runs once everything before it has been handed over
      await new Promise<void>((resolve) => out.write(Buffer.alloc(0), (err) => { if (err) failed ??= err; resolve(); }));
      check();
      out.off('error', onError);
    },
    discard: () => { out.off('error', onError); },
  };
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
