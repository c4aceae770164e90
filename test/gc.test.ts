// gc.ts: fullGc() returns the memory of unreachable buffers; gcIfGrown() runs one only after
// external memory grew.
import test from 'ava';
import { collections, fullGc, gcIfGrown } from '../src/gc.js';

const arrayBuffers = () => process.memoryUsage().arrayBuffers;

function garbage(bytes: number): void {
  let keep: Buffer[] = [];
  for (let i = 0; i < bytes / 65536; i++) keep.push(Buffer.allocUnsafeSlow(65536));
  keep = [];
}

test.serial('fullGc frees unreachable array buffers', (t) => {
  fullGc();
  const before = arrayBuffers();
  garbage(32 * 1024 * 1024);
  t.true(arrayBuffers() - before >= 30 * 1024 * 1024, 'the garbage is still counted before the GC');
  fullGc();
  t.true(arrayBuffers() - before < 2 * 1024 * 1024, `${arrayBuffers() - before} bytes left after fullGc`);
});

test.serial('gcIfGrown collects after growth and not before', (t) => {
  gcIfGrown();
  const n = collections;
  gcIfGrown();
  t.is(collections, n, 'no growth, no GC');
  garbage(16 * 1024 * 1024);
  gcIfGrown();
  t.is(collections, n + 1);
});
