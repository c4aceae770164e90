// What the kernel says about a block device: dev_t decoding, sysfs attributes (size, ro, holders,
// partitions, loop backing files) and the mount table.
// A Sysfs reader is strict or lenient. "Absent" (ENOENT) always means "not there" (no holders
// directory, not a loop device). Any other read error (EACCES, EIO, EISDIR...) is thrown by a
// strict reader, the one used for targets, so that a check that could not be made refuses the
// target (fail closed); a lenient reader (sources, identities for the same-device check) treats
// it as absent. Reads only; memory: one directory listing at a time.
import fs from 'node:fs';
import path from 'node:path';
import { BlkError, ExitCode, describe } from '../errors.js';

/** Linux dev_t → [major, minor] (glibc's gnu_dev_major/minor). */
export function majorMinor(rdev: number): [number, number] {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return [major >>> 0, minor >>> 0];
}

/** "major:minor" of a dev_t, as sysfs and lvs write it. */
export function devno(rdev: number): string {
  return majorMinor(rdev).join(':');
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

export class Sysfs {
  /**
   * strict: read errors other than ENOENT throw BlkError TARGET_REFUSED naming the file (targets);
   * else they read as absent. root: where sysfs is mounted (a test points it at a tree of its own).
   */
  constructor(readonly strict: boolean, readonly root = '/sys') {}

  /** A sysfs attribute of a block device, trimmed; undefined when absent. */
  read(mm: string, file: string): string | undefined {
    return this.guard(`${this.root}/dev/block/${mm}/${file}`, (p) => fs.readFileSync(p, 'utf8').trim());
  }

  /** Entries of a directory of a block device; [] when absent. */
  list(mm: string, dir: string): string[] {
    return this.guard(`${this.root}/dev/block/${mm}/${dir}`, (p) => fs.readdirSync(p)) ?? [];
  }

  /** Partitions of a whole disk, as "major:minor" strings. */
  partitionsOf(mm: string): string[] {
    const real = this.guard(`${this.root}/dev/block/${mm}`, (p) => fs.realpathSync(p));
    if (real === undefined) return [];
    const name = path.basename(real);
    return this.list(mm, '')
      .filter((e) => e.startsWith(name))
      .map((e) => this.read(mm, `${e}/dev`))
      .filter((d): d is string => !!d);
  }

  /** Loop devices whose backing file is `file` ("/dev/loopN"). */
  loopsBackedBy(file: string): string[] {
    const real = this.guard(file, (p) => fs.realpathSync(p));
    if (real === undefined) return [];
    const names = (this.guard(`${this.root}/block`, (p) => fs.readdirSync(p)) ?? []).filter((n) => n.startsWith('loop'));
    return names
      .filter((n) => this.guard(`${this.root}/block/${n}/loop/backing_file`, (p) => fs.readFileSync(p, 'utf8').trim()) === real)
      .map((n) => `/dev/${n}`);
  }

  /** Holders (device-mapper, md, loop) of a device or of any of its partitions. */
  holders(mm: string): string[] {
    return [mm, ...this.partitionsOf(mm)].flatMap((d) => this.list(d, 'holders'));
  }

  // Runs a read; ENOENT is "absent"; other errors per strict.
  private guard<T>(p: string, read: (p: string) => T): T | undefined {
    try {
      return read(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || !this.strict) return undefined;
      throw new BlkError(ExitCode.TARGET_REFUSED, `cannot read ${p} (${describe(err)}), so the target's state cannot be checked`, { cause: err });
    }
  }
}

/** Mount points of a device and of its partitions. */
export function mountedAt(mm: string, sys: Sysfs, writableOnly = false): string[] {
  const mounts = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'), writableOnly);
  return [mm, ...sys.partitionsOf(mm)].flatMap((d) => mounts.get(d) ?? []);
}
