// Patch format v2 end to end: patches made by the real engine (`blkdelta sync --patch-out`, also to
// stdout and in a pull) between real ext4 images, applied by the CLI and applyPatches to copies.
// Every wrong state is refused with exit 7 and the target's sha256 unchanged; what is harmless
// (re-apply, chain re-applied, an apply that stopped half-way) exits 0. Every field of the new
// header, items and trailer is corrupted (checksums recomputed so the field rule itself fires).
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { BlkError, ExitCode, FormatError } from '../src/errors.js';
import { applyPatch, applyPatches } from '../src/engine/apply.js';
import { runSync } from '../src/engine/sync.js';
import { loadHasher } from '../src/hash.js';
import { HEADER_LEN_V2, RECORD_HEADER_LEN, TRAILER_LEN_V2 } from '../src/patch/format.js';
import { BASE_HEAD_LEN, REGION_LEN } from '../src/patch/state.js';
import { spoolReserve } from '../src/patch/spool.js';
import { LocalTransport } from '../src/transport/local.js';
import { fileCopier, makeImagePair, sha256, tempDir } from './helpers/patch-fixture.js';
import { Resources, blkdelta, readAt, writeAt } from './helpers/engine-fixture.js';

const MiB = 1024 * 1024, BS = 4096;
const hasher = await loadHasher();
const tmp = tempDir('blkdelta-v2-');
const BIN = 'bin/blkdelta';
// A0 --P1--> A1 --P2--> A2
let a0 = '', a1 = '', a2 = '', p1 = '', p2 = '';
let spools = 0;

test.before(async () => {
  ({ source: a1, target: a0 } = await makeImagePair(tmp.dir));
  a2 = copyOf(a1);
  writeAt(a2, 3 * MiB + 8192, randomBytes(3 * BS));
  writeAt(a2, 9 * MiB, randomBytes(100));
  p1 = join(tmp.dir, 'p1.bdp');
  p2 = join(tmp.dir, 'p2.bdp');
  for (const [p, src, dst] of [[p1, a1, a0], [p2, a2, a1]] as const) {
    const r = await blkdelta('sync', '-q', '--patch-out', p, src, copyOf(dst));
    if (r.exitCode !== 0) throw new Error(`sync --patch-out failed: ${r.stderr}`);
  }
});
test.after.always(() => tmp.cleanup());

const copyOf = fileCopier(tmp.dir);

/** Offsets of the blocks where two images differ (or are equal). */
function blocks(x: string, y: string, differing: boolean): number[] {
  const a = readFileSync(x), b = readFileSync(y), out: number[] = [];
  for (let off = 0; off < a.length; off += BS) if (a.subarray(off, off + BS).equals(b.subarray(off, off + BS)) !== differing) out.push(off);
  return out;
}

/** exit 7, the words of the refusal, the first offset that differs, and the target unchanged. */
async function refusedByCli(t: ExecutionContext, args: string[], dst: string, offset?: number): Promise<void> {
  const before = sha256(dst), mtime = statSync(dst).mtimeMs;
  const r = await blkdelta('apply', ...args, dst);
  t.is(r.exitCode, ExitCode.PATCH_INVALID, r.stderr);
  t.regex(r.stderr, /the target is not in the state this patch was made from: first difference at byte \d+/);
  if (offset !== undefined) t.true(r.stderr.includes(`first difference at byte ${offset} `), r.stderr);
  t.is(r.stdout, '');
  t.is(sha256(dst), before);
  t.is(statSync(dst).mtimeMs, mtime, 'the target was written to');
}

test('sync --patch-out writes a version 2 patch, mode 0600; apply makes the target equal to the source (state base)', async (t) => {
  const b = readFileSync(p1);
  t.is(b.readUInt16LE(8), 2);
  t.is(statSync(p1).mode & 0o777, 0o600);
  const dst = copyOf(a0);
  const r = await blkdelta('apply', '--json', p1, dst);
  t.is(r.exitCode, 0, r.stderr);
  t.like(JSON.parse(r.stdout), { version: 2, state: 'base' });
  t.is(sha256(dst), sha256(a1));
});

test('re-applying a patch to a target that holds its result writes nothing and exits 0', async (t) => {
  const dst = copyOf(a1);
  const before = sha256(dst), mtime = statSync(dst).mtimeMs;
  const r = await blkdelta('apply', '--json', p1, dst);
  t.is(r.exitCode, 0, r.stderr);
  t.like(JSON.parse(r.stdout), { state: 'applied', records: 0, bytesWritten: 0 });
  t.is(sha256(dst), before);
  t.is(statSync(dst).mtimeMs, mtime);
});

test('a patch applied to the wrong base (the state before another patch) is refused, exit 7', async (t) => {
  await refusedByCli(t, [p2], copyOf(a0));
});

test('an unrelated target of the same size is refused at byte 0, exit 7', async (t) => {
  const dst = join(tmp.dir, 'unrelated.img');
  writeFileSync(dst, randomBytes(statSync(a0).size));
  await refusedByCli(t, [p1], dst, 0);
});

test('a target that differs only in a block the patch does not touch is refused, naming its region', async (t) => {
  const untouched = blocks(a0, a1, false).at(-1)!;
  const dst = copyOf(a0);
  writeAt(dst, untouched + 100, Buffer.from([readAt(dst, untouched + 100, 1)[0]! ^ 0xff]));
  await refusedByCli(t, [p1], dst, Math.floor(untouched / MiB) * MiB);
});

test('a target that differs only in a block the patch writes is refused, naming that block', async (t) => {
  const touched = blocks(a0, a1, true)[0]!;
  const dst = copyOf(a0);
  writeAt(dst, touched, randomBytes(BS));
  await refusedByCli(t, [p1], dst, touched);
});

test('an apply that stopped half-way (some blocks new, some old) is finished: exit 0, state partial', async (t) => {
  const differing = blocks(a0, a1, true);
  const dst = copyOf(a0);
  for (const off of differing.slice(0, Math.floor(differing.length / 2))) writeAt(dst, off, readAt(a1, off, BS));
  const s = await applyPatch({ patch: p1, target: dst });
  t.is(s.state, 'partial');
  t.is(sha256(dst), sha256(a1));
});

test('a chain P1 P2 applies in order and gives the last state', async (t) => {
  const dst = copyOf(a0);
  const r = await blkdelta('apply', p1, p2, dst);
  t.is(r.exitCode, 0, r.stderr);
  t.is(sha256(dst), sha256(a2));
  t.regex(r.stdout, /applied .*p1\.bdp[^\n]*\napplied .*p2\.bdp/);
});

test('a chain out of order (P2 P1) is refused before its first write, exit 7', async (t) => {
  await refusedByCli(t, [p2, p1], copyOf(a0));
});

test('a chain re-applied to a target holding its last result writes nothing and exits 0', async (t) => {
  const dst = copyOf(a2);
  const before = sha256(dst), mtime = statSync(dst).mtimeMs;
  const c = await applyPatches({ patches: [p1, p2], target: dst });
  t.deepEqual(c.links.map((l) => l.state), ['applied', 'applied']);
  t.is(sha256(dst), before);
  t.is(statSync(dst).mtimeMs, mtime);
});

test('a chain whose second link does not follow the first: the first stays applied, the message says so', async (t) => {
  const dst = copyOf(a0);
  const err = await t.throwsAsync(applyPatches({ patches: [p1, p1, p2, p1], target: dst }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.PATCH_INVALID);
  t.regex(err!.message, /p1\.bdp: the target is not in the state .*; the 3 patch\(es\) before it were applied: target .* holds the result of .*p2\.bdp/);
  t.is(sha256(dst), sha256(a2));
});

// stdin and stdout
function spoolDir(): string {
  const d = join(tmp.dir, `spool-${spools++}`);
  mkdirSync(d);
  return d;
}

test('apply - reads the patch from stdin; the spool directory is removed', async (t) => {
  const dst = copyOf(a0), dir = spoolDir();
  const r = await execa(process.execPath, [BIN, 'apply', '-', dst], { inputFile: p1, env: { TMPDIR: dir }, reject: false });
  t.is(r.exitCode, 0, r.stderr);
  t.is(sha256(dst), sha256(a1));
  t.deepEqual(readdirSync(dir), []);
});

test('apply - stops before the spool leaves TMPDIR without its reserve: exit 8, nothing written, spool removed', async (t) => {
  // a 16 MiB tmpfs with 15.5 MiB taken: 0.5 MiB free, under its reserve (5%: 0.8 MiB)
  const res = new Resources();
  const dir = join(tmp.dir, 'small-tmp');
  try {
    await res.mountTmpfs(dir, '16m');
    writeFileSync(join(dir, 'filler'), Buffer.alloc(15.5 * MiB, 1));
    const dst = copyOf(a0), before = sha256(dst);
    const r = await execa(process.execPath, [BIN, 'apply', '-', dst], { inputFile: p1, env: { TMPDIR: dir }, reject: false });
    t.is(r.exitCode, ExitCode.IO, r.stderr);
    t.regex(r.stderr, new RegExp(`spooling the patch from stdin stopped at byte \\d+: only \\d+ bytes are left free in ${dir}, and the spool leaves at least \\d+ free \\(set TMPDIR`));
    t.is(sha256(dst), before);
    t.deepEqual(readdirSync(dir), ['filler']);
  } finally {
    await res.cleanup();
  }
});

test('spoolReserve: 5% of the file system, at most 1 GiB', (t) => {
  t.is(spoolReserve(16 * MiB), Math.floor(16 * MiB * 0.05));
  t.is(spoolReserve(1024 * 1024 * MiB), 1024 * MiB);
  t.is(spoolReserve(0), 0);
});

const cutStdin = test.macro({
  async exec(t, cut: (b: Buffer) => Buffer, words: RegExp) {
    const dst = copyOf(a0), dir = spoolDir(), before = sha256(dst);
    const r = await execa(process.execPath, [BIN, 'apply', '-', dst], { input: cut(readFileSync(p1)), env: { TMPDIR: dir }, reject: false });
    t.is(r.exitCode, ExitCode.PATCH_INVALID, r.stderr);
    t.regex(r.stderr, words);
    t.is(sha256(dst), before);
    t.deepEqual(readdirSync(dir), [], 'the spool was left behind');
  },
  title: (name = '') => `apply - refuses stdin ${name} (exit 7, nothing written, spool removed)`,
});
test('cut mid-stream', cutStdin, (b) => b.subarray(0, Math.floor(b.length / 2)), /invalid .* truncated/);
test('cut 1 byte before the end', cutStdin, (b) => b.subarray(0, b.length - 1), /invalid trailer at byte \d+: truncated/);
test('cut inside the header', cutStdin, (b) => b.subarray(0, 70), /invalid header at byte 0: truncated/);
test('empty', cutStdin, () => Buffer.alloc(0), /invalid header at byte 0: truncated/);
test('with bytes past the trailer', cutStdin, (b) => Buffer.concat([b, Buffer.from('x')]), /invalid trailer at byte \d+: data follows the trailer/);
test('that is not a patch', cutStdin, () => Buffer.from('#!/bin/sh\necho this is not a patch\n'.repeat(10)), /invalid header.magic at byte 0: not a blkdelta patch/);

test('apply - stops at the bound its header allows (a tiny patch followed by 2 MiB)', async (t) => {
  const small = join(tmp.dir, 'small-a.img'), smallB = join(tmp.dir, 'small-b.img'), sp = join(tmp.dir, 'small.bdp');
  writeFileSync(small, randomBytes(8192)); writeFileSync(smallB, randomBytes(8192));
  t.is((await blkdelta('sync', '-q', '--patch-out', sp, small, smallB)).exitCode, 0);
  const dir = spoolDir(), before = sha256(smallB);
  const r = await execa(process.execPath, [BIN, 'apply', '-', smallB], { input: Buffer.concat([readFileSync(sp), Buffer.alloc(2 * MiB, 1)]), env: { TMPDIR: dir }, reject: false });
  t.is(r.exitCode, ExitCode.PATCH_INVALID, r.stderr);
  t.regex(r.stderr, /invalid stdin at byte \d+: the stream goes on past the \d+ bytes its header allows/);
  t.is(sha256(smallB), before);
  t.deepEqual(readdirSync(dir), []);
});

test('SIGTERM while stdin is being spooled: exit 130, nothing written, the spool removed', async (t) => {
  const dst = copyOf(a0), dir = spoolDir(), before = sha256(dst);
  const child = execa(process.execPath, [BIN, 'apply', '-', dst], { env: { TMPDIR: dir }, reject: false, stdin: 'pipe' });
  child.stdin!.write(readFileSync(p1).subarray(0, 100_000));
  const deadline = Date.now() + 60_000; // the spool file appears once the CLI is up and reading
  while (Date.now() < deadline && !readdirSync(dir).some((d) => readdirSync(join(dir, d)).length > 0)) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  const r = await child;
  t.is(r.exitCode, ExitCode.INTERRUPTED, r.stderr);
  t.regex(r.stderr, /interrupted by SIGTERM: while reading the patch from stdin; nothing was written/);
  t.is(sha256(dst), before);
  t.deepEqual(readdirSync(dir), []);
});

test('sync --patch-out - writes the patch to stdout and the summary to stderr; the patch applies', async (t) => {
  const out = join(tmp.dir, 'stdout.bdp');
  const r = await execa(process.execPath, [BIN, 'sync', '--patch-out', '-', a1, copyOf(a0)], { stdout: { file: out }, reject: false });
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stderr, /patch from .* -> /);
  t.is(readFileSync(out).readUInt16LE(8), 2);
  const dst = copyOf(a0);
  t.is((await applyPatch({ patch: out, target: dst })).state, 'base');
  t.is(sha256(dst), sha256(a1));
});

test('sync --patch-out - | apply - DST: a pipe between two processes', async (t) => {
  const dst = copyOf(a0);
  const r = await execa(process.execPath, [BIN, 'sync', '-q', '--patch-out', '-', a1, copyOf(a0)], { reject: false })
    .pipe(process.execPath, [BIN, 'apply', '-', dst], { reject: false });
  t.is(r.exitCode, 0, r.stderr);
  t.is(sha256(dst), sha256(a1));
});

test('sync --patch-out - into a reader that goes away: exit 8 naming stdout, no hang', async (t) => {
  const src = join(tmp.dir, 'epipe-src.img'), dst = join(tmp.dir, 'epipe-dst.img');
  writeFileSync(src, randomBytes(8 * MiB)); writeFileSync(dst, randomBytes(8 * MiB)); // an 8 MiB patch: more than a pipe holds
  const r = await execa('bash', ['-c', `"${process.execPath}" ${BIN} sync --patch-out - "${src}" "${dst}" | head -c 100 >/dev/null; exit \${PIPESTATUS[0]}`], { reject: false });
  t.is(r.exitCode, ExitCode.IO, r.stderr);
  t.regex(r.stderr, /cannot write patch on stdout at byte \d+: .*EPIPE/);
});

test('sync --patch-out - with --json is refused (exit 2): stdout carries the patch', async (t) => {
  const r = await blkdelta('sync', '--json', '--patch-out', '-', a1, copyOf(a0));
  t.is(r.exitCode, ExitCode.USAGE);
  t.regex(r.stderr, /--json cannot be used with --patch-out -/);
  t.like(JSON.parse(r.stdout), { version: 1, error: { exitCode: ExitCode.USAGE } }); // no patch byte: only --json's error object
});

test('a pull (remote source) writes a version 2 patch whose state check passes, and re-apply is a no-op', async (t) => {
  const patch = join(tmp.dir, 'pull.bdp');
  await runSync({ source: a1, target: copyOf(a0), remote: { side: 'source', transport: new LocalTransport() }, mode: 'patch', patchOut: patch, blockSize: BS, sizePolicy: 'strict' });
  t.is(statSync(patch).mode & 0o777, 0o600);
  const dst = copyOf(a0);
  t.is((await applyPatch({ patch, target: dst })).state, 'base');
  t.is(sha256(dst), sha256(a1));
  t.is((await applyPatch({ patch, target: dst })).state, 'applied');
  await t.throwsAsync(applyPatch({ patch, target: copyOf(a2) }), { message: /not in the state this patch was made from/ });
});

// Corruption of every new field: the field is changed and both checksums recomputed, so that the
// field's own rule (or the state check) must catch it.
interface Layout { records: Array<{ at: number; baseAt: number; end: number }>; regions: number[]; trailerAt: number }
function layoutOf(b: Buffer): Layout {
  const l: Layout = { records: [], regions: [], trailerAt: 0 };
  for (let at = HEADER_LEN_V2; ;) {
    const type = b[at];
    if (type === 0x02) { l.trailerAt = at; return l; }
    if (type === 0x04) { l.regions.push(at); at += REGION_LEN; continue; }
    const baseAt = at + RECORD_HEADER_LEN + b.readUInt32LE(at + 16);
    const end = baseAt + BASE_HEAD_LEN + 8 * b.readUInt32LE(baseAt + 4);
    l.records.push({ at, baseAt, end });
    at = end;
  }
}
function resum(b: Buffer): Buffer {
  b.writeBigUInt64LE(hasher.h64(b.subarray(0, 72), 0n), 72);
  b.writeBigUInt64LE(hasher.h64(b.subarray(0, b.length - 8), 0n), b.length - 8);
  return b;
}

const corrupt = test.macro({
  async exec(t, edit: (b: Buffer, l: Layout) => unknown, field: string | RegExp, fix = true) {
    const dst = copyOf(a0), before = sha256(dst);
    const bad = copyOf(p1, (b) => { const r = edit(b, layoutOf(b)); const out = Buffer.isBuffer(r) ? r : b; return fix ? resum(out) : out; });
    const err = await applyPatch({ patch: bad, target: dst }).then(() => undefined, (e: unknown) => e);
    t.true(err instanceof BlkError, String(err));
    t.is((err as BlkError).code, ExitCode.PATCH_INVALID, (err as Error).message);
    if (typeof field === 'string') { t.true(err instanceof FormatError, (err as Error).message); t.is((err as FormatError).field, field, (err as Error).message); }
    else t.regex((err as Error).message, field);
    t.is(sha256(dst), before);
  },
  title: (name = '', _e, field) => `v2 corruption: ${name} is refused (${field}), target unchanged`,
});
const STATE = /the target is not in the state this patch was made from/;
test('version 3', corrupt, (b) => b.writeUInt16LE(3, 8), 'header.version');
test('flags set', corrupt, (b) => b.writeUInt16LE(1, 10), 'header.flags');
test('region_size 0', corrupt, (b) => b.writeUInt32LE(0, 36), 'header.region_size');
test('region_size not a multiple of block_size', corrupt, (b) => b.writeUInt32LE(MiB + 512, 36), 'header.region_size');
test('region_size 32 MiB', corrupt, (b) => b.writeUInt32LE(32 * MiB, 36), 'header.region_size');
test('region_size 2 MiB (regions no longer match)', corrupt, (b) => b.writeUInt32LE(2 * MiB, 36), 'region.length');
test('seed changed', corrupt, (b) => { b[60]! ^= 1; }, STATE);
test('compare_size past result_size', corrupt, (b) => b.writeBigUInt64LE(b.readBigUInt64LE(24) + 1n, 64), 'header.compare_size');
test('compare_size 2^53', corrupt, (b) => b.writeBigUInt64LE(2n ** 53n, 64), 'header.compare_size');
test('compare_size one region short', corrupt, (b) => b.writeBigUInt64LE(b.readBigUInt64LE(64) - BigInt(MiB), 64), /invalid (region|record)\.offset/);
test('header_checksum flipped', corrupt, (b) => { b[75]! ^= 1; }, 'header.header_checksum', false);
test('base type', corrupt, (b, l) => { b[l.records[0]!.baseAt] = 0x05; }, 'base.type');
test('base reserved', corrupt, (b, l) => { b[l.records[0]!.baseAt + 2] = 1; }, 'base.reserved');
test('base count + 1', corrupt, (b, l) => b.writeUInt32LE(b.readUInt32LE(l.records[0]!.baseAt + 4) + 1, l.records[0]!.baseAt + 4), 'base.count');
test('base offset', corrupt, (b, l) => b.writeBigUInt64LE(b.readBigUInt64LE(l.records[0]!.baseAt + 8) + 4096n, l.records[0]!.baseAt + 8), 'base.offset');
test('a base hash', corrupt, (b, l) => { b[l.records[0]!.baseAt + BASE_HEAD_LEN]! ^= 1; }, STATE);
test('a base item removed', corrupt, (b, l) => Buffer.concat([b.subarray(0, l.records[0]!.baseAt), b.subarray(l.records[0]!.end)]), 'base.type');
test('a base item without its record', corrupt, (b, l) => Buffer.concat([b.subarray(0, l.records[0]!.at), b.subarray(l.records[0]!.baseAt)]), 'base.type');
test('region type', corrupt, (b, l) => { b[l.regions[0]!] = 0x05; }, 'record.type');
test('region reserved byte 1', corrupt, (b, l) => { b[l.regions[0]! + 1] = 1; }, 'region.reserved');
test('region reserved byte 31', corrupt, (b, l) => { b[l.regions[0]! + 31] = 1; }, 'region.reserved');
test('region offset', corrupt, (b, l) => b.writeBigUInt64LE(4096n, l.regions[0]! + 8), 'region.offset');
test('region length', corrupt, (b, l) => b.writeUInt32LE(MiB - 4096, l.regions[0]! + 4), 'region.length');
test('region base_digest', corrupt, (b, l) => { b[l.regions[3]! + 16]! ^= 1; }, /first difference at byte 3145728 /);
test('a region removed', corrupt, (b, l) => Buffer.concat([b.subarray(0, l.regions[2]!), b.subarray(l.regions[2]! + REGION_LEN)]), 'region.offset');
test('a region duplicated', corrupt, (b, l) => Buffer.concat([b.subarray(0, l.regions[2]! + REGION_LEN), b.subarray(l.regions[2]!)]), 'region.offset');
test('trailer region_count', corrupt, (b, l) => b.writeBigUInt64LE(b.readBigUInt64LE(l.trailerAt + 32) + 1n, l.trailerAt + 32), 'trailer.region_count');
test('trailer region_count 2^64-1', corrupt, (b, l) => b.writeBigUInt64LE(2n ** 64n - 1n, l.trailerAt + 32), 'trailer.region_count');
test('trailer base_fingerprint', corrupt, (b, l) => { b[l.trailerAt + 40]! ^= 1; }, 'trailer.base_fingerprint');
test('trailer result_fingerprint', corrupt, (b, l) => { b[l.trailerAt + 48]! ^= 1; }, 'trailer.result_fingerprint');
test('trailer reserved', corrupt, (b, l) => { b[l.trailerAt + 5] = 1; }, 'trailer.reserved');
test('trailer stream_checksum', corrupt, (b) => { b[b.length - 1]! ^= 1; }, 'trailer.stream_checksum', false);
test('trailer cut to the version 1 length', corrupt, (b) => b.subarray(0, b.length - (TRAILER_LEN_V2 - 40)), 'trailer', false);

test('interrupted between regions: INTERRUPTED, the target partly patched; applying again finds it partial and finishes it', async (t) => {
  const l = layoutOf(readFileSync(p1));
  const regionsWritten = new Set(l.records.map((r) => Math.floor(readFileSync(p1).readUInt32LE(r.at + 8) / MiB))).size;
  t.true(regionsWritten >= 2, `${regionsWritten} regions with records`);
  // aborted() is asked once per validated item, once before opening the target, once per region of
  // the state check, then once per region the writing enters: it turns true entering the second one
  const limit = (1 + l.records.length + l.regions.length + 1) + 1 + l.regions.length + 1;
  let checks = 0;
  const signal = { get aborted() { return ++checks > limit; }, reason: new BlkError(ExitCode.INTERRUPTED, 'interrupted by SIGINT') } as AbortSignal;
  const dst = copyOf(a0);
  const err = await t.throwsAsync(applyPatch({ patch: p1, target: dst, signal }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.INTERRUPTED);
  t.regex(err!.message, /interrupted by SIGINT: after \d+ of \d+ records: target .* is partially patched; apply the patch again to finish/);
  t.not(sha256(dst), sha256(a0));
  t.not(sha256(dst), sha256(a1));
  const s = await applyPatch({ patch: p1, target: dst });
  t.is(s.state, 'partial');
  t.is(sha256(dst), sha256(a1));
});

test('a loop device target: checked, patched, left alone on re-apply; a chain stops at the link that does not follow', async (t) => {
  const res = new Resources();
  try {
    const dev = await res.attach(copyOf(a0));
    const s = await applyPatch({ patch: p1, target: dev });
    t.like(s, { targetKind: 'block', state: 'base' });
    t.is(sha256(dev), sha256(a1));
    t.is((await applyPatch({ patch: p1, target: dev })).state, 'applied');
    await t.throwsAsync(applyPatch({ patch: p2, target: copyOf(a0) }), { message: /not in the state this patch was made from/ });
    // the device holds A1: P2 follows and is applied, then P1 does not follow P2 and is refused
    const err = await t.throwsAsync(applyPatches({ patches: [p2, p1], target: dev }), { instanceOf: BlkError });
    t.is(err!.code, ExitCode.PATCH_INVALID, err!.message);
    t.regex(err!.message, /p1\.bdp: the target is not in the state .*; the 1 patch\(es\) before it were applied: target .* holds the result of .*p2\.bdp/);
    t.is(sha256(dev), sha256(a2));
  } finally {
    await res.cleanup();
  }
});
