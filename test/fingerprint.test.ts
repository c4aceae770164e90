// Fingerprints (src/engine/fingerprint.ts): a sync reports the target's content before and after
// the run, and re-reading the devices with fingerprintDevice gives the same digests; any change
// to one byte, the seed, the block size or the size gives another.
import test from 'ava';
import { copyFileSync } from 'node:fs';
import { openSource } from '../src/io/device.js';
import { fingerprintDevice, type Fingerprint } from '../src/engine/fingerprint.js';
import { Workspace, syncFiles as sync, touchBytes } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-fingerprint-');
test.after.always(() => ws.cleanup());
const MiB = 1 << 20;

async function reread(path: string, fp: Fingerprint): Promise<string> {
  const dev = openSource(path);
  try {
    return (await fingerprintDevice(dev, fp)).digest;
  } finally {
    dev.close();
  }
}

test('a sync reports the fingerprints of the target before and after; a re-read agrees', async (t) => {
  const { src, dst } = ws.pair(3 * MiB + 1000); // a short last block and a short last chunk
  touchBytes(dst, [5000, 1_500_000, 3 * MiB + 999]);
  const before = ws.fresh('before.img');
  copyFileSync(dst, before);
  const s = await sync(src, dst);
  t.truthy(s.fingerprint && s.baseFingerprint);
  const fp = s.fingerprint!;
  t.like(fp, { algo: 'xxh64-blocks', blockSize: 4096, size: 3 * MiB + 1000 });
  t.regex(fp.digest, /^[0-9a-f]{16}$/);
  t.is(await reread(dst, fp), fp.digest);
  t.is(await reread(src, fp), fp.digest);
  t.is(await reread(before, s.baseFingerprint!), s.baseFingerprint!.digest);
  t.not(fp.digest, s.baseFingerprint!.digest);
});

test('one changed byte, another seed, block size or size: another digest', async (t) => {
  const { src, dst } = ws.pair(2 * MiB);
  const s = await sync(src, dst);
  const fp = s.fingerprint!;
  t.not(await reread(dst, { ...fp, seed: (BigInt(fp.seed) ^ 1n).toString() }), fp.digest);
  t.not(await reread(dst, { ...fp, blockSize: 8192 }), fp.digest);
  t.not(await reread(dst, { ...fp, size: fp.size - 512 }), fp.digest);
  touchBytes(dst, [2 * MiB - 1]);
  t.not(await reread(dst, fp), fp.digest);
});

test('a no-change run: before and after are the same content', async (t) => {
  const { src, dst } = ws.pair(MiB);
  const s = await sync(src, dst);
  t.is(s.fingerprint!.digest, s.baseFingerprint!.digest);
});
