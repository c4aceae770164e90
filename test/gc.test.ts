// gc.ts: fullGc() returns the memory of unreachable buffers; gcAfter() runs one per GC_EVERY bytes.
import test from 'ava';
import { GC_EVERY, collections, fullGc, gcAfter } from '../src/gc.js';

const arrayBuffers = () => process.memoryUsage().arrayBuffers;

function garbage(bytes: number): void {
  let keep: Buffer[] = [];
  for (let i = 0; i < bytes / 65536; i++) keep.push(Buffer.allocUnsafeSlow(65536));
  keep = [];
}

// V8 frees array buffers on a sweeper thread after the GC: give it up to 2 s.
async function settled(before: number): Promise<number> {
  for (let i = 0; i < 200 && arrayBuffers() - before >= 2 * 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 10));
  return arrayBuffers() - before;
}

test.serial('fullGc frees unreachable array buffers', async (t) => {
  fullGc();
  const before = arrayBuffers();
  garbage(32 * 1024 * 1024);
  t.true(arrayBuffers() - before >= 30 * 1024 * 1024, 'the garbage is still counted before the GC');
  fullGc();
  const left = await settled(before);
  t.true(left < 2 * 1024 * 1024, `${left} bytes left after fullGc`);
});

test.serial('gcAfter collects once per GC_EVERY bytes counted, not before', (t) => {
  gcAfter(GC_EVERY); // start from an empty budget
  const n = collections;
  gcAfter(GC_EVERY - 1);
  t.is(collections, n, 'under budget, no GC');
  gcAfter(1);
  t.is(collections, n + 1);
  for (let i = 0; i < 10; i++) gcAfter(GC_EVERY / 2);
  t.is(collections, n + 6);
});
