// Reading and writing a device without filling the page cache (issue 13: a busy server's cache
// is what keeps its NFS fast). Node has no posix_fadvise, so this goes through O_DIRECT: a
// second descriptor on the same open file (/proc/self/fd/N, never a new lookup of the path),
// reads and writes of page-aligned buffers (WebAssembly memory: its base is page-aligned) at
// 4 KiB-aligned offsets and lengths.
//   open:  a mounted source, and a device already (almost) wholly in the page cache is read through the cache: its
//          pages are there anyway, and O_DIRECT would re-read them from the disk (6x slower warm
//          here); otherwise O_DIRECT, when the file system takes it. The same for writes: a
//          target already cached is written through the cache and nothing of it is dropped
//          (dropping it made the rest of a warm 1% sync read it back from the disk: 5.6x cat).
//          "Already cached" is asked of fincore, once per device, and only when the whole page
//          cache (/proc/meminfo) could hold 90% of it: a 1 TiB LV is never asked. The engine asks
//          ahead (askResident, in the background during the handshake); open() decides by that
//   read:  O_DIRECT for the whole aligned request; what the kernel refuses (EINVAL: an
//          unaligned device or buffer) switches this descriptor to buffered reads for the rest
//          of the run, and the mode says why; a short direct read (the end of a file whose size
//          is not aligned) finishes buffered
//   write: the same, for aligned ranges copied into an aligned staging buffer (contiguous ones
//          gathered into batches of WRITE_BATCH, up to BATCHES - 1 written at once behind the caller: writeAsync); the unaligned
//          tail of a device goes through the cache (one partial page). Small writes (under
//          SMALL_WRITE: scattered changed blocks) go through the cache too, where the kernel
//          merges and schedules them (one O_DIRECT write each waited ~1 ms on a busy disk);
//          every DROP_EVERY bytes of them (behind the caller), and at the end, they are written
//          back (fdatasync) and the file's clean pages dropped (posix_fadvise DONTNEED via dd nocache).
//          A device written through the cache (already cached, or O_DIRECT refused) is written
//          back behind the caller every DROP_EVERY bytes too, and nothing of it dropped
// Memory: the caller's buffers, plus for a writer BATCHES batch buffers (2 x 4 MiB, made here or
// given: the device writer's, which it fills in place through slot/commit) and one staging buffer
// of the largest write that is not batched.
// Interrupted: nothing is left but what was written (a batch still behind the caller is not: no
// fsync has promised it, and the next run compares it again); the fds close with the Device's owner.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { BlkError, ExitCode, describe } from '../errors.js';
import { readFull, writeFull, type Device } from './device.js';

/** O_DIRECT offsets and lengths are multiples of this (the largest logical block size in use). */
export const ALIGN = 4096;
/** A device at least this fraction resident in the page cache is read through the cache. */
export const RESIDENT_ENOUGH = 0.9;

/** Writes below this size go through the page cache (dropped every DROP_EVERY bytes and at the end). */
export const SMALL_WRITE = 64 * 1024;
export const DROP_EVERY = 32 * 1024 * 1024;
/** Contiguous large writes are gathered into writes of this size (BATCHES such buffers per writer). */
export const WRITE_BATCH = 4 * 1024 * 1024;
/**
 * Batch buffers per writer: one being filled while the others (at most BATCHES - 1) are written.
 * 2 x 4 MiB: one write in flight. 4 x 2 MiB (3 in flight, the same memory) was faster in one A/B
 * on a busy disk (median 24 s against 38 s, 4 GiB) but not in a raw probe at a quieter hour (every
 * mix 7.0-8.2 s), and a VM-lane run with it hung in a thin pool's I/O; kept out until that is understood.
 */
export const BATCHES = 2;

/** Bytes gathered for one write at pos, in batch buffer `which`. */
interface Batch { buf: Buffer; which: number; pos: number; len: number }

/** Where the caller copies len bytes of a batched write (slot()): buf, which is batch buffer `which` from byte `at`. */
export interface Slot { buf: Buffer; which: number; at: number }

const roundUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const aligned = (n: number) => n % ALIGN === 0;

// node:child_process (fincore, dd) loads on first use: it costs start-up CPU in every server process.
const childProcess = () => createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
const spawnSync: typeof import('node:child_process').spawnSync = ((...args: Parameters<typeof import('node:child_process').spawnSync>) =>
  childProcess().spawnSync(...args)) as typeof import('node:child_process').spawnSync;

/** dd's argv that drops the clean pages of the file open as fd (POSIX_FADV_DONTNEED over all of it). */
const dropArgv = (fd: number) => [`of=/proc/${process.pid}/fd/${fd}`, 'oflag=nocache', 'conv=notrunc', 'count=0', 'status=none'];

/** A page-aligned, zero-filled buffer of at least size bytes (WebAssembly memory, not movable). */
export function alignedBuffer(size: number): Buffer {
  const mem = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(size / 65536)) });
  return Buffer.from(mem.buffer, 0, size);
}

/**
 * Bytes the whole page cache holds now (/proc/meminfo: Cached, file pages, plus Buffers, where a
 * block device's own pages are counted), or undefined when unknown. No device holds more than this.
 */
export function pageCacheBytes(meminfo: () => string = () => fs.readFileSync('/proc/meminfo', 'latin1')): number | undefined {
  let text: string;
  try {
    text = meminfo();
  } catch {
    return undefined;
  }
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const n = kib('Cached') + kib('Buffers');
  return Number.isFinite(n) ? n : undefined;
}

const FINCORE_ARGS = ['--bytes', '--noheadings', '--raw', '--output', 'RES'];
const fincoreBytes = (ok: boolean, stdout: string) => {
  const n = ok ? Number(stdout.trim()) : NaN;
  return Number.isFinite(n) ? n : undefined;
};

/** Bytes of path resident in the page cache (util-linux fincore), or undefined when unknown. */
export function residentBytes(path: string): number | undefined {
  const r = spawnSync('fincore', [...FINCORE_ARGS, path], { encoding: 'utf8', timeout: 10_000 });
  return fincoreBytes(r.status === 0, r.stdout);
}

/** residentBytes, with fincore run in the background. Never rejects. */
export function residentBytesAsync(path: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    childProcess().execFile('fincore', [...FINCORE_ARGS, path], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => resolve(fincoreBytes(!err, stdout)));
  });
}

// What fincore said of a device when it was first opened here: the target's reader and writer
// share the answer (one fincore, and the writer's own writes do not change the reader's mode).
const cachedAtOpen = new WeakMap<Device, boolean>();
// What askResident measured ahead of open(), when it ran fincore; open() decides with the device's size then.
const residentEarly = new WeakMap<Device, number | undefined>();
const asking = new WeakMap<Device, Promise<void>>();

/**
 * Starts, in the background, the fincore that DirectIo.open would run on dev (50 ms for 4 GiB
 * all cached here, more for larger devices), so that it overlaps the handshake instead of
 * delaying the first read; the same promise for every call on dev. Await it before open(), which
 * then uses what it measured (an open() before it settled runs its own fincore). Never rejects,
 * and no fincore outlives it.
 */
export function askResident(dev: Device, resident = residentBytesAsync, pageCache = pageCacheBytes): Promise<void> {
  let p = asking.get(dev);
  if (!p) {
    p = dev.mounted?.length || !worthAsking(dev, pageCache) ? Promise.resolve() : resident(dev.path).then((bytes) => void residentEarly.set(dev, bytes));
    asking.set(dev, p);
  }
  return p;
}

/** Whether fincore is worth asking: the page cache (unknown: maybe) could hold 90% of dev. */
function worthAsking(dev: Device, pageCache: () => number | undefined): boolean {
  return dev.size > 0 && (pageCache() ?? Infinity) >= dev.size * RESIDENT_ENOUGH;
}

/**
 * Whether dev was (almost) wholly in the page cache when this process first asked. fincore only
 * runs when the whole page cache could hold that much of it: its mincore() walks every page of
 * the device (50 ms for 4 GiB all cached, 0.5 s for 256 GiB of nothing here), on the way to the
 * first read, and a large LV on a backup server never has 90% of itself cached.
 */
function wasCached(dev: Device, resident: (path: string) => number | undefined, pageCache: () => number | undefined): boolean {
  let cached = cachedAtOpen.get(dev);
  if (cached === undefined) {
    const res = !worthAsking(dev, pageCache) ? undefined : residentEarly.has(dev) ? residentEarly.get(dev) : resident(dev.path);
    cached = res !== undefined && res >= dev.size * RESIDENT_ENOUGH;
    cachedAtOpen.set(dev, cached);
  }
  return cached;
}

/** Reads and writes of one device that bypass the page cache where they can; `mode` says how it went. */
export class DirectIo {
  private fd: number | undefined;
  /** "O_DIRECT", or why the page cache is used ("already in the page cache", "O_DIRECT refused: ..."). */
  mode: string;
  private staging: Buffer | undefined;
  /** writeAsync's batches: the one being filled, those being written, their BATCHES buffers. */
  private filling: Batch | undefined;
  private readonly inFlight: Promise<void>[] = [];
  private readonly batches: Buffer[];
  private nextBatch = 0;
  private zeros: Buffer | undefined;
  /** Reads and writes on fd in flight (on libuv's pool): the fd closes only when none is left. */
  private busy = 0;
  /** The fd, once out of use (close, EINVAL) while busy: closed by the last of those to end. */
  private orphan: number | undefined;
  /** The write-back behind the caller under way, if any: small writes' (dropBehind) or, in buffered mode, every write's (writeBackBehind). */
  private behind: Promise<void> | undefined;
  /** Bytes of small writes in the cache since the last dropWritten(). */
  private cachedBytes = 0;
  /** Buffered mode: bytes written through the cache since the last write-back behind the caller began. */
  private bufferedBytes = 0;

  private constructor(private readonly dev: Device, fd: number | undefined, mode: string, batches: readonly Buffer[] = []) {
    this.fd = fd;
    this.mode = mode;
    this.batches = [...batches];
  }

  /**
   * write: the fd is opened read-write (the device's own fd must be). resident: how much of the
   * device is in the page cache (default fincore; tests), asked once per Device, and only when
   * pageCache (default pageCacheBytes) is unknown or at least 90% of the device. batches: the BATCHES
   * page-aligned buffers of WRITE_BATCH bytes writeAsync gathers into (default: made on first use).
   */
  static open(dev: Device, opts: { write?: boolean; resident?: (path: string) => number | undefined; pageCache?: () => number | undefined; batches?: readonly Buffer[] } = {}): DirectIo {
    // A mounted file system's cached blocks can be newer than the disk under it (measured: ext4
    // mounted read-only on a loop device); its readers must see the cache.
    if (dev.mounted?.length) return new DirectIo(dev, undefined, `page cache (mounted at ${dev.mounted.join(', ')})`);
    if (wasCached(dev, opts.resident ?? residentBytes, opts.pageCache ?? pageCacheBytes)) {
      return new DirectIo(dev, undefined, 'page cache (the device was already cached)');
    }
    const flags = (opts.write ? fs.constants.O_RDWR : fs.constants.O_RDONLY) | fs.constants.O_DIRECT;
    try {
      return new DirectIo(dev, fs.openSync(`/proc/self/fd/${dev.fd}`, flags), 'O_DIRECT', opts.batches);
    } catch (err) {
      return new DirectIo(dev, undefined, `page cache (O_DIRECT refused: ${describe(err)})`);
    }
  }

  get direct(): boolean {
    return this.fd !== undefined;
  }

  /**
   * readFull (device.ts) of [pos, pos+len) into buf; O_DIRECT when buf is page-aligned memory
   * (alignedBuffer, a BlockHasher's chunk) with room for len rounded up to 4 KiB.
   */
  read(buf: Buffer, len: number, pos: number, zeroFill = false): void {
    let got = 0;
    if (this.fd !== undefined && aligned(pos) && roundUp(len) <= buf.length && len > 0) {
      got = this.attempt(() => fs.readSync(this.fd!, buf, 0, roundUp(len), pos));
      got = Math.min(got, len);
    }
    if (got < len) readFull(this.dev, buf.subarray(got), len - got, pos + got, zeroFill);
  }

  /**
   * read(), with the O_DIRECT part on libuv's thread pool, so the caller hashes one chunk while
   * the next ones are read (read-ahead.ts); several may be in flight, into distinct buffers.
   * Buffered mode reads synchronously (from the cache: fast). The caller awaits each before close()
   * (close() would otherwise wait for it to end before closing the fd, but the caller's buffers
   * and its error would be forgotten).
   */
  async readAsync(buf: Buffer, len: number, pos: number, zeroFill = false): Promise<void> {
    let got = 0;
    if (this.fd !== undefined && aligned(pos) && roundUp(len) <= buf.length && len > 0) {
      got = await this.onPool((fd, done) => fs.read(fd, buf, 0, roundUp(len), pos, done));
      got = Math.min(got, len);
    }
    if (got < len) readFull(this.dev, buf.subarray(got), len - got, pos + got, zeroFill);
  }

  /** writeFull (device.ts) of data at pos; O_DIRECT (through a staging copy) for aligned ranges. */
  write(data: Uint8Array, pos: number): void {
    let done = 0;
    if (this.fd !== undefined && aligned(pos) && aligned(data.length) && data.length > 0) {
      const stage = this.stage(data.length);
      stage.set(data);
      done = this.attempt(() => fs.writeSync(this.fd!, stage, 0, data.length, pos));
    }
    if (done < data.length) writeFull(this.dev, data.subarray(done), pos + done);
  }

  /**
   * write(), with the O_DIRECT part on libuv's thread pool, behind the caller: contiguous aligned
   * writes are gathered into a batch of WRITE_BATCH bytes (a larger write is cut into such), written
   * while the next batch fills (BATCHES staging buffers; at most BATCHES - 1 writes in flight). An error of a write surfaces at a later call or
   * at drain(). The owner calls drain() before its fsync, and before any write (write(),
   * writeZeros()) that overlaps a range still behind (a sync's records never overlap); one caller at a time.
   */
  async writeAsync(data: Uint8Array, pos: number): Promise<void> {
    if (this.fd !== undefined && data.length < SMALL_WRITE) return this.writeCached(data, pos);
    if (this.fd === undefined || !aligned(pos) || !aligned(data.length)) {
      await this.drainWrites();
      await this.writeNow(data, pos);
      if (this.fd === undefined) this.writeBackBehind(data.length);
      return;
    }
    if (data.length > WRITE_BATCH) { // a large record: WRITE_BATCH at a time, each a batch of its own
      for (let at = 0; at < data.length; at += WRITE_BATCH) await this.writeAsync(data.subarray(at, at + WRITE_BATCH), pos + at);
      return;
    }
    const s = await this.slotAt(pos, data.length);
    s.buf.set(data, s.at);
    await this.commit(data.length);
  }

  /**
   * For a caller that can put the bytes of a write in place itself (a record's payload straight
   * from the wire): where to copy the len bytes to be written at pos, in the batch being filled;
   * undefined when writeAsync would not batch them (small, unaligned, too large, no O_DIRECT).
   * commit(len) then adds them to the batch; until then they are not part of any write. The
   * caller makes no other call of this DirectIo in between.
   */
  async slot(pos: number, len: number): Promise<Slot | undefined> {
    if (this.fd === undefined || len < SMALL_WRITE || !aligned(pos) || !aligned(len) || len > WRITE_BATCH) return undefined;
    return this.slotAt(pos, len);
  }

  /** Adds the len bytes copied into the last slot to its batch (written once the batch is full). */
  async commit(len: number): Promise<void> {
    const batch = this.filling!;
    batch.len += len;
    if (batch.len === WRITE_BATCH) await this.submit();
  }

  // The room for len bytes at pos in the filling batch, after submitting it when they do not follow it or fit in it.
  private async slotAt(pos: number, len: number): Promise<Slot> {
    const f = this.filling;
    if (f && (f.pos + f.len !== pos || f.len + len > WRITE_BATCH)) await this.submit();
    const batch = (this.filling ??= { ...this.batchBuffer(), pos, len: 0 });
    return { buf: batch.buf, which: batch.which, at: batch.len };
  }

  /** writeZeros through writeAsync: batched with the writes around them, behind the caller too. */
  async writeZerosAsync(offset: number, length: number): Promise<void> {
    const zeros = (this.zeros ??= Buffer.alloc(WRITE_BATCH)); // calloc'd: its pages are only read, never resident
    for (let done = 0; done < length; done += WRITE_BATCH) {
      await this.writeAsync(zeros.subarray(0, Math.min(WRITE_BATCH, length - done)), offset + done);
    }
  }

  /** Waits until every write handed to writeAsync is on the device (its errors thrown here). */
  async drain(): Promise<void> {
    await this.drainWrites();
    await this.behind;
  }

  // The batches behind the caller, written (not the write-back of the cached writes: drain() waits for that too).
  private async drainWrites(): Promise<void> {
    await this.submit();
    for (const p of this.inFlight.splice(0)) await p;
  }

  // One write now: O_DIRECT through the staging buffer for an aligned range, else through the cache.
  private async writeNow(data: Uint8Array, pos: number): Promise<void> {
    let done = 0;
    if (this.fd !== undefined && aligned(pos) && aligned(data.length) && data.length > 0) {
      const stage = this.stage(data.length);
      stage.set(data);
      done = await this.onPool((fd, cb) => fs.write(fd, stage, 0, data.length, pos, cb));
    }
    if (done < data.length) writeFull(this.dev, data.subarray(done), pos + done);
  }

  // The filling batch starts its write once fewer than BATCHES - 1 are in flight (the oldest is
  // awaited: its buffer is the next to fill).
  private async submit(): Promise<void> {
    const batch = this.filling;
    if (!batch) return;
    this.filling = undefined;
    while (this.inFlight.length >= BATCHES - 1) await this.inFlight.shift();
    this.inFlight.push(handled(this.writeBatch(batch)));
  }

  private async writeBatch(b: Batch): Promise<void> {
    let done = 0;
    if (this.fd !== undefined) done = await this.onPool((fd, cb) => fs.write(fd, b.buf, 0, b.len, b.pos, cb));
    if (done < b.len) writeFull(this.dev, b.buf.subarray(done, b.len), b.pos + done);
  }

  // The staging buffer of the next batch, in turn: the batch that used it last was awaited by submit().
  private batchBuffer(): { buf: Buffer; which: number } {
    const which = this.nextBatch;
    this.nextBatch = (which + 1) % BATCHES;
    return { buf: (this.batches[which] ??= alignedBuffer(WRITE_BATCH)), which };
  }

  /** A small write through the cache; every DROP_EVERY bytes of them are written back and dropped. */
  private writeCached(data: Uint8Array, pos: number): void {
    writeFull(this.dev, data, pos);
    this.cachedBytes += data.length;
    if (this.cachedBytes >= DROP_EVERY && !this.behind) {
      this.cachedBytes = 0;
      this.behind = handled(this.dropBehind());
    }
  }

  // dropWritten() off the event loop (fdatasync on libuv's pool, dd as a child): the compare goes
  // on while the disk takes the small writes (fdatasyncSync here stalled it for seconds). drain() awaits it.
  private async dropBehind(): Promise<void> {
    await this.syncBehind();
    await this.dropClean();
    this.behind = undefined;
  }

  /** Drops the file's clean pages (DONTNEED over all of it, through dd: Node lacks it), off the event loop; never fails. */
  async dropClean(): Promise<void> {
    await new Promise<void>((resolve) => childProcess().execFile('dd', dropArgv(this.dev.fd), { timeout: 60_000 }, () => resolve()));
  }

  // fdatasync on libuv's pool. Its error stays in this.behind for drain() to throw: the kernel
  // reports a failed write-back once, so the owner's own fsync after it could succeed.
  private async syncBehind(): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => fs.fdatasync(this.dev.fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      throw new BlkError(ExitCode.IO, `fdatasync of ${this.dev.path} failed: ${describe(err)}`, { cause: err });
    }
  }

  // Buffered mode (a device already cached, or O_DIRECT refused): every DROP_EVERY bytes written,
  // a write-back behind the caller (nothing dropped), so that the owner's final fsync finds little
  // left: in a warm 4 GiB 1% sync here, the server waited 0.2 s on it while the client sat idle.
  private writeBackBehind(len: number): void {
    this.bufferedBytes += len;
    if (this.bufferedBytes < DROP_EVERY || this.behind) return;
    this.bufferedBytes = 0;
    this.behind = handled(this.syncBehind().then(() => { this.behind = undefined; }));
  }

  /**
   * Writes back and drops the pages small writes left in the cache (fdatasync, then DONTNEED
   * over the file through dd, which Node lacks); the owner calls it after its final fsync.
   */
  dropWritten(): void {
    if (this.cachedBytes === 0) return;
    this.cachedBytes = 0;
    try {
      fs.fdatasyncSync(this.dev.fd);
    } catch (err) {
      throw new BlkError(ExitCode.IO, `fdatasync of ${this.dev.path} failed: ${describe(err)}`, { cause: err });
    }
    spawnSync('dd', dropArgv(this.dev.fd), { stdio: 'ignore', timeout: 60_000 });
  }

  /** Zeros over [offset, offset+length), in steps of at most `step` bytes. */
  writeZeros(offset: number, length: number, step = 1024 * 1024): void {
    const zeros = this.stage(Math.min(step, length));
    for (let done = 0; done < length; done += zeros.length) {
      const n = Math.min(zeros.length, length - done);
      zeros.fill(0, 0, n);
      this.write(zeros.subarray(0, n), offset + done);
    }
  }

  /** Closes the O_DIRECT fd; a read or write still in flight (an error path) closes it when it ends, never under it. */
  close(): void {
    this.filling = undefined;
    this.closeFd();
  }

  // Takes the fd out of use; closed now, or by the last read or write in flight on it (onPool):
  // closing under a read in flight would let a new open reuse its number for that read.
  private closeFd(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) return;
    if (this.busy === 0) fs.closeSync(fd);
    else this.orphan = fd;
  }

  // One read or write of this.fd (which the caller checked) on libuv's pool, counted in busy;
  // resolves to the bytes done, or to 0 after a failure (failed(): the caller redoes it buffered).
  private onPool(op: (fd: number, done: (err: NodeJS.ErrnoException | null, n: number) => void) => void): Promise<number> {
    this.busy++;
    return new Promise<number>((resolve) => op(this.fd!, (err, n) => {
      if (--this.busy === 0 && this.orphan !== undefined) {
        closeQuietly(this.orphan); // before the promise resolves: once awaited, the fd is gone
        this.orphan = undefined;
      }
      resolve(err ? this.failed(err) : n);
    }));
  }

  // Runs one direct read or write. On a failure the caller redoes the request through the cache
  // (where a real I/O error is reported as usual); EINVAL (the kernel's "not aligned enough
  // here") also turns O_DIRECT off for the rest of the run.
  private attempt(io: () => number): number {
    try {
      return io();
    } catch (err) {
      return this.failed(err);
    }
  }

  private failed(err: unknown): 0 {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL' && this.fd !== undefined) {
      this.closeFd(); // a batch being filled stays: it is written through the cache
      this.mode = `page cache (O_DIRECT refused: ${describe(err)})`;
    }
    return 0;
  }

  // The staging buffer, grown (replaced) to hold n bytes.
  private stage(n: number): Buffer {
    if (!this.staging || this.staging.length < n) this.staging = alignedBuffer(roundUp(n));
    return this.staging;
  }
}

/** Closes an fd already out of use; a failure has nothing left to report to. */
function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch { /* the run is over for this fd */ }
}

/**
 * A read-ahead promise, awaited later (after other awaits): marked handled now, so that a read
 * error (EIO from an overflowing snapshot) is not an unhandled rejection that kills the process
 * before the loop awaits it and throws it, cleanup included.
 */
export function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => { /* thrown where it is awaited */ });
  return p;
}
