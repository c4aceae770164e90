import test from 'ava';
import { CompressGate, GIVE_UP_AFTER, RETRY_AFTER } from '../src/engine/compress-gate.js';

const MIB = 1024 * 1024;

/** Feeds records of 1 MiB with the given outcomes; returns which ones lz4 was tried on. */
function tried(enabled: boolean, shrinks: (i: number) => boolean, n: number): boolean[] {
  const g = new CompressGate(enabled);
  const out: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const t = g.tryOn(MIB);
    out.push(t);
    if (t) g.result(MIB, shrinks(i));
  }
  return out;
}

const giveUp = GIVE_UP_AFTER / MIB;
const pause = RETRY_AFTER / MIB;

test('disabled: never tried', (t) => t.false(tried(false, () => true, 10).some(Boolean)));
test('compressible data: always tried', (t) => t.true(tried(true, () => true, 200).every(Boolean)));
test('incompressible: pauses after GIVE_UP_AFTER, tries again after RETRY_AFTER', (t) => {
  const r = tried(true, () => false, giveUp + pause + 1);
  t.true(r.slice(0, giveUp).every(Boolean));
  t.false(r.slice(giveUp, giveUp + pause).some(Boolean));
  t.true(r[giveUp + pause]);
});
test('one record that shrinks resets the count', (t) => {
  const r = tried(true, (i) => i === giveUp - 1, giveUp * 2);
  t.true(r.slice(0, 2 * giveUp - 1).every(Boolean));
});
