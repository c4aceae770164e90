// Opening the two ends of a sync: image files and block devices.
// The source is opened read-only. The target is refused, with nothing written, when it is missing,
// not a file or block device, mounted, held by another driver (device-mapper, md, a loop device),
// held open exclusively (O_EXCL on a block device fails with EBUSY), or read-only.
// The size of a block device comes from the kernel (sysfs), never from stat (which says 0).
import fs from 'node:fs';
import path from 'node:path';
import { BlkError, ExitCode, describe } from '../errors.js';
import { log } from '../log.js';

export interface Device {
  path: string;
  kind: 'file' | 'block';
  size: number;
  fd: number;
  /** Identities of the underlying storage ("b:major:minor", "f:dev:ino"), for the same-device check;
   *  a whole disk lists its partitions too. */
  ids: string[];
  /** Source only: where it is mounted read-write (a copy read while it is written may be torn). */
  mountedRw?: string[];
  close(): void;
}

/** Linux dev_t → [major, minor] (glibc's gnu_dev_major/minor). */
export function majorMinor(rdev: number): [number, number] {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return [major >>> 0, minor >>> 0];
}

/** Mount points per "major:minor" from /proc/self/mountinfo text (field 3 is major:minor). */
export function parseMountinfo(text: string, writableOnly = false): Map<string, string[]> {
  const byDev = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5 || (writableOnly && !/^rw(,|$)/.test(f[5] ?? ''))) continue;
    const mp = f[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    byDev.set(f[2]!, [...(byDev.get(f[2]!) ?? []), mp]);
  }
  return byDev;
}

function sysfs(mm: string, file: string): string | undefined {
  try {
    return fs.readFileSync(`/sys/dev/block/${mm}/${file}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function listSysfs(mm: string, dir: string): string[] {
  try {
    return fs.readdirSync(`/sys/dev/block/${mm}/${dir}`);
  } catch {
    return [];
  }
}

/** Partitions of a whole disk, as "major:minor" strings. */
function partitionsOf(mm: string): string[] {
  const name = path.basename(fs.realpathSync(`/sys/dev/block/${mm}`));
  return listSysfs(mm, '')
    .filter((e) => e.startsWith(name))
    .map((e) => sysfs(mm, `${e}/dev`))
    .filter((d): d is string => !!d);
}

/** Loop devices whose backing file is `file` ("/dev/loopN"). */
export function loopsBackedBy(file: string): string[] {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    return [];
  }
  let names: string[] = [];
  try {
    names = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return [];
  }
  return names
    .filter((n) => {
      try {
        return fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim() === real;
      } catch {
        return false;
      }
    })
    .map((n) => `/dev/${n}`);
}

function identities(p: string, st: fs.Stats): string[] {
  if (st.isBlockDevice()) {
    const mm = majorMinor(st.rdev).join(':');
    const back = sysfs(mm, 'loop/backing_file');
    // A whole disk also holds its partitions, so a disk and its own partition share an id
    // (two sibling partitions do not).
    const ids = [`b:${mm}`, ...partitionsOf(mm).map((p) => `b:${p}`)];
    if (back) {
      try {
        ids.push(...identities(back, fs.statSync(back))); // what the loop device sits on: a file or another device
      } catch { /* backing file deleted */ }
    }
    return ids;
  }
  const ids = [`f:${st.dev}:${st.ino}`];
  for (const loop of loopsBackedBy(p)) {
    const mm = majorMinor(fs.statSync(loop).rdev).join(':');
    ids.push(`b:${mm}`, ...partitionsOf(mm).map((d) => `b:${d}`));
  }
  return ids;
}

function statOrRefuse(p: string, what: 'source' | 'target'): fs.Stats {
  const code = what === 'source' ? ExitCode.SOURCE : ExitCode.TARGET_REFUSED;
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : describe(err);
    throw new BlkError(code, `${what} ${p} ${why}`, { cause: err });
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new BlkError(code, `${what} ${p} is not a regular file or block device`);
  return st;
}

function sizeOf(p: string, st: fs.Stats): number {
  if (st.isFile()) return st.size;
  const mm = majorMinor(st.rdev).join(':');
  const sectors = sysfs(mm, 'size');
  if (sectors === undefined) throw new BlkError(ExitCode.IO, `cannot read the size of ${p} from /sys/dev/block/${mm}/size`);
  return Number(sectors) * 512;
}

function mountedAt(mm: string, writableOnly = false): string[] {
  const mounts = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'), writableOnly);
  return [mm, ...partitionsOf(mm)].flatMap((d) => mounts.get(d) ?? []);
}

/** Where the block device `p` (or a partition of it) is mounted read-write; [] for files or when unknown. */
export function writableMounts(p: string): string[] {
  try {
    const st = fs.statSync(p);
    return st.isBlockDevice() ? mountedAt(majorMinor(st.rdev).join(':'), true) : [];
  } catch {
    return [];
  }
}

function device(p: string, st: fs.Stats, fd: number): Device {
  let open = true;
  return {
    path: p,
    kind: st.isFile() ? 'file' : 'block',
    size: sizeOf(p, st),
    fd,
    ids: identities(p, st),
    close: () => {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

/** Opens the source read-only. Warns when a block device source is mounted (the copy may be torn). */
export function openSource(p: string): Device {
  const st = statOrRefuse(p, 'source');
  let fd: number;
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY);
  } catch (err) {
    throw new BlkError(ExitCode.SOURCE, `cannot open source ${p}: ${describe(err)}`, { cause: err });
  }
  if (st.isBlockDevice()) {
    const at = mountedAt(majorMinor(st.rdev).join(':'));
    if (at.length) log.warn(`source ${p} is mounted at ${at.join(', ')}: writes during the sync make a torn copy; use --snapshot`);
    const rw = mountedAt(majorMinor(st.rdev).join(':'), true);
    if (rw.length) return { ...device(p, st, fd), mountedRw: rw };
  }
  return device(p, st, fd);
}

function refuse(p: string, why: string, cause?: unknown): never {
  throw new BlkError(ExitCode.TARGET_REFUSED, `target ${p} refused: ${why}`, { cause });
}

/** Opens the target; with write, refuses it when mounted, in use, or read-only. */
export function openTarget(p: string, opts: { write: boolean }): Device {
  const st = statOrRefuse(p, 'target');
  if (st.isBlockDevice() && opts.write) {
    const mm = majorMinor(st.rdev).join(':');
    const at = mountedAt(mm);
    if (at.length) refuse(p, `it is mounted at ${at.join(', ')}`);
    const holders = [mm, ...partitionsOf(mm)].flatMap((d) => listSysfs(d, 'holders'));
    if (holders.length) refuse(p, `it is in use by ${holders.join(', ')} (device-mapper, LVM or RAID)`);
    if (sysfs(mm, 'ro') === '1') refuse(p, 'the block device is read-only');
  }
  if (st.isFile() && opts.write) {
    const loops = loopsBackedBy(p);
    if (loops.length) refuse(p, `the file is attached to ${loops.join(', ')} (losetup -d it first)`);
  }
  const flags = opts.write ? fs.constants.O_RDWR | (st.isBlockDevice() ? fs.constants.O_EXCL : 0) : fs.constants.O_RDONLY;
  let fd: number;
  try {
    fd = fs.openSync(p, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') refuse(p, 'it is held open exclusively by another program (mounted, LVM, RAID or a running sync)', err);
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') refuse(p, `it is read-only (${code})`, err);
    refuse(p, describe(err), err);
  }
  return device(p, st, fd);
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
