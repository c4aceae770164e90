// Real images, loop devices and mounts for the sync engine's tests, with cleanup that runs even
// when a test fails: every loop device attached, mount made and immutable flag set through a
// Resources object is undone by its cleanup() (call it from test.after.always / t.teardown).
// A Workspace is one test file's temp dir plus its Resources; its cleanup() releases them, then
// removes the dir. bin/blkdelta runs as a child (blkdelta()), runSync in-process (syncFiles()).
// sha256 streams the file or device in 4 MiB reads, so memory does not grow with the image.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { runSync } from '../../src/engine/sync.js';
import type { SyncOptions, SyncSummary } from '../../src/engine/types.js';
import { BIN_PATH } from '../../src/transport/local.js';

export const TOOLS_HINT = 'apt-get install util-linux e2fsprogs';

/** Throws a message saying how to install them when losetup, mkfs.ext4 or fsck.ext4 are missing. */
export function requireBlockTools(): void {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  for (const tool of ['losetup', 'mkfs.ext4', 'fsck.ext4', 'mount', 'partx']) {
    if (!dirs.some((d) => d && existsSync(join(d, tool)))) throw new Error(`${tool} is missing: ${TOOLS_HINT}`);
  }
  if (process.getuid?.() !== 0) throw new Error('loop device tests must run as root (losetup, mount)');
}

/** sha256 of a file or block device, streamed. */
export function sha256(path: string): string {
  const fd = openSync(path, 'r');
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** Reads len bytes at pos of a file or device. */
export function readAt(path: string, pos: number, len: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(fd, b, got, len - got, pos + got);
      if (n === 0) break;
      got += n;
    }
    return b.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** Writes data at pos of a file or device (no truncation). */
export function writeAt(path: string, pos: number, data: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, pos);
  } finally {
    closeSync(fd);
  }
}

/** A file of `size` random bytes, written in 4 MiB steps. */
export function randomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let pos = 0; pos < size; pos += 4 << 20) writeSync(fd, randomBytes(Math.min(4 << 20, size - pos)), 0, undefined, pos);
  } finally {
    closeSync(fd);
  }
}

export function fileSize(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** Flips bits of the byte at each offset (inside the file): exactly the blocks holding them differ. */
export function touchBytes(path: string, offsets: number[]): void {
  const size = fileSize(path);
  for (const pos of offsets) {
    if (pos < 0 || pos >= size) throw new Error(`touchBytes: ${pos} is outside ${path} (${size} bytes)`);
    writeAt(path, pos, Buffer.from([readAt(path, pos, 1)[0]! ^ 0x5a]));
  }
}

/** Changes one byte in each listed block (one inside the file): exactly those blocks differ. */
export function touchBlocks(path: string, blockSize: number, blocks: number[]): void {
  const size = fileSize(path);
  touchBytes(path, blocks.map((b) => b * blockSize + ((b * 37) % Math.min(blockSize, size - b * blockSize))));
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs bin/blkdelta with args; never throws on a non-zero exit. */
export async function blkdelta(...args: string[]): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN_PATH, ...args], { reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Loop devices, mounts and immutable files a test made; cleanup() undoes them all, newest first. */
export class Resources {
  private undo: Array<{ what: string; run: () => Promise<unknown> }> = [];

  async run(cmd: string, args: string[]): Promise<string> {
    const r = await execa(cmd, args, { reject: false, timeout: 60_000 });
    if (r.exitCode !== 0) {
      const hint = r.code === 'ENOENT' || r.exitCode === 127 ? ` (${cmd} is missing: ${TOOLS_HINT})` : '';
      throw new Error(`${cmd} ${args.join(' ')} failed${hint}: ${r.stderr || r.message}`);
    }
    return r.stdout.trim();
  }

  /** Registers an undo step for something made outside these helpers. */
  adopt(what: string, run: () => Promise<unknown>): void {
    this.undo.push({ what, run });
  }

  /** losetup -f --show [-r] file → /dev/loopN, detached by cleanup(). */
  async attach(file: string, opts: { readOnly?: boolean } = {}): Promise<string> {
    const dev = await this.run('losetup', ['-f', '--show', ...(opts.readOnly ? ['-r'] : []), file]);
    this.undo.push({ what: `losetup -d ${dev}`, run: () => this.run('losetup', ['-d', dev]) });
    return dev;
  }

  /** mount [-o opts] dev dir (dir is created), unmounted by cleanup(). */
  async mount(dev: string, dir: string, options?: string): Promise<void> {
    mkdirSync(dir, { recursive: true });
    await this.run('mount', [...(options ? ['-o', options] : []), dev, dir]);
    this.undo.push({ what: `umount ${dir}`, run: () => this.run('umount', [dir]) });
  }

  /** A tmpfs of `size` (e.g. "2m") at dir: a real file system that fills up. Unmounted by cleanup(). */
  async mountTmpfs(dir: string, size: string): Promise<void> {
    mkdirSync(dir, { recursive: true });
    await this.run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'blkdelta-test', dir]);
    this.undo.push({ what: `umount ${dir}`, run: () => this.run('umount', [dir]) });
  }

  /** Unmounts now (and forgets the pending undo). */
  async umount(dir: string): Promise<void> {
    await this.run('umount', [dir]);
    this.undo = this.undo.filter((u) => u.what !== `umount ${dir}`);
  }

  /** chattr +i file; cleanup() runs chattr -i so the temp dir can be removed. */
  async immutable(file: string): Promise<void> {
    await this.run('chattr', ['+i', file]);
    this.undo.push({ what: `chattr -i ${file}`, run: () => this.run('chattr', ['-i', file]) });
  }

  /** A read-only bind mount of dir at ro; unmounted by cleanup(). */
  async readOnlyBind(dir: string, ro: string): Promise<void> {
    await this.mount(dir, ro, 'bind');
    await this.run('mount', ['-o', 'remount,bind,ro', ro]);
  }

  /** Undoes everything, newest first; throws after trying all if any step failed. */
  async cleanup(): Promise<void> {
    const failed: string[] = [];
    for (const u of this.undo.reverse()) {
      try {
        await u.run();
      } catch (err) {
        failed.push(`${u.what}: ${(err as Error).message}`);
      }
    }
    this.undo = [];
    if (failed.length) throw new Error(`cleanup failed: ${failed.join('; ')}`);
  }
}

/** Removes a temp dir after the resources inside it are released. */
export async function cleanupAll(res: Resources, dir: string): Promise<void> {
  try {
    await res.cleanup();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A temp dir for one test file: fresh names in it, random image pairs, and its Resources. */
export class Workspace {
  readonly dir: string;
  readonly res = new Resources();
  private n = 0;
  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  /** A new path in the workspace (nothing is created). */
  fresh(name: string): string {
    return join(this.dir, `${this.n++}-${name}`);
  }

  /** A random source of `size` bytes and a target that starts as a copy of it. */
  pair(size: number): { src: string; dst: string } {
    const src = this.fresh('src.img'), dst = this.fresh('dst.img');
    randomFile(src, size);
    copyFileSync(src, dst);
    return { src, dst };
  }

  cleanup(): Promise<void> {
    return cleanupAll(this.res, this.dir);
  }
}

/** runSync of two local paths: write, 4 KiB blocks, strict, unless `extra` says otherwise. */
export function syncFiles(src: string, dst: string, extra: Partial<SyncOptions> = {}): Promise<SyncSummary> {
  return runSync({ source: src, target: dst, mode: 'write', blockSize: 4096, sizePolicy: 'strict', ...extra });
}

/** PIDs of the live `blkdelta server` children of a process (this one by default). */
export function serverChildren(ppid = process.pid): number[] {
  const r = spawnSync('ps', ['-o', 'pid=,stat=,args=', '--ppid', String(ppid)], { encoding: 'utf8' });
  const rows = r.stdout.split('\n').map((l) => l.trim().split(/\s+/));
  return rows.filter(([, stat, ...args]) => stat && !stat.startsWith('Z') && args.includes('server')).map(([pid]) => Number(pid));
}

/**
 * SIGINT to a running `blkdelta sync` with its local server frozen (SIGSTOP) until the client has
 * logged that it took the signal, so that the run cannot finish first however slow the machine
 * is. The caller's teardown should SIGKILL `server` in case the test fails with it stopped.
 */
export async function interruptWithServerFrozen(cli: ChildProcess, server: number, stderr: () => string): Promise<void> {
  process.kill(server, 'SIGSTOP');
  cli.kill('SIGINT');
  while (!stderr().includes('SIGINT received') && cli.exitCode === null) await new Promise((r) => setTimeout(r, 10));
  process.kill(server, 'SIGCONT');
}

/** A string as a literal inside a RegExp. */
export const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
