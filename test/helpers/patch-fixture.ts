// Real images and real patches for the apply tests: two ext4 images made by mkfs.ext4 -d from two
// versions of a directory tree (random files, text, a deleted file, a file that grows), and a patch
// between them written with PatchWriter by a plain block-by-block comparison (independent of the
// sync engine). The patch's record positions are returned so tests can corrupt each structure.
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { loadHasher } from '../../src/hash.js';
import { HEADER_LEN, RECORD_HEADER_LEN, isAllZero, makeRecord } from '../../src/patch/format.js';
import { PatchWriter } from '../../src/patch/writer.js';

export function tempDir(prefix = 'blkdelta-patch-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** copyOf(path, edit?): a fresh copy of a file in `dir` (copy-0, copy-1, ...), optionally changed by `edit`. */
export function fileCopier(dir: string): (path: string, edit?: (b: Buffer) => Buffer | void) => string {
  let copies = 0;
  return (path, edit) => {
    const out = join(dir, `copy-${copies++}`);
    if (!edit) copyFileSync(path, out);
    else { const b = readFileSync(path); writeFileSync(out, edit(b) ?? b); }
    return out;
  };
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** mkfs.ext4 -d of `tree` into a fresh image of `mib` MiB (fixed UUID so only content differs). */
export async function mkfsImage(image: string, tree: string, mib: number): Promise<void> {
  writeFileSync(image, '');
  const r = await execa('truncate', ['-s', `${mib}M`, image], { reject: false });
  if (r.exitCode !== 0) throw new Error(`truncate failed: ${r.stderr}`);
  const uuid = '6f1c9a52-4a8e-4c57-9d0e-0b1f6b1f0c11';
  const m = await execa('mkfs.ext4', ['-q', '-F', '-b', '4096', '-U', uuid, '-E', `hash_seed=${uuid},root_owner=0:0`, '-d', tree, image], { reject: false });
  if (m.exitCode !== 0) throw new Error(`mkfs.ext4 failed (install e2fsprogs: apt-get install e2fsprogs): ${m.stderr || m.message}`);
}

/** Source and target ext4 images of the same size whose contents differ. */
export async function makeImagePair(dir: string, mib = 16): Promise<{ source: string; target: string }> {
  const v1 = join(dir, 'v1'), v2 = join(dir, 'v2');
  for (const d of [v1, v2]) mkdirSync(d);
  const keep = randomBytes(600 * 1024), text = Buffer.from('a line of log text that compresses well\n'.repeat(20000));
  writeFileSync(join(v1, 'keep.bin'), keep);
  writeFileSync(join(v2, 'keep.bin'), keep);
  writeFileSync(join(v1, 'gone.bin'), randomBytes(3 * 1024 * 1024));
  writeFileSync(join(v1, 'log.txt'), text.subarray(0, 300 * 1024));
  writeFileSync(join(v2, 'log.txt'), text);
  writeFileSync(join(v2, 'new.bin'), randomBytes(500 * 1024));
  const source = join(dir, 'source.img'), target = join(dir, 'target.img');
  await mkfsImage(source, v2, mib);
  await mkfsImage(target, v1, mib);
  return { source, target };
}

export interface PatchLayout {
  size: number;
  /** Stream offset, encoding and stored length of every record, in file order. */
  records: Array<{ at: number; encoding: 0 | 1 | 2; storedLength: number }>;
  trailerAt: number;
}

function readAt(fd: number, buf: Buffer, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  buf.fill(0, got, len);
  return got;
}

/**
 * Writes the patch that turns `target` into `source`: each run of differing blocks becomes
 * records of at most maxRecordLen. Bytes past the end of the target compare as zeros.
 */
export async function buildPatch(source: string, target: string, out: string, opts: { blockSize?: number; maxRecordLen?: number; compress?: boolean } = {}): Promise<PatchLayout> {
  const bs = opts.blockSize ?? 4096, mrl = opts.maxRecordLen ?? 64 * 1024;
  const hasher = await loadHasher();
  const sfd = openSync(source, 'r'), tfd = openSync(target, 'r');
  const resultSize = fstatSync(sfd).size, targetSize = fstatSync(tfd).size;
  const w = await PatchWriter.create(out, { blockSize: bs, targetSize, resultSize, maxRecordLen: mrl, sourceFingerprint: Buffer.alloc(16, 7) }, hasher);
  const layout: PatchLayout = { size: 0, records: [], trailerAt: 0 };
  let pos = HEADER_LEN;
  const a = Buffer.alloc(bs), b = Buffer.alloc(bs);
  let run: Buffer[] = [], runAt = 0, runZero = false;
  const flush = async () => {
    if (!run.length) return;
    const rec = makeRecord(runAt, Buffer.concat(run), opts.compress ?? true, hasher);
    w.addRecord(rec.header, rec.payload);
    layout.records.push({ at: pos, encoding: rec.encoding, storedLength: rec.payload.length });
    pos += RECORD_HEADER_LEN + rec.payload.length;
    run = [];
    await w.yieldIfDue();
  };
  try {
    for (let off = 0; off < resultSize; off += bs) {
      const len = Math.min(bs, resultSize - off);
      readAt(sfd, a, len, off);
      readAt(tfd, b, len, off);
      const differs = !a.subarray(0, len).equals(b.subarray(0, len));
      const zero = isAllZero(a.subarray(0, len));
      if (!differs || run.length * bs >= mrl || zero !== runZero) await flush();
      if (differs) {
        if (!run.length) { runAt = off; runZero = zero; }
        run.push(Buffer.from(a.subarray(0, len)));
      }
    }
    await flush();
    layout.trailerAt = pos;
    layout.size = (await w.finish()).bytes;
  } catch (err) {
    w.abort();
    throw err;
  } finally {
    closeSync(sfd); closeSync(tfd);
  }
  return layout;
}
