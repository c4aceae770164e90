// PatchWriter: the final name appears only after a complete, durable write; abort and errors leave
// nothing under it. The write error is a real ENOSPC on a tiny tmpfs mounted for the test (root).
import test from 'ava';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { BlkError, ExitCode, FormatError } from '../src/errors.js';
import { loadHasher } from '../src/hash.js';
import { makeRecord, type PatchHeader } from '../src/patch/format.js';
import { validatePatch } from '../src/patch/reader.js';
import { PatchWriter } from '../src/patch/writer.js';
import { tempDir } from './helpers/patch-fixture.js';

const hasher = await loadHasher();
const HDR: PatchHeader = { blockSize: 4096, targetSize: 1 << 24, resultSize: 1 << 24, maxRecordLen: 65536, sourceFingerprint: Buffer.alloc(16, 9) };
const tmp = tempDir('blkdelta-writer-');
test.after.always(() => tmp.cleanup());

function addRandom(w: PatchWriter, offset: number, len = 65536): void {
  const r = makeRecord(offset, randomBytes(len), true, hasher);
  w.addRecord(r.header, r.payload);
}

test('finish renames .part to the final name; the file validates and its size is reported', async (t) => {
  const p = join(tmp.dir, 'ok.bdp');
  const w = await PatchWriter.create(p, HDR, hasher);
  t.true(existsSync(p + '.part'));
  t.false(existsSync(p));
  for (let i = 0; i < 5; i++) addRandom(w, i * 65536);
  const r = makeRecord(1 << 20, Buffer.alloc(65536), true, hasher);
  w.addRecord(r.header, r.payload);
  await w.yieldIfDue();
  const done = await w.finish();
  t.false(existsSync(p + '.part'));
  t.is(done.records, 6);
  t.is(done.bytes, statSync(p).size);
  const v = await validatePatch(p, hasher);
  t.is(v.trailer.recordCount, 6);
  t.is(v.trailer.dataBytes, 6 * 65536);
  t.is(v.trailer.storedBytes, 5 * 65536, "random data is stored raw; the zero record stores nothing");
  t.throws(() => addRandom(w, 0), { message: /used after finish/ });
});

test('abort removes .part and leaves nothing under the final name; twice is harmless', async (t) => {
  const p = join(tmp.dir, 'aborted.bdp');
  const w = await PatchWriter.create(p, HDR, hasher);
  addRandom(w, 0);
  w.abort();
  w.abort();
  t.false(existsSync(p + '.part'));
  t.false(existsSync(p));
});

test('an existing patch is not overwritten unless asked', async (t) => {
  const p = join(tmp.dir, 'exists.bdp');
  writeFileSync(p, 'precious');
  const err = await t.throwsAsync(PatchWriter.create(p, HDR, hasher), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.TARGET_REFUSED);
  t.is(readFileSync(p, 'utf8'), 'precious');
  const w = await PatchWriter.create(p, HDR, hasher, { overwrite: true });
  await w.finish();
  t.is((await validatePatch(p, hasher)).trailer.recordCount, 0);
});

test('a stale .part is refused (IO, named) and kept', async (t) => {
  const p = join(tmp.dir, 'stale.bdp');
  writeFileSync(p + '.part', 'from a crashed run');
  const err = await t.throwsAsync(PatchWriter.create(p, HDR, hasher), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.IO);
  t.regex(err!.message, /stale\.bdp\.part: it exists/);
  t.is(readFileSync(p + '.part', 'utf8'), 'from a crashed run');
});

test('a bad header or record is refused before anything is written', async (t) => {
  const p = join(tmp.dir, 'bad.bdp');
  await t.throwsAsync(PatchWriter.create(p, { ...HDR, blockSize: 1000 }, hasher), { instanceOf: FormatError, message: /header\.block_size/ });
  t.false(existsSync(p + '.part'));
  const w = await PatchWriter.create(p, HDR, hasher);
  const past = makeRecord(1 << 24, randomBytes(4096), false, hasher);
  t.throws(() => w.addRecord(past.header, past.payload), { instanceOf: FormatError, message: /record\.offset/ });
  const ok = makeRecord(0, randomBytes(4096), false, hasher);
  t.throws(() => w.addRecord(ok.header, ok.payload.subarray(1)), { message: /payload of 4095 bytes/ });
  const size = statSync(p + '.part').size;
  t.is(size, 64);
  w.abort();
});

test('after ENOSPC the writer refuses further use, and abort leaves no file (real tmpfs)', async (t) => {
  const mnt = join(tmp.dir, 'tiny');
  mkdirSync(mnt);
  const m = await execa('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt], { reject: false });
  if (m.exitCode !== 0) { t.fail(`mount -t tmpfs failed (the test needs root): ${m.stderr}`); return; }
  try {
    const p = join(mnt, 'full.bdp');
    const w = await PatchWriter.create(p, HDR, hasher);
    const err = t.throws(() => { for (let i = 0; i < 64; i++) addRandom(w, i * 65536); }, { instanceOf: BlkError });
    t.is(err!.code, ExitCode.IO);
    t.regex(err!.message, /ENOSPC/);
    t.throws(() => addRandom(w, 0), { message: /unusable after an earlier write error/ });
    await t.throwsAsync(w.finish(), { message: /unusable/ });
    w.abort();
    t.false(existsSync(p + '.part'));
    t.false(existsSync(p));
  } finally {
    await execa('umount', [mnt], { reject: false });
  }
});

test('.part and the final patch are created 0600 even under umask 0 (they hold raw disk blocks)', async (t) => {
  const p = join(tmp.dir, 'mode.bdp');
  const old = process.umask(0);
  try {
    const w = await PatchWriter.create(p, HDR, hasher);
    t.is(statSync(p + '.part').mode & 0o777, 0o600);
    addRandom(w, 0);
    await w.finish();
    t.is(statSync(p).mode & 0o777, 0o600);
  } finally {
    process.umask(old);
  }
});

test('version 2: a record without its base hashes, a region out of order, or a finish without fingerprints is refused', async (t) => {
  const V2: PatchHeader = { ...HDR, maxRecordLen: 65536, state: { seed: 5n, regionSize: 65536, compareSize: 3 * 65536 } };
  const w = await PatchWriter.create(join(tmp.dir, 'v2.bdp'), V2, hasher);
  try {
    const r = makeRecord(0, randomBytes(8192), false, hasher);
    t.throws(() => w.addRecord(r.header, r.payload), { message: /needs the base hashes/ });
    w.addRecord(r.header, r.payload, Buffer.alloc(16));
    t.throws(() => w.addRegion(65536, 65536, Buffer.alloc(128)), { instanceOf: FormatError, message: /region\.offset/ });
    w.addRegion(0, 65536, Buffer.alloc(128));
    await t.throwsAsync(w.finish(), { message: /needs the base and result fingerprints/ });
    t.false(existsSync(join(tmp.dir, 'v2.bdp')) || existsSync(join(tmp.dir, 'v2.bdp.part')));
  } finally {
    w.abort();
  }
});
