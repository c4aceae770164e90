// End to end: a patch between two real ext4 images, written with PatchWriter, applied with
// applyPatch (and the CLI) to copies of the target, to a grown file and to a real loop device.
// Every corruption and truncation is refused with PATCH_INVALID and leaves the target unchanged.
import test from 'ava';
import { copyFileSync, existsSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { BlkError, ExitCode, FormatError } from '../src/errors.js';
import { applyPatch } from '../src/engine/apply.js';
import { loadHasher } from '../src/hash.js';
import { Encoding, HEADER_LEN, RECORD_HEADER_LEN, TRAILER_LEN } from '../src/patch/format.js';
import { validatePatch } from '../src/patch/reader.js';
import { buildPatch, fileCopier, makeImagePair, sha256, tempDir, type PatchLayout } from './helpers/patch-fixture.js';

const tmp = tempDir();
let source = '', target = '', patch = '', layout: PatchLayout;

test.before(async () => {
  ({ source, target } = await makeImagePair(tmp.dir));
  patch = join(tmp.dir, 'p.bdp');
  layout = await buildPatch(source, target, patch);
});
test.after.always(() => tmp.cleanup());

const copyOf = fileCopier(tmp.dir);

const first = (enc: number) => layout.records.find((r) => r.encoding === enc)!;

test('the patch holds raw, lz4 and zero records and far less than the image', (t) => {
  for (const e of [Encoding.RAW, Encoding.LZ4, Encoding.ZERO]) t.truthy(first(e), `no record with encoding ${e}`);
  t.true(layout.size < 4 * 1024 * 1024, `patch is ${layout.size} bytes`);
  t.false(existsSync(patch + '.part'));
});

test('apply makes the target equal to the source, and e2fsck finds it clean', async (t) => {
  const dst = copyOf(target);
  t.not(sha256(dst), sha256(source));
  const s = await applyPatch({ patch, target: dst });
  t.is(sha256(dst), sha256(source));
  t.is(s.records, layout.records.length);
  t.false(s.grown);
  t.true(s.zeroBytes > 0 && s.bytesWritten > s.zeroBytes);
  const fsck = await execa('e2fsck', ['-fn', dst], { reject: false });
  t.is(fsck.exitCode, 0, fsck.stdout + fsck.stderr);
});

test('applying the same patch twice leaves the same result', async (t) => {
  const dst = copyOf(target);
  await applyPatch({ patch, target: dst });
  await applyPatch({ patch, target: dst });
  t.is(sha256(dst), sha256(source));
});

test('zero records write real zeros over old data (the target is not assumed sparse)', async (t) => {
  const z = first(Encoding.ZERO);
  const dst = copyOf(target);
  const off = readFileSync(patch).readUInt32LE(z.at + 8);
  t.false(readFileSync(dst).subarray(off, off + 4096).every((x) => x === 0), 'the target had data there');
  await applyPatch({ patch, target: dst });
  t.true(readFileSync(dst).subarray(off, off + 4096).every((x) => x === 0));
});

async function rejected(t: import('ava').ExecutionContext, badPatch: string, field?: string): Promise<void> {
  const dst = copyOf(target);
  const before = sha256(dst);
  const err = await t.throwsAsync(applyPatch({ patch: badPatch, target: dst }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.PATCH_INVALID, err!.message);
  if (field) t.is((err as FormatError).field, field, err!.message);
  t.is(sha256(dst), before, 'the target was changed');
}

const flip = (pos: () => number, bit = 2) => (b: Buffer) => { b[pos()]! ^= 1 << bit; };

const corrupt = test.macro({
  async exec(t, edit: (b: Buffer) => Buffer | void, field: string) {
    await rejected(t, copyOf(patch, edit), field);
  },
  title: (name = '', _e, field) => `a patch with ${name} is refused (${field}), target unchanged`,
});

test('a flipped header bit', corrupt, flip(() => 20), 'header.header_checksum');
test('a flipped record type bit', corrupt, flip(() => first(Encoding.RAW).at, 2), 'record.type');
test('a flipped record offset bit', corrupt, flip(() => first(Encoding.RAW).at + 9, 0), 'record.offset');
test('a flipped record checksum bit', corrupt, flip(() => first(Encoding.RAW).at + 27), 'record.checksum');
test('a zero record turned raw', corrupt, (b) => { b[first(Encoding.ZERO).at + 1] = Encoding.RAW; }, 'record.stored_len');
test('a flipped bit in raw data', corrupt, flip(() => first(Encoding.RAW).at + RECORD_HEADER_LEN + 3000), 'record.checksum');
test('a flipped bit in lz4 data', corrupt, flip(() => { const r = first(Encoding.LZ4); return r.at + RECORD_HEADER_LEN + r.storedLength - 2; }), 'record.checksum');
test('a flipped trailer count bit', corrupt, flip(() => layout.trailerAt + 8, 0), 'trailer.stream_checksum');
test('a flipped trailer checksum bit', corrupt, flip(() => layout.size - 1, 7), 'trailer.stream_checksum');
test('a flipped end marker bit', corrupt, flip(() => layout.trailerAt, 2), 'record.type');
test('garbage after the trailer', corrupt, (b) => Buffer.concat([b, Buffer.from('garbage')]), 'trailer');
test('a second trailer appended', corrupt, (b) => Buffer.concat([b, b.subarray(b.length - TRAILER_LEN)]), 'trailer');
test('two records swapped (each valid alone)', corrupt, (b) => {
  const [r1, r2] = layout.records;
  const end2 = layout.records[2]?.at ?? layout.trailerAt;
  const rec1 = b.subarray(r1!.at, r2!.at), rec2 = b.subarray(r2!.at, end2);
  return Buffer.concat([b.subarray(0, r1!.at), rec2, rec1, b.subarray(end2)]);
}, 'trailer.stream_checksum');

test('truncation at every structure boundary ±1 and at a stride is refused, target unchanged', async (t) => {
  const bounds = [0, HEADER_LEN, ...layout.records.flatMap((r) => [r.at, r.at + RECORD_HEADER_LEN]), layout.trailerAt, layout.trailerAt + 32, layout.size];
  const stride = Math.ceil(layout.size / 97);
  const cuts = new Set<number>();
  for (const b of bounds) for (const d of [-1, 0, 1]) cuts.add(b + d);
  for (let c = 1; c < layout.size; c += stride) cuts.add(c);
  const valid = [...cuts].filter((c) => c >= 0 && c < layout.size).sort((a, b) => a - b);
  t.true(valid.length > 100, `${valid.length} cuts`);
  const dst = copyOf(target);
  const before = sha256(dst);
  const cut = copyOf(patch);
  for (const c of valid) {
    truncateSync(cut, c);
    const err = await applyPatch({ patch: cut, target: dst }).then(() => undefined, (e: unknown) => e);
    if (!(err instanceof FormatError) || err.code !== ExitCode.PATCH_INVALID) {
      t.fail(`cut at ${c}: ${err instanceof Error ? err.message : 'accepted'}`);
      return;
    }
    copyFileSync(patch, cut);
  }
  t.is(sha256(dst), before);
});

test('a target of another size is refused (SIZE_MISMATCH) with nothing written', async (t) => {
  const dst = copyOf(target);
  truncateSync(dst, 4 * 1024 * 1024);
  const before = sha256(dst);
  const err = await t.throwsAsync(applyPatch({ patch, target: dst }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.SIZE_MISMATCH);
  t.regex(err!.message, /is 4194304 bytes, the patch was made for 16777216/);
  t.is(sha256(dst), before);
});

test('a missing target is refused (TARGET_REFUSED)', async (t) => {
  const err = await t.throwsAsync(applyPatch({ patch, target: join(tmp.dir, 'nope.img') }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.TARGET_REFUSED, err!.message);
});

test('a missing patch is an IO error naming it', async (t) => {
  const err = await t.throwsAsync(applyPatch({ patch: join(tmp.dir, 'nope.bdp'), target: copyOf(target) }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.IO);
  t.regex(err!.message, /nope\.bdp.*ENOENT/);
});

test('an aborted signal stops before anything is written (INTERRUPTED)', async (t) => {
  const dst = copyOf(target);
  const before = sha256(dst);
  const ac = new AbortController();
  ac.abort(new BlkError(ExitCode.INTERRUPTED, 'interrupted by SIGINT'));
  const err = await t.throwsAsync(applyPatch({ patch, target: dst, signal: ac.signal }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.INTERRUPTED);
  t.is(sha256(dst), before);
});

test('interrupted between records: INTERRUPTED, says the target is partial; applying again finishes it', async (t) => {
  const dst = copyOf(target);
  // A signal that turns aborted after validation (one check per header, record and trailer), the
  // check before opening the target, and the checks before the first two records.
  let checks = 0;
  const limit = layout.records.length + 2 + 1 + 2;
  const signal = { get aborted() { return ++checks > limit; }, reason: new BlkError(ExitCode.INTERRUPTED, 'interrupted by SIGTERM') } as AbortSignal;
  const err = await t.throwsAsync(applyPatch({ patch, target: dst, signal }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.INTERRUPTED);
  t.regex(err!.message, /interrupted by SIGTERM: after 2 of \d+ records: target .* is partially patched; apply the patch again/);
  t.not(sha256(dst), sha256(source));
  await applyPatch({ patch, target: dst });
  t.is(sha256(dst), sha256(source));
});

test('a patch truncated between the two passes: PATCH_INVALID, and the error says the target is partial', async (t) => {
  const dst = copyOf(target);
  const p = copyOf(patch);
  // The signal is checked once per validated item, once before opening, then before each record:
  // before the second record it truncates the patch (as a concurrent writer could), then says "go on";
  // the reader notices when its read-ahead buffer runs dry.
  let checks = 0;
  const cutAt = layout.records.length + 2 + 1 + 2;
  const signal = { get aborted() { if (++checks === cutAt) truncateSync(p, layout.trailerAt - 1); return false; } } as AbortSignal;
  const err = await t.throwsAsync(applyPatch({ patch: p, target: dst, signal }), { instanceOf: FormatError });
  t.is(err!.code, ExitCode.PATCH_INVALID);
  t.regex(err!.message, /^invalid record.* truncated: .* may be partially patched \(\d+ of \d+ records\): apply the patch again/);
  await applyPatch({ patch, target: dst });
  t.is(sha256(dst), sha256(source));
});

test('a file target grows to result_size; a second apply is accepted', async (t) => {
  const small = copyOf(target);
  truncateSync(small, 12 * 1024 * 1024);
  const grownPatch = join(tmp.dir, 'grow.bdp');
  const l = await buildPatch(source, small, grownPatch, { compress: false });
  t.false(l.records.some((r) => r.encoding === Encoding.LZ4));
  const v = await validatePatch(grownPatch, await loadHasher());
  t.is(v.header.targetSize, 12 * 1024 * 1024);
  t.is(v.header.resultSize, 16 * 1024 * 1024);
  const s = await applyPatch({ patch: grownPatch, target: small });
  t.true(s.grown);
  t.is(sha256(small), sha256(source));
  t.false((await applyPatch({ patch: grownPatch, target: small })).grown);
  t.is(sha256(small), sha256(source));
});

test('a loop device target is patched; a block device is never grown', async (t) => {
  const img = copyOf(target);
  const lo = await execa('losetup', ['-f', '--show', img], { reject: false });
  if (lo.exitCode !== 0) { t.fail(`losetup failed (run as root with util-linux and the loop module): ${lo.stderr}`); return; }
  const dev = lo.stdout.trim();
  try {
    const s = await applyPatch({ patch, target: dev });
    t.is(s.targetKind, 'block');
    t.is(sha256(dev), sha256(source));
    const growPatch = join(tmp.dir, 'grow-block.bdp');
    const bigger = copyOf(source);
    truncateSync(bigger, 17 * 1024 * 1024);
    await buildPatch(bigger, img, growPatch);
    const err = await t.throwsAsync(applyPatch({ patch: growPatch, target: dev }), { instanceOf: BlkError });
    t.is(err!.code, ExitCode.SIZE_MISMATCH);
    t.regex(err!.message, /cannot grow/);
  } finally {
    await execa('losetup', ['-d', dev], { reject: false });
  }
});

test('blkdelta apply: JSON summary and exit 0; a corrupt patch exits 7 naming the field', async (t) => {
  const dst = copyOf(target);
  const ok = await execa('node', ['bin/blkdelta', 'apply', patch, dst, '--json'], { reject: false });
  t.is(ok.exitCode, 0, ok.stderr);
  const s = JSON.parse(ok.stdout);
  t.is(s.records, layout.records.length);
  t.is(sha256(dst), sha256(source));
  const bad = copyOf(patch, flip(() => first(Encoding.RAW).at + RECORD_HEADER_LEN + 10));
  const ko = await execa('node', ['bin/blkdelta', 'apply', bad, copyOf(target)], { reject: false });
  t.is(ko.exitCode, ExitCode.PATCH_INVALID);
  t.regex(ko.stderr, /invalid record\.checksum at byte \d+/);
  t.is(ko.stdout, '');
});
