// A real file system through the sync engine: mkfs.ext4 on a 128 MiB loop device, many files
// written and deleted, synced to a second loop device; the target must pass `fsck.ext4 -n -f` and,
// mounted read-only, hold the same tree (path, type, size, mode, sha256) as the source. Then the
// source changes and an incremental sync writes only part of the device, with the same checks.
// Loop devices and mounts are undone in after.always, even when a test fails.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, truncateSync, writeFileSync, appendFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { runSync } from '../src/engine/sync.js';
import type { SyncSummary } from '../src/engine/types.js';
import { tempDir } from './helpers/patch-fixture.js';
import { Resources, TOOLS_HINT, cleanupAll, requireBlockTools, sha256 } from './helpers/engine-fixture.js';

const MiB = 1 << 20;
const SIZE = 128 * MiB;
const BLOCKS = SIZE / 4096;
const tmp = tempDir('blkdelta-ext4-');
const res = new Resources();
let srcDev = '', dstDev = '';
const srcMnt = join(tmp.dir, 'src-mnt'), dstMnt = join(tmp.dir, 'dst-mnt');

test.before(async () => {
  requireBlockTools();
  for (const name of ['src.img', 'dst.img']) {
    writeFileSync(join(tmp.dir, name), '');
    truncateSync(join(tmp.dir, name), SIZE);
  }
  srcDev = await res.attach(join(tmp.dir, 'src.img'));
  dstDev = await res.attach(join(tmp.dir, 'dst.img'));
  await res.run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0', srcDev]);
});
test.after.always(() => cleanupAll(res, tmp.dir));

/** Writes a tree of small and large random files and directories, then deletes some of them. */
function populate(root: string): void {
  for (let d = 0; d < 12; d++) {
    const dir = join(root, `dir${d}`, `sub${d % 3}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 40; f++) writeFileSync(join(dir, `small${f}.bin`), randomBytes((d * 131 + f * 977) % 20_000));
  }
  for (let i = 0; i < 6; i++) writeFileSync(join(root, `large${i}.bin`), randomBytes((3 + i) * MiB + i * 4097));
  writeFileSync(join(root, 'text.log'), 'a line of log text that compresses well\n'.repeat(50_000));
  symlinkSync('dir1/sub1/small3.bin', join(root, 'link'));
  for (let d = 0; d < 12; d += 3) for (let f = 0; f < 40; f += 4) rmSync(join(root, `dir${d}`, `sub${d % 3}`, `small${f}.bin`));
  rmSync(join(root, 'large2.bin'));
  rmSync(join(root, 'dir5'), { recursive: true });
}

/** Changes the tree: rewrites part of a large file, appends, deletes, adds a directory. */
function change(root: string): void {
  const big = join(root, 'large1.bin');
  const b = readFileSync(big);
  randomBytes(300_000).copy(b, 1 * MiB);
  writeFileSync(big, b);
  appendFileSync(join(root, 'text.log'), 'appended after the first sync\n'.repeat(1000));
  rmSync(join(root, 'large4.bin'));
  rmSync(join(root, 'dir7'), { recursive: true });
  mkdirSync(join(root, 'new', 'deeper'), { recursive: true });
  for (let f = 0; f < 50; f++) writeFileSync(join(root, 'new', 'deeper', `n${f}.bin`), randomBytes(f * 300));
  writeFileSync(join(root, 'new', 'big.bin'), randomBytes(5 * MiB));
}

/** Sorted "path type size mode sha256|link-target" lines for every entry under root. */
function listing(root: string): string[] {
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const kind = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : st.isFile() ? 'f' : '?';
      const content = kind === 'f' ? createHash('sha256').update(readFileSync(p)).digest('hex') : kind === 'l' ? readlinkSync(p) : '';
      lines.push(`${relative(root, p)} ${kind} ${kind === 'd' ? '' : st.size} ${st.mode.toString(8)} ${content}`);
      if (kind === 'd') walk(p);
    }
  };
  walk(root);
  return lines.sort();
}

async function fsckClean(dev: string): Promise<{ exitCode: number; out: string }> {
  const r = await execa('fsck.ext4', ['-n', '-f', dev], { reject: false, timeout: 120_000 });
  if (r.code === 'ENOENT') throw new Error(`fsck.ext4 is missing: ${TOOLS_HINT}`);
  return { exitCode: r.exitCode ?? -1, out: `${r.stdout}\n${r.stderr}` };
}

/** Mounts both devices read-only, lists both trees, unmounts. */
async function bothTrees(): Promise<[string[], string[]]> {
  await res.mount(srcDev, srcMnt, 'ro');
  await res.mount(dstDev, dstMnt, 'ro');
  try {
    return [listing(srcMnt), listing(dstMnt)];
  } finally {
    await res.umount(dstMnt);
    await res.umount(srcMnt);
  }
}

async function syncAndCheck(t: import('ava').ExecutionContext): Promise<SyncSummary> {
  const s = await runSync({ source: srcDev, target: dstDev, mode: 'write', blockSize: 4096, sizePolicy: 'strict', verify: true });
  t.like(s, { sourceSize: SIZE, targetSize: SIZE, blocksCompared: BLOCKS, verified: true });
  t.is(s.blocksWritten, s.blocksDiffering);
  t.log(`${s.blocksDiffering} of ${BLOCKS} blocks differed (${s.blocksZero} all-zero), ${s.records} records`);
  t.is(sha256(dstDev), sha256(srcDev), 'the devices differ after the sync');
  const fsck = await fsckClean(dstDev);
  t.is(fsck.exitCode, 0, fsck.out);
  const [src, dst] = await bothTrees();
  t.true(src.length > 300, `only ${src.length} entries in the source tree`);
  t.deepEqual(dst, src);
  return s;
}

test.serial('ext4 with many files synced to a blank loop device: fsck clean, same tree', async (t) => {
  await res.mount(srcDev, srcMnt);
  populate(srcMnt);
  await res.umount(srcMnt);
  const s = await syncAndCheck(t);
  t.true(s.blocksWritten > 30 * MiB / 4096, `${s.blocksWritten} blocks written`);
  t.true(s.blocksWritten < BLOCKS, 'all-zero blocks of the source were written to the blank target');
});

test.serial('after changes to the source fs, an incremental sync writes a fraction of the device: fsck clean, same tree', async (t) => {
  await res.mount(srcDev, srcMnt);
  change(srcMnt);
  await res.umount(srcMnt);
  const s = await syncAndCheck(t);
  t.true(s.blocksDiffering > 0);
  t.true(s.blocksWritten < BLOCKS / 8, `${s.blocksWritten} of ${BLOCKS} blocks written`);
});
