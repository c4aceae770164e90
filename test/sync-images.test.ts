// The sync engine end to end on real image files: runSync for summaries, bin/blkdelta for exit
// codes and output. After every write the target must be byte-identical to the source (sha256).
// Refusals, write errors and interruptions are in sync-refusals.test.ts.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { SizePolicy, SyncSummary } from '../src/engine/types.js';
import { LocalTransport } from '../src/transport/local.js';
import { Workspace, blkdelta, fileSize, randomFile, readAt, sha256, syncFiles as sync, touchBlocks, touchBytes, writeAt } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-images-');
test.after.always(() => ws.cleanup());
const fresh = (name: string) => ws.fresh(name);
const pair = (size: number) => ws.pair(size);

const MiB = 1 << 20;
/** Holes split extents: ext4 may take a few 4 KiB blocks for the extent tree. */
const EXTENT_SLACK = 4 * 4096;

test('scattered changes: exactly those blocks are written, target identical', async (t) => {
  const { src, dst } = pair(8 * MiB);
  const blocks = Array.from({ length: 40 }, (_, i) => i * 51 + (i % 3));
  touchBlocks(dst, 4096, blocks);
  t.not(sha256(dst), sha256(src));
  const s = await sync(src, dst);
  t.is(sha256(dst), sha256(src));
  t.like(s, { blocksCompared: 2048, blocksDiffering: 40, blocksWritten: 40, records: 40, bytesWritten: 40 * 4096, identical: false, blocksZero: 0 });
  t.like(s, { bytesReadSource: 8 * MiB, bytesReadTarget: 8 * MiB, sourceSize: 8 * MiB, targetSize: 8 * MiB, grown: false });
  t.deepEqual(s.firstDiffs, blocks.slice(0, 10).map((b) => b * 4096));
  t.true(s.bytesSent < 200 * 1024, `sent ${s.bytesSent} bytes for 40 blocks of random data`);
});

test('clustered changes: one record per run (split at 1 MiB chunks), target identical', async (t) => {
  const { src, dst } = pair(8 * MiB);
  const blocks = [...Array.from({ length: 300 }, (_, i) => 100 + i), ...Array.from({ length: 10 }, (_, i) => 1000 + i)];
  touchBlocks(src, 4096, blocks);
  const s = await sync(src, dst);
  t.is(sha256(dst), sha256(src));
  t.like(s, { blocksDiffering: 310, blocksWritten: 310, records: 3, bytesWritten: 310 * 4096 });
});

test('a size that is not a multiple of the block size (10_000_123 bytes): first, middle and partial last block', async (t) => {
  const { src, dst } = pair(10_000_123);
  touchBlocks(dst, 4096, [0, 1234]);
  touchBytes(dst, [10_000_122]);
  const s = await sync(src, dst);
  t.is(sha256(dst), sha256(src));
  t.is(fileSize(dst), 10_000_123);
  t.like(s, { blocksCompared: 2442, blocksDiffering: 3, blocksWritten: 3, bytesWritten: 2 * 4096 + (10_000_123 - 2441 * 4096) });
  t.is(s.firstDiffs.at(-1), 2441 * 4096);
});

test('zero runs at the end of an odd-sized file (a partial last block) become holes without changing its size', async (t) => {
  const size = 10_000_123, last = 2441 * 4096;
  const { src, dst } = pair(size);
  writeAt(src, last - 3 * 4096, Buffer.alloc(size - last + 3 * 4096));
  const s = await sync(src, dst);
  t.like(s, { blocksDiffering: 4, blocksZero: 4, bytesWritten: size - last + 3 * 4096 });
  t.is(fileSize(dst), size);
  t.is(sha256(dst), sha256(src));
});

test('empty (0-byte) source and target: exit 0, nothing compared', async (t) => {
  const src = fresh('empty-src.img'), dst = fresh('empty-dst.img');
  writeFileSync(src, '');
  writeFileSync(dst, '');
  const r = await blkdelta('sync', src, dst, '--json');
  t.is(r.exitCode, 0, r.stderr);
  t.like(JSON.parse(r.stdout), { blocksCompared: 0, blocksDiffering: 0, blocksWritten: 0, identical: true, sourceSize: 0, targetSize: 0 });
  t.is(fileSize(dst), 0);
});

test('zeroed source ranges become holes in a file target (st_blocks shrinks), data identical', async (t) => {
  const { src, dst } = pair(16 * MiB);
  writeAt(src, 1 * MiB, Buffer.alloc(2 * MiB));
  writeAt(src, 9 * MiB + 8192, Buffer.alloc(3 * 4096));
  const before = statSync(dst).blocks;
  const s = await sync(src, dst);
  t.is(sha256(dst), sha256(src));
  t.like(s, { blocksDiffering: 515, blocksZero: 515, blocksWritten: 515 });
  const after = statSync(dst).blocks;
  t.true(before - after >= (2 * MiB + 3 * 4096 - EXTENT_SLACK) / 512, `st_blocks ${before} → ${after}`);
});

// ---- size policies (CLI) ----

const policy = test.macro({
  async exec(t, p: SizePolicy, srcSize: number, dstSize: number, want: { exit: number; message?: RegExp }) {
    const src = fresh('src.img'), dst = fresh('dst.img');
    randomFile(src, srcSize);
    randomFile(dst, dstSize);
    const common = Math.min(srcSize, dstSize);
    writeAt(dst, 0, readAt(src, 0, common));
    touchBlocks(dst, 4096, [0, 100, Math.floor((common - 1) / 4096)]);
    const [before, tailBefore] = [sha256(dst), readAt(dst, common, dstSize)];
    const r = await blkdelta('sync', '--size-policy', p, '--json', src, dst);
    t.is(r.exitCode, want.exit, r.stderr);
    if (want.message) {
      t.regex(r.stderr, want.message);
      t.is(sha256(dst), before, 'a refused sync changed the target');
      t.is(fileSize(dst), dstSize);
      return;
    }
    const s = JSON.parse(r.stdout) as SyncSummary;
    if (p === 'grow') {
      t.is(sha256(dst), sha256(src));
      t.true(s.grown);
    } else {
      t.is(fileSize(dst), dstSize, 'min changed the target size');
      t.true(readAt(dst, 0, common).equals(readAt(src, 0, common)), 'common prefix differs');
      t.true(readAt(dst, common, dstSize).equals(tailBefore), 'the tail past the common prefix changed');
      t.is(s.comparedBytes, common);
    }
    t.is(s.blocksDiffering, 3 + (p === 'grow' ? Math.ceil(srcSize / 4096) - Math.ceil(dstSize / 4096) : 0));
  },
  title: (_p, p, srcSize, dstSize, want: { exit: number }) => `--size-policy ${p}: source ${srcSize}, target ${dstSize} → exit ${want.exit}`,
});
test(policy, 'strict', 3 * MiB, 2 * MiB, { exit: 6, message: /size mismatch: source is 3145728 bytes, target is 2097152 bytes/ });
test(policy, 'strict', 2 * MiB, 3 * MiB, { exit: 6, message: /size mismatch: source is 2097152 bytes, target is 3145728 bytes/ });
test(policy, 'grow', 3 * MiB + 123, 2 * MiB, { exit: 0 });
test(policy, 'grow', 2 * MiB, 3 * MiB, { exit: 6, message: /grow never shrinks a target/ });
test(policy, 'min', 2 * MiB, 3 * MiB + 5, { exit: 0 });
test(policy, 'min', 3 * MiB, 2 * MiB + 5, { exit: 0 });

// ---- block sizes ----

const blockSize = test.macro({
  async exec(t, bs: number) {
    const { src, dst } = pair(4 * MiB + 1000);
    const offsets = [0, 5000, 70_000, 1_500_000, 1_500_100, 3 * MiB + 17, 4 * MiB + 999];
    touchBytes(dst, offsets);
    const s = await sync(src, dst, { blockSize: bs });
    t.is(sha256(dst), sha256(src));
    const want = new Set(offsets.map((o) => Math.floor(o / bs))).size;
    t.like(s, { blockSize: bs, blocksCompared: Math.ceil((4 * MiB + 1000) / bs), blocksDiffering: want, blocksWritten: want });
  },
  title: (_p, bs) => `block size ${bs}: target identical, blocksDiffering counts ${bs}-byte blocks`,
});
for (const bs of [512, 4096, 65536, MiB]) test(blockSize, bs);

test('more zero runs than the hole list keeps (64): all written as zeros, data identical', async (t) => {
  const { src, dst } = pair(8 * MiB);
  for (let i = 0; i < 100; i++) writeAt(src, i * 80 * 1024, Buffer.alloc(8192));
  const before = statSync(dst).blocks;
  const s = await sync(src, dst);
  t.is(sha256(dst), sha256(src));
  t.like(s, { blocksZero: 200, blocksDiffering: 200, records: 100 });
  const freed = before - statSync(dst).blocks;
  t.true(freed >= (64 * 8192 - EXTENT_SLACK) / 512, `${freed} sectors freed: the first 64 zero runs did not become holes`);
});

// ---- modes ----

test('--dry-run: exit 3 when different, 0 when same; the target is untouched', async (t) => {
  const { src, dst } = pair(4 * MiB);
  touchBlocks(dst, 4096, [3, 4, 700]);
  const before = sha256(dst);
  const r = await blkdelta('sync', '--dry-run', '--json', src, dst);
  t.is(r.exitCode, 3, r.stderr);
  t.like(JSON.parse(r.stdout), { mode: 'dry-run', blocksDiffering: 3, blocksWritten: 0, identical: false, firstDiffs: [3 * 4096, 4 * 4096, 700 * 4096] });
  t.is(sha256(dst), before);
  const same = await blkdelta('sync', '-n', src, fresh('missing.img'));
  t.is(same.exitCode, 5, 'a missing target is refused even in a dry run');
  copyFileSync(src, dst);
  const r2 = await blkdelta('sync', '--dry-run', src, dst);
  t.is(r2.exitCode, 0, r2.stderr);
  t.regex(r2.stdout, /differing {2}0 blocks/);
});

test('--verify re-reads what was written; --json reports the counts', async (t) => {
  const { src, dst } = pair(4 * MiB);
  touchBlocks(dst, 4096, [1, 2, 3, 900, 1023]);
  writeAt(src, 2 * MiB, Buffer.alloc(2 * 65536));
  const r = await blkdelta('sync', '--verify', '--json', '-b', '64K', src, dst);
  t.is(r.exitCode, 0, r.stderr);
  t.is(sha256(dst), sha256(src));
  t.like(JSON.parse(r.stdout), { mode: 'write', blockSize: 65536, verified: true, blocksDiffering: 5, blocksZero: 2, blocksWritten: 5, identical: false, sourceSize: 4 * MiB });
});

test('the human summary names the counts; blkdelta verify lists differences (exit 3), then agrees', async (t) => {
  const { src, dst } = pair(2 * MiB);
  touchBlocks(dst, 4096, [10, 11]);
  const diff = await blkdelta('verify', src, dst);
  t.is(diff.exitCode, 3, diff.stderr);
  t.regex(diff.stdout, /first differing offsets: 40960, 45056\n/);
  t.regex(diff.stdout, /DIFFERENT: 2 of 512 blocks differ/);
  const r = await blkdelta('sync', '--no-progress', src, dst);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /differing {2}2 blocks/);
  t.regex(r.stdout, /written {4}2 blocks/);
  const v = await blkdelta('verify', src, dst);
  t.is(v.exitCode, 0, v.stderr);
  t.regex(v.stdout, /IDENTICAL/);
});

test('--bwlimit caps a local sync too (records go to a local server process); a bad rate writes nothing', async (t) => {
  const { src, dst } = pair(4 * MiB);
  touchBlocks(src, 4096, Array.from({ length: 768 }, (_, i) => i)); // 3 MiB of random blocks differ
  const before = sha256(dst);
  const bad = await blkdelta('sync', src, dst, '--bwlimit', 'fast');
  t.is(bad.exitCode, 2, bad.stderr);
  t.regex(bad.stderr, /--bwlimit "fast"/);
  t.is(sha256(dst), before);
  const t0 = Date.now();
  const r = await blkdelta('sync', src, dst, '--bwlimit', '1M', '--json');
  const secs = (Date.now() - t0) / 1000;
  t.is(r.exitCode, 0, r.stderr);
  t.is(sha256(dst), sha256(src));
  const s = JSON.parse(r.stdout) as SyncSummary;
  t.is(s.blocksWritten, 768);
  // 3 MiB of incompressible records at 1 MiB/s (a 100 KiB burst): at least 2.5 s, however fast the machine
  t.true(secs >= 2.5, `took ${secs} s for ${s.bytesSent} bytes sent at --bwlimit 1M`);
});

test('--patch-out then blkdelta apply gives the same target as a direct sync', async (t) => {
  const { src, dst } = pair(6 * MiB + 300);
  touchBlocks(dst, 4096, [0, 77, 78, 79, 1500]);
  writeAt(src, 3 * MiB, Buffer.alloc(MiB));
  const viaPatch = fresh('via-patch.img');
  copyFileSync(dst, viaPatch);
  const before = sha256(viaPatch);
  const patch = fresh('delta.bdp');
  const p = await blkdelta('sync', '--patch-out', patch, '--json', src, viaPatch);
  t.is(p.exitCode, 0, p.stderr);
  t.is(sha256(viaPatch), before, '--patch-out changed the target');
  t.true(existsSync(patch));
  t.like(JSON.parse(p.stdout), { mode: 'patch', blocksDiffering: 5 + 256, patchBytes: fileSize(patch) });
  const a = await blkdelta('apply', patch, viaPatch);
  t.is(a.exitCode, 0, a.stderr);
  const d = await blkdelta('sync', src, dst);
  t.is(d.exitCode, 0, d.stderr);
  t.is(sha256(viaPatch), sha256(src));
  t.is(sha256(dst), sha256(viaPatch));
});

test('--patch-out refuses an existing file (exit 5, untouched); --force replaces it, a directory never', async (t) => {
  const { src, dst } = pair(2 * MiB);
  touchBlocks(src, 4096, [3, 100]);
  const patch = fresh('old.patch');
  writeFileSync(patch, 'precious');
  const refused = await blkdelta('sync', '--patch-out', patch, src, dst);
  t.is(refused.exitCode, 5, refused.stderr);
  t.regex(refused.stderr, /old\.patch already exists: .*--force/);
  t.is(readFileSync(patch, 'utf8'), 'precious');
  const lone = await blkdelta('sync', '--force', src, dst);
  t.is(lone.exitCode, 2, lone.stderr);
  t.regex(lone.stderr, /--force applies only with --patch-out/);
  const forced = await blkdelta('sync', '--patch-out', patch, '--force', src, dst);
  t.is(forced.exitCode, 0, forced.stderr);
  t.false(existsSync(patch + '.part'));
  const applied = await blkdelta('apply', patch, dst);
  t.is(applied.exitCode, 0, applied.stderr);
  t.is(sha256(dst), sha256(src));
  const dir = fresh('patch-dir');
  mkdirSync(dir);
  const onDir = await blkdelta('sync', '--patch-out', dir, '--force', src, dst);
  t.is(onDir.exitCode, 5, onDir.stderr);
  t.regex(onDir.stderr, /not a regular file/);
  t.true(statSync(dir).isDirectory());
});

test('--verify with more records than the re-read journal holds in memory (4096): spilled, checked, removed', async (t) => {
  const { src, dst } = pair(5 * MiB);
  const blocks = Array.from({ length: 5 * 1024 }, (_, i) => i * 2);
  touchBlocks(dst, 512, blocks);
  const journals = () => readdirSync(tmpdir()).filter((n) => n.startsWith('blkdelta-journal-'));
  const before = new Set(journals());
  const s = await sync(src, dst, { blockSize: 512, verify: true });
  t.like(s, { records: blocks.length, blocksWritten: blocks.length, verified: true });
  t.is(sha256(dst), sha256(src));
  t.deepEqual(journals().filter((n) => !before.has(n)), [], 'the spilled journal was left behind');
});

test('a second sync of identical devices writes nothing', async (t) => {
  const { src, dst } = pair(4 * MiB);
  touchBlocks(dst, 4096, [5, 600]);
  t.is((await sync(src, dst)).blocksWritten, 2);
  const mtime = statSync(dst).mtimeMs;
  const again = await sync(src, dst);
  t.like(again, { blocksDiffering: 0, blocksWritten: 0, bytesWritten: 0, records: 0, identical: true });
  t.is(statSync(dst).mtimeMs, mtime, 'the target was written');
  t.is(sha256(dst), sha256(src));
});

// ---- pull: the target end in this process, the source end a spawned `blkdelta server` ----

test('pull (remote source): write with grow and --verify, then dry-run; summary reports the growth', async (t) => {
  const { src, dst } = pair(5 * MiB);
  writeAt(src, MiB, Buffer.alloc(MiB));
  truncateSync(dst, 3 * MiB);
  touchBlocks(dst, 4096, [0, 600]);
  const remote = { side: 'source' as const, transport: new LocalTransport() };
  const s = await sync(src, dst, { remote, sizePolicy: 'grow', verify: true });
  t.is(sha256(dst), sha256(src));
  t.like(s, { sourceSize: 5 * MiB, targetSize: 3 * MiB, grown: true, verified: true, blocksZero: 256, blocksDiffering: 2 + 256 + 512, blocksWritten: 2 + 256 + 512 });
  const again = await sync(src, dst, { remote, mode: 'dry-run' });
  t.like(again, { identical: true, blocksWritten: 0, targetSize: 5 * MiB, grown: false });
});

test('pull (remote source) with --patch-out: the target is untouched, apply makes it equal', async (t) => {
  const { src, dst } = pair(4 * MiB);
  touchBlocks(dst, 4096, [1, 2, 1000]);
  writeAt(src, MiB, randomBytes(2 * MiB)); // two 1 MiB records: frames that span pipe reads
  const before = sha256(dst);
  const patchOut = fresh('pull.bdp');
  const s = await sync(src, dst, { remote: { side: 'source', transport: new LocalTransport() }, mode: 'patch', patchOut });
  t.like(s, { blocksDiffering: 3 + 512, records: 4, patchBytes: fileSize(patchOut) });
  t.is(sha256(dst), before);
  const a = await blkdelta('apply', patchOut, dst);
  t.is(a.exitCode, 0, a.stderr);
  t.is(sha256(dst), sha256(src));
});
