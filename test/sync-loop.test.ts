// The sync engine on real loop devices (root, util-linux, e2fsprogs): image → loop, loop → loop,
// the device size from the kernel, and the refusals that only exist for block devices (mounted,
// read-only, the same device under another name, a file attached to a loop device).
// Every loop device and mount is undone in t.teardown, even when the test fails.
import test, { type ExecutionContext } from 'ava';
import { closeSync, constants, copyFileSync, existsSync, openSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { runSync } from '../src/engine/sync.js';
import type { SyncOptions } from '../src/engine/types.js';
import { tempDir } from './helpers/patch-fixture.js';
import { Resources, blkdelta, esc, randomFile, readAt, requireBlockTools, sha256, touchBlocks, writeAt } from './helpers/engine-fixture.js';

const tmp = tempDir('blkdelta-loop-');
test.after.always(() => tmp.cleanup());
test.before(() => requireBlockTools());

const MiB = 1 << 20;
const SIZE = 16 * MiB;
let files = 0;
const fresh = (name: string) => join(tmp.dir, `${files++}-${name}`);

function resources(t: ExecutionContext): Resources {
  const r = new Resources();
  t.teardown(() => r.cleanup());
  return r;
}

/** A random image and a second one that differs from it in a few blocks. */
function pair(size = SIZE): { src: string; dst: string } {
  const src = fresh('src.img'), dst = fresh('dst.img');
  randomFile(src, size);
  copyFileSync(src, dst);
  touchBlocks(dst, 4096, [0, 17, 18, 2000, size / 4096 - 1]);
  return { src, dst };
}

const sync = (src: string, dst: string, extra: Partial<SyncOptions> = {}) =>
  runSync({ source: src, target: dst, mode: 'write', blockSize: 4096, sizePolicy: 'strict', ...extra });

test.serial('image → loop device: size from the kernel (a --sizelimit smaller than the file), target identical', async (t) => {
  const r = resources(t);
  const src = fresh('src.img'), backing = fresh('backing.img');
  randomFile(src, SIZE);
  randomFile(backing, SIZE + 3 * MiB);
  const dev = await r.run('losetup', ['-f', '--show', '--sizelimit', String(SIZE), backing]);
  r.adopt(`losetup -d ${dev}`, () => r.run('losetup', ['-d', dev]));
  t.is(statSync(dev).size, 0, 'stat of a block device says 0');
  const s = await sync(src, dev, { verify: true });
  t.like(s, { targetSize: SIZE, sourceSize: SIZE, blocksDiffering: SIZE / 4096, blocksWritten: SIZE / 4096, verified: true });
  t.is(sha256(dev), sha256(src));
  t.true(readAt(backing, 0, SIZE).equals(readAt(src, 0, SIZE)), 'the backing file does not hold the data');
  const again = await sync(src, dev);
  t.like(again, { blocksDiffering: 0, blocksWritten: 0 });
});

test.serial('loop → loop: only the differing blocks (zeros written as zeros), target identical; blkdelta verify agrees', async (t) => {
  const r = resources(t);
  const { src, dst } = pair();
  writeAt(src, 5 * MiB, Buffer.alloc(256 * 1024));
  const [a, b] = [await r.attach(src, { readOnly: true }), await r.attach(dst)];
  const s = await sync(a, b, { verify: true });
  t.like(s, { sourceSize: SIZE, targetSize: SIZE, blocksDiffering: 5 + 64, blocksZero: 64, blocksWritten: 5 + 64, records: 5, verified: true });
  t.is(sha256(b), sha256(a));
  const v = await blkdelta('verify', a, b);
  t.is(v.exitCode, 0, v.stderr);
});

test.serial('image → loop with a different size: grow refuses a block device (exit 6)', async (t) => {
  const r = resources(t);
  const { src } = pair(SIZE + MiB);
  const { dst } = pair();
  const dev = await r.attach(dst);
  const before = sha256(dev);
  const out = await blkdelta('sync', '--size-policy', 'grow', src, dev);
  t.is(out.exitCode, 6, out.stderr);
  t.regex(out.stderr, /only a file target can grow/);
  t.is(sha256(dev), before);
});

/** Runs `blkdelta sync ...args`, expects the exit code and message, and an unchanged `watch`. */
async function refused(t: ExecutionContext, args: string[], watch: string, exit: number, message: RegExp): Promise<void> {
  const before = sha256(watch);
  const out = await blkdelta('sync', ...args);
  t.is(out.exitCode, exit, out.stderr);
  t.regex(out.stderr, message);
  t.is(sha256(watch), before, `${watch} changed`);
}

test.serial('a mounted target is refused (exit 5, "mounted at"); a mounted source only warns', async (t) => {
  const r = resources(t);
  const { src, dst } = pair();
  const dev = await r.attach(dst);
  await r.run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', dev]);
  const mnt = fresh('mnt with space'); // mountinfo writes it as mnt\040with\040space
  await r.mount(dev, mnt);
  await refused(t, [src, dev], dev, 5, new RegExp(`target ${esc(dev)} refused: it is mounted at ${esc(mnt)}`));
  const copy = fresh('copy.img');
  randomFile(copy, SIZE);
  await r.run('mount', ['-o', 'remount,ro', mnt]);
  const out = await blkdelta('sync', dev, copy);
  t.is(out.exitCode, 0, out.stderr);
  t.regex(out.stderr, new RegExp(`warning: source ${esc(dev)} is mounted at ${esc(mnt)}`));
  t.is(sha256(copy), sha256(dev));
});

test.serial('the same loop device as source and target is refused (exit 5)', async (t) => {
  const r = resources(t);
  const { src } = pair();
  const dev = await r.attach(src);
  await refused(t, [dev, dev], dev, 5, new RegExp(`target ${esc(dev)} refused: it is the same device or file as the source`));
});

test.serial('a loop device over the source file, as target, is refused (exit 5); and the reverse', async (t) => {
  const r = resources(t);
  const { src } = pair();
  const dev = await r.attach(src);
  await refused(t, [src, dev], src, 5, new RegExp(`target ${esc(dev)} refused: it is the same device or file as the source`));
  await refused(t, [dev, src], src, 5, new RegExp(`target ${esc(src)} refused: it is the same device or file as the source`));
});

test.serial('a loop device stacked on the source loop device (losetup -o over /dev/loopN) is refused (exit 5)', async (t) => {
  const r = resources(t);
  const { src } = pair();
  const lower = await r.attach(src);
  const upper = await r.run('losetup', ['-f', '--show', '-o', '4096', lower]);
  r.adopt(`losetup -d ${upper}`, () => r.run('losetup', ['-d', upper]));
  await refused(t, ['--size-policy', 'min', lower, upper], lower, 5, new RegExp(`target ${esc(upper)} refused: it is the same device or file as the source`));
});

test.serial('a read-only loop device (losetup -r) is refused as a target (exit 5)', async (t) => {
  const r = resources(t);
  const { src, dst } = pair();
  const dev = await r.attach(dst, { readOnly: true });
  await refused(t, [src, dev], dev, 5, new RegExp(`target ${esc(dev)} refused: the block device is read-only`));
});

test.serial('a file attached to a loop device is refused as a target (exit 5), naming the loop device', async (t) => {
  const r = resources(t);
  const { src, dst } = pair();
  const dev = await r.attach(dst);
  await refused(t, [src, dst], dst, 5, new RegExp(`target ${esc(dst)} refused: the file is attached to ${esc(dev)}`));
});

test.serial('the same loop device under another name (a symlink, a mknod node) is refused (exit 5)', async (t) => {
  const r = resources(t);
  const { src } = pair();
  const dev = await r.attach(src);
  const link = fresh('dev-link');
  symlinkSync(dev, link);
  await refused(t, [dev, link], dev, 5, new RegExp(`target ${esc(link)} refused: it is the same device or file as the source`));
  const node = fresh('dev-node');
  const rdev = statSync(dev).rdev;
  await r.run('mknod', [node, 'b', String((rdev >> 8) & 0xfff), String((rdev & 0xff) | ((rdev >> 12) & 0xfff00))]);
  t.not(statSync(node).ino, statSync(dev).ino);
  await refused(t, [dev, node], dev, 5, new RegExp(`target ${esc(node)} refused: it is the same device or file as the source`));
});

test.serial('a whole loop device with a mounted partition is refused (exit 5, "mounted at")', async (t) => {
  const r = resources(t);
  const { src, dst } = pair();
  writeAt(dst, 0, mbr([[2048, SIZE / 512 - 2048]]));
  const dev = await r.run('losetup', ['-f', '--show', '-P', dst]);
  r.adopt(`losetup -d ${dev}`, () => r.run('losetup', ['-d', dev]));
  // Kernels without the msdos partition parser do not scan it; partx adds it with BLKPG.
  if (!existsSync(`${dev}p1`)) await r.run('partx', ['-a', dev]);
  await r.run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', `${dev}p1`]);
  const mnt = fresh('part-mnt');
  await r.mount(`${dev}p1`, mnt);
  await refused(t, [src, dev], dev, 5, new RegExp(`target ${esc(dev)} refused: it is mounted at ${esc(mnt)}`));
});

test.serial('a target another program holds open with O_EXCL is refused (exit 5, EBUSY)', async (t) => {
  const r = resources(t);
  const { src, dst } = pair();
  const dev = await r.attach(dst);
  const fd = openSync(dev, constants.O_RDONLY | constants.O_EXCL);
  try {
    await refused(t, [src, dev], dev, 5, new RegExp(`target ${esc(dev)} refused: it is held open exclusively by another program`));
  } finally {
    closeSync(fd);
  }
  const ok = await blkdelta('sync', src, dev);
  t.is(ok.exitCode, 0, ok.stderr);
  t.is(sha256(dev), sha256(src));
});

test.serial('a disk and its own partition (or the file under it) are refused as source and target; two sibling partitions sync', async (t) => {
  const r = resources(t);
  const { dst: disk } = pair();
  const half = (SIZE / 512 - 2048) / 2;
  writeAt(disk, 0, mbr([[2048, half], [2048 + half, half]]));
  const dev = await r.run('losetup', ['-f', '--show', '-P', disk]);
  r.adopt(`losetup -d ${dev}`, () => r.run('losetup', ['-d', dev]));
  if (!existsSync(`${dev}p2`)) await r.run('partx', ['-a', dev]);
  const [p1, p2] = [`${dev}p1`, `${dev}p2`];
  await refused(t, ['--size-policy', 'min', p1, dev], dev, 5, new RegExp(`target ${esc(dev)} refused: it is the same device or file as the source`));
  await refused(t, ['--size-policy', 'min', dev, p1], dev, 5, new RegExp(`target ${esc(p1)} refused: it is the same device or file as the source`));
  await refused(t, ['--size-policy', 'min', disk, p1], disk, 5, new RegExp(`target ${esc(p1)} refused: it is the same device or file as the source`));
  const ok = await blkdelta('sync', p1, p2);
  t.is(ok.exitCode, 0, ok.stderr);
  t.is(sha256(p2), sha256(p1));
});

/** A DOS partition table (MBR) with Linux partitions [start, sectors]: what fdisk writes, without fdisk. */
function mbr(parts: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(512);
  parts.forEach(([start, sectors], i) => {
    const entry = 446 + 16 * i;
    b[entry + 4] = 0x83;
    b.writeUInt32LE(start, entry + 8);
    b.writeUInt32LE(sectors, entry + 12);
  });
  b.writeUInt16LE(0xaa55, 510);
  return b;
}
