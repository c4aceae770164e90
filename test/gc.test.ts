// gc.ts: fullGc() and the scavenges gcAfter() runs return the memory of unreachable buffers;
// gcAfter() runs a scavenge per MINOR_EVERY bytes counted and a full GC per FULL_EVERY.
import test from 'ava';
import { FULL_EVERY, MINOR_EVERY, SSH_FULL_EVERY, collections, fullGc, gcAfter, gcAfterSsh } from '../src/gc.js';

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

test.serial('the scavenge gcAfter runs frees young unreachable array buffers (pipe chunks, lz4 outputs)', async (t) => {
  fullGc();
  gcAfter(MINOR_EVERY); // start from an empty budget
  const before = arrayBuffers();
  const { minor, full } = collections;
  garbage(16 * 1024 * 1024);
  t.true(arrayBuffers() - before >= 15 * 1024 * 1024, 'the garbage is still counted before the GC');
  gcAfter(MINOR_EVERY);
  if (collections.full !== full) return t.pass('this call happened to be the full GC'); // also frees it
  t.is(collections.minor, minor + 1);
  const left = await settled(before);
  t.true(left < 2 * 1024 * 1024, `${left} bytes left after a scavenge`);
});

test.serial('gcAfter: a scavenge per MINOR_EVERY bytes counted, not before; a full GC per FULL_EVERY', (t) => {
  // reach the point right after a full GC
  const start = collections.full;
  while (collections.full === start) gcAfter(MINOR_EVERY);
  const { minor, full } = collections;
  gcAfter(MINOR_EVERY - 1);
  t.deepEqual(collections, { minor, full }, 'under budget, no GC');
  gcAfter(1);
  t.deepEqual(collections, { minor: minor + 1, full });
  for (let i = 0; i < 10; i++) gcAfter(MINOR_EVERY / 2);
  t.deepEqual(collections, { minor: minor + 6, full });
  const perFull = FULL_EVERY / MINOR_EVERY; // the budget: every perFull-th collection is a full one
  for (let i = 6; i < perFull - 1; i++) gcAfter(MINOR_EVERY);
  t.deepEqual(collections, { minor: minor + perFull - 1, full });
  gcAfter(MINOR_EVERY);
  t.deepEqual(collections, { minor: minor + perFull - 1, full: full + 1 });
});

test.serial('gcAfterSsh: a full GC per SSH_FULL_EVERY bytes sent through ssh2', (t) => {
  const start = collections.full;
  while (collections.full === start) gcAfter(MINOR_EVERY); // right after a full GC
  const { minor, full } = collections;
  gcAfterSsh(SSH_FULL_EVERY - 1024);
  t.deepEqual(collections, { minor, full }, 'under budget');
  gcAfterSsh(1024);
  t.deepEqual(collections, { minor, full: full + 1 });
});

test.serial('gcAfter with a full weight of 1/8 (chunks placed at once): scavenges as usual, a full GC per 8 x FULL_EVERY', (t) => {
  const start = collections.full;
  while (collections.full === start) gcAfter(MINOR_EVERY); // right after a full GC
  const { minor, full } = collections;
  const perFull = (8 * FULL_EVERY) / MINOR_EVERY;
  for (let i = 0; i < perFull - 1; i++) gcAfter(MINOR_EVERY, 1 / 8);
  t.deepEqual(collections, { minor: minor + perFull - 1, full }, 'a scavenge per MINOR_EVERY, no full GC yet');
  gcAfter(MINOR_EVERY, 1 / 8);
  t.deepEqual(collections, { minor: minor + perFull - 1, full: full + 1 });
});
