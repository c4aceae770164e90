// Opening the two ends of a sync (image files and block devices), and the positional reads,
// writes, zero writes and growth done on them: used by engine, server and apply alike.
//   open(path):  allow(names of what the path resolves to)   (a server's allow list; before any open)
//                stat: a regular file or a block device
//                open read-only, non-blocking; fstat the fd: still the same file, and what
//                /proc/self/fd/N names (the file actually opened) passes allow() again
//   target, for writing: refused when it is a file without any write permission bit (even for
//                root), attached to a loop device, or a block device that is mounted, held
//                (device-mapper, md, loop), read-only, or held open exclusively (O_EXCL: EBUSY);
//                sysfs read errors other than "absent" refuse it (fail closed); then the opened
//                file is reopened for writing through /proc/self/fd/N: the same inode, never a
//                new lookup of the path
// The size of a block device comes from the kernel (sysfs), never from stat (which says 0).
// Memory: nothing beyond the caller's buffers and a 1 MiB zero buffer. Nothing here writes
// before the caller asks; a grow that the session does not finish is undone with shrinkTo.
import fs from 'node:fs';
import path from 'node:path';
import { BlkError, ExitCode, describe } from '../errors.js';
import { log } from '../log.js';
import { Sysfs, devno, mountedAt } from './sysfs.js';

export { majorMinor, parseMountinfo, devno } from './sysfs.js';

export interface Device {
  path: string;
  /** What was opened, symlinks resolved (/proc/self/fd/N). */
  realPath: string;
  kind: 'file' | 'block';
  size: number;
  fd: number;
  /** Source only: where it is mounted read-write (a copy read while it is written may be torn). */
  mountedRw?: string[];
  /** Source only: where it is mounted at all (its file system's cached blocks may be newer than the disk). */
  mounted?: string[];
  /** Identities of the underlying storage ("b:major:minor", "f:dev:ino"), for the same-device check;
   *  a whole disk lists its partitions too. */
  ids: string[];
  close(): void;
}

export interface OpenOptions {
  /**
   * Throws (a server: BlkError PERMISSION) unless one of the names may be opened. Called with
   * the resolved path (and, for a device-mapper device, the names the kernel gives it) before
   * the open, and again with what the opened fd resolves to.
   */
  allow?: (names: string[]) => void;
  /** Where sysfs is (tests); default /sys. */
  sysRoot?: string;
}

const LENIENT = new Sysfs(false);

function identities(p: string, st: fs.Stats, sys: Sysfs): string[] {
  if (st.isBlockDevice()) {
    const mm = devno(st.rdev);
    const back = sys.read(mm, 'loop/backing_file');
    // A whole disk also holds its partitions, so a disk and its own partition share an id
    // (two sibling partitions do not).
    const ids = [`b:${mm}`, ...sys.partitionsOf(mm).map((d) => `b:${d}`)];
    if (back) {
      try {
        ids.push(...identities(back, fs.statSync(back), sys)); // what the loop device sits on: a file or another device
      } catch { /* backing file deleted */ }
    }
    return ids;
  }
  const ids = [`f:${st.dev}:${st.ino}`];
  for (const loop of sys.loopsBackedBy(p)) {
    const mm = devno(fs.statSync(loop).rdev);
    ids.push(`b:${mm}`, ...sys.partitionsOf(mm).map((d) => `b:${d}`));
  }
  return ids;
}

/**
 * Names a device answers to, for an allow list: its resolved path, and for a device-mapper
 * device /dev/mapper/NAME and, for an LVM volume, /dev/VG/LV, both from the kernel's dm name
 * (never from a symlink someone made).
 */
export function namesOf(real: string, st: fs.Stats | undefined, sys: Sysfs = LENIENT): string[] {
  if (!st?.isBlockDevice()) return [real];
  const mm = devno(st.rdev);
  const dm = sys.read(mm, 'dm/name');
  if (!dm) return [real];
  const lv = (sys.read(mm, 'dm/uuid') ?? '').startsWith('LVM-') ? lvmName(dm) : undefined;
  return [real, `/dev/mapper/${dm}`, ...(lv ? [`/dev/${lv.vg}/${lv.lv}`] : [])];
}

/** Splits a device-mapper name "vg-lv" (a '-' inside a name is doubled: "my--vg-lv") into VG and LV. */
export function lvmName(dm: string): { vg: string; lv: string } | undefined {
  const m = /^((?:[^-]|--)+)-((?:[^-]|--)+)$/.exec(dm);
  if (!m) return undefined;
  return { vg: m[1]!.replace(/--/g, '-'), lv: m[2]!.replace(/--/g, '-') };
}

type What = 'source' | 'target';
const codeOf = (what: What) => (what === 'source' ? ExitCode.SOURCE : ExitCode.TARGET_REFUSED);

// The allow check before anything is opened: on the resolved path, or the path as given when it
// does not exist (so that a path outside the list is refused as such, not as missing).
/** The allow check on what p resolves to (it may not exist yet), before anything is opened. */
export function precheck(p: string, allow: OpenOptions['allow']): void {
  if (!allow) return;
  const real = resolvedName(p);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(real);
  } catch { /* missing: statOrRefuse says so */ }
  allow(namesOf(real, st));
}

/** realpath, or for a missing file (a dangling link too) where its links and directory lead. */
function resolvedName(p: string): string {
  for (let hops = 0; hops < 40; hops++) {
    try {
      return fs.realpathSync(p);
    } catch { /* missing somewhere along the way */ }
    let link: string;
    try {
      link = fs.readlinkSync(p);
    } catch {
      try {
        return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
      } catch {
        return p;
      }
    }
    p = path.resolve(path.dirname(p), link);
  }
  return p;
}

function statOrRefuse(p: string, what: What): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : describe(err);
    throw new BlkError(codeOf(what), `${what} ${p} ${why}`, { cause: err });
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new BlkError(codeOf(what), `${what} ${p} is not a regular file or block device`);
  return st;
}

function openFd(p: string, flags: number, what: What, shown = p): number {
  try {
    return fs.openSync(p, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (what === 'source') throw new BlkError(ExitCode.SOURCE, `cannot open source ${shown}: ${describe(err)}`, { cause: err });
    if (code === 'EBUSY') refuse(shown, 'it is held open exclusively by another program (mounted, LVM, RAID or a running sync)', err);
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') refuse(shown, `it is read-only (${code})`, err);
    refuse(shown, describe(err), err);
  }
}

// Opens p read-only and checks that the fd is the file that was stat'ed and checked; returns
// the fd, its stat and what it resolves to. The fd is closed when a check fails.
function openChecked(p: string, what: What, opts: OpenOptions): { fd: number; st: fs.Stats; real: string } {
  precheck(p, opts.allow);
  const before = statOrRefuse(p, what);
  const fd = openFd(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK, what);
  try {
    const st = fs.fstatSync(fd);
    const real = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (st.dev !== before.dev || st.ino !== before.ino || (!st.isFile() && !st.isBlockDevice())) {
      throw new BlkError(codeOf(what), `${what} ${p} changed while it was being opened (now ${real}); refusing it`);
    }
    opts.allow?.(namesOf(real, st));
    return { fd, st, real };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function device(p: string, real: string, st: fs.Stats, fd: number, sys: Sysfs): Device {
  let open = true;
  return {
    path: p,
    realPath: real,
    kind: st.isFile() ? 'file' : 'block',
    size: sizeOf(p, st, sys),
    fd,
    ids: identities(real, st, LENIENT),
    close: () => {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

function sizeOf(p: string, st: fs.Stats, sys: Sysfs): number {
  if (st.isFile()) return st.size;
  const mm = devno(st.rdev);
  const sectors = sys.read(mm, 'size');
  if (sectors === undefined || !/^\d+$/.test(sectors)) throw new BlkError(ExitCode.IO, `cannot read the size of ${p} from /sys/dev/block/${mm}/size`);
  return Number(sectors) * 512;
}

/** Where the block device `p` (or a partition of it) is mounted read-write; [] for files or when unknown. */
export function writableMounts(p: string): string[] {
  try {
    const st = fs.statSync(p);
    return st.isBlockDevice() ? mountedAt(devno(st.rdev), LENIENT, true) : [];
  } catch {
    return [];
  }
}

/** Opens the source read-only. Warns when a block device source is mounted (the copy may be torn). */
export function openSource(p: string, opts: OpenOptions = {}): Device {
  const { fd, st, real } = openChecked(p, 'source', opts);
  try {
    if (st.isBlockDevice()) {
      const at = mountedAt(devno(st.rdev), LENIENT);
      if (at.length) log.warn(`source ${p} is mounted at ${at.join(', ')}: writes during the sync make a torn copy; use --snapshot`);
      const rw = mountedAt(devno(st.rdev), LENIENT, true);
      if (rw.length) return { ...device(p, real, st, fd, LENIENT), mountedRw: rw, mounted: at };
      if (at.length) return { ...device(p, real, st, fd, LENIENT), mounted: at };
    }
    return device(p, real, st, fd, LENIENT);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function refuse(p: string, why: string, cause?: unknown): never {
  throw new BlkError(ExitCode.TARGET_REFUSED, `target ${p} refused: ${why}`, { cause });
}

/** Why a target may not be written, or undefined; sysfs read errors throw (fail closed). */
export function writeRefusal(p: string, st: fs.Stats, sys: Sysfs): string | undefined {
  if (st.isFile()) {
    if ((st.mode & 0o222) === 0) return `the file has no write permission bits (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}); chmod u+w it to allow writes`;
    const loops = sys.loopsBackedBy(p);
    return loops.length ? `the file is attached to ${loops.join(', ')} (losetup -d it first)` : undefined;
  }
  const mm = devno(st.rdev);
  const at = mountedAt(mm, sys);
  if (at.length) return `it is mounted at ${at.join(', ')}`;
  const holders = sys.holders(mm);
  if (holders.length) return `it is in use by ${holders.join(', ')} (device-mapper, LVM or RAID)`;
  if (sys.read(mm, 'ro') === '1') return 'the block device is read-only';
  return undefined;
}

/** Opens the target; with write, refuses it (nothing written) for the reasons in the header. */
export function openTarget(p: string, opts: OpenOptions & { write: boolean }): Device {
  const sys = opts.write ? new Sysfs(true, opts.sysRoot) : LENIENT;
  const ro = openChecked(p, 'target', opts);
  const open = [ro.fd];
  try {
    if (opts.write) {
      const why = wrapped(p, () => writeRefusal(ro.real, ro.st, sys));
      if (why) refuse(p, why);
      const flags = fs.constants.O_RDWR | (ro.st.isBlockDevice() ? fs.constants.O_EXCL : 0);
      open.unshift(openFd(`/proc/self/fd/${ro.fd}`, flags, 'target', p)); // the inode checked, not a new lookup of p
      fs.closeSync(open.pop()!);
    }
    return device(p, ro.real, ro.st, open[0]!, sys);
  } catch (err) {
    for (const fd of open) fs.closeSync(fd);
    throw err;
  }
}

// A sysfs error thrown by a strict reader, reworded to name the target.
function wrapped<T>(p: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof BlkError && err.code === ExitCode.TARGET_REFUSED && !err.message.startsWith('target ')) refuse(p, err.message, err);
    throw err;
  }
}

/** Reads exactly len bytes at pos; bytes past the end of a file read as zeros when zeroFill. */
export function readFull(dev: Device, buf: Buffer, len: number, pos: number, zeroFill = false): void {
  let got = 0;
  while (got < len) {
    let n: number;
    try {
      n = fs.readSync(dev.fd, buf, got, len - got, pos + got);
    } catch (err) {
      throw new BlkError(ExitCode.IO, `read error on ${dev.path} at byte ${pos + got}: ${describe(err)}`, { cause: err });
    }
    if (n === 0) {
      if (!zeroFill) throw new BlkError(ExitCode.IO, `${dev.path} ended at byte ${pos + got}, expected ${pos + len} (did it shrink?)`);
      buf.fill(0, got, len);
      return;
    }
    got += n;
  }
}

/** Writes all of data at pos. */
export function writeFull(dev: Device, data: Uint8Array, pos: number): void {
  let done = 0;
  while (done < data.length) {
    try {
      done += fs.writeSync(dev.fd, data, done, data.length - done, pos + done);
    } catch (err) {
      throw new BlkError(ExitCode.IO, `write error on ${dev.path} at byte ${pos + done}: ${describe(err)}`, { cause: err });
    }
  }
}

const ZEROS = Buffer.alloc(1024 * 1024);

/** Writes real zeros over [offset, offset + length) (a block device is never sparse). */
export function writeZeros(dev: Device, offset: number, length: number): void {
  for (let done = 0; done < length; done += ZEROS.length) {
    writeFull(dev, ZEROS.subarray(0, Math.min(ZEROS.length, length - done)), offset + done);
  }
}

/** Extends a file target to size (sparse, ftruncate); a block device never grows (SIZE_MISMATCH). */
export function grow(dev: Device, size: number): void {
  if (dev.kind !== 'file') throw new BlkError(ExitCode.SIZE_MISMATCH, `target ${dev.path} is a block device and cannot grow`);
  try {
    fs.ftruncateSync(dev.fd, size);
  } catch (err) {
    throw new BlkError(ExitCode.IO, `cannot grow target ${dev.path} to ${size} bytes: ${describe(err)}`, { cause: err });
  }
  dev.size = size;
}

/**
 * Undoes a grow after a failed session: truncates a file target back to size. Returns an error
 * message when that fails (the caller reports it with the session's own error), else undefined.
 */
export function shrinkTo(dev: Device, size: number): string | undefined {
  if (dev.kind !== 'file' || dev.size <= size) return undefined;
  try {
    fs.ftruncateSync(dev.fd, size);
    dev.size = size;
    return undefined;
  } catch (err) {
    return `could not truncate ${dev.path} back to its ${size} bytes: ${describe(err)}`;
  }
}
