// io/read-ahead.ts on real files: how many chunk buffers a chunk size gets (a table), pieces
// handed out in order with the bytes of a buffered read while several O_DIRECT reads are in
// flight, the EINVAL fallback with reads in flight (the fd closes only after the last of them),
// and a read error thrown at next() with every other read awaited by close().
import test from 'ava';
import { readdirSync } from 'node:fs';
import { openSource } from '../src/io/device.js';
import { DirectIo, alignedBuffer } from '../src/io/direct.js';
import { MAX_READS, ReadAhead, readBuffers, type Piece } from '../src/io/read-ahead.js';
import { Workspace, randomFile, readAt } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-readahead-');
test.after.always(() => ws.cleanup());
const KiB = 1024;
const MiB = 1 << 20;
const uncached = () => 0;
const openFds = () => readdirSync('/proc/self/fd').length;

const buffersFor = test.macro({
  exec(t, chunkSize: number, expected: number) {
    t.is(readBuffers(chunkSize), expected);
  },
  title: (_, chunkSize: number, expected: number) => `readBuffers: ${chunkSize / KiB} KiB chunks get ${expected} buffers`,
});
test(buffersFor, 64 * KiB, 1 + MAX_READS);
test(buffersFor, MiB, 5);
test(buffersFor, 3 * MiB, 2);
test(buffersFor, 2 * MiB, 3);
test(buffersFor, 4 * MiB, 2);
test(buffersFor, 16 * MiB, 2);

/** count page-aligned buffers of size bytes (in one WebAssembly memory, as a BlockHasher's chunks). */
function aligned(count: number, size: number): Buffer[] {
  const all = alignedBuffer(count * size);
  return Array.from({ length: count }, (_, i) => all.subarray(i * size, (i + 1) * size));
}

/** Reads every piece through a ReadAhead; checks each against a buffered read of p. */
async function readAll(t: import('ava').ExecutionContext, io: DirectIo, p: string, bufs: Buffer[], list: Piece[]): Promise<number> {
  const ahead = new ReadAhead(io, bufs, list[Symbol.iterator]());
  let n = 0;
  try {
    for (let got = await ahead.next(); got; got = await ahead.next()) {
      const [pos, len] = got.piece;
      t.deepEqual(got.piece, list[n++]);
      t.true(bufs[got.which]!.subarray(0, len).equals(readAt(p, pos, len)), `piece at ${pos}`);
    }
  } finally {
    await ahead.close();
  }
  return n;
}

/** A random file of size bytes opened with a DirectIo (residency 0); both closed after f. */
async function withReader(name: string, size: number, f: (io: DirectIo, p: string) => Promise<void>): Promise<void> {
  const p = ws.fresh(name);
  randomFile(p, size);
  const dev = openSource(p);
  const io = DirectIo.open(dev, { resident: uncached });
  try {
    await f(io, p);
  } finally {
    io.close();
    dev.close();
  }
}

const chunks = (size: number, chunk: number): Piece[] => Array.from({ length: Math.ceil(size / chunk) }, (_, i) => [i * chunk, Math.min(chunk, size - i * chunk), i] as const);

test('pieces come out in order with their bytes, several O_DIRECT reads in flight, also for an unaligned end', async (t) => {
  for (const size of [9 * MiB, 9 * MiB + 1000, 1000]) {
    await withReader('r.img', size, async (io, p) => {
      t.is(await readAll(t, io, p, aligned(5, MiB), chunks(size, MiB)), Math.ceil(size / MiB));
      t.is(io.mode, 'O_DIRECT');
    });
  }
});

test('scattered pieces of a ranges run (gaps, short pieces, at the last block) read right', async (t) => {
  await withReader('s.img', 6 * MiB, async (io, p) => {
    const list: Piece[] = [[0, 4096, true], [MiB, 8192, false], [2 * MiB, MiB, false], [3 * MiB + 4096, 12288, false], [6 * MiB - 4096, 4096, false]];
    t.is(await readAll(t, io, p, aligned(3, MiB), list), list.length);
    t.is(io.mode, 'O_DIRECT');
  });
});

test.serial('unaligned buffers: EINVAL with reads in flight switches to buffered reads, the bytes are right, the fd closes after the last read', async (t) => {
  const before = openFds();
  await withReader('u.img', 8 * MiB, async (io, p) => {
    const base = alignedBuffer(5 * MiB + 8192);
    const bufs = Array.from({ length: 4 }, (_, i) => base.subarray(512 + 7 + i * MiB, 512 + 7 + (i + 1) * MiB)); // 7 bytes past a sector
    t.is(await readAll(t, io, p, bufs, chunks(8 * MiB, MiB)), 8);
    t.regex(io.mode, /^page cache \(O_DIRECT refused: EINVAL/);
    t.false(io.direct);
  });
  t.is(openFds(), before);
});

test.serial('a read error is thrown at next(); close() awaits the reads still in flight, then the fd closes', async (t) => {
  const before = openFds();
  await withReader('e.img', 2 * MiB, async (io) => {
    const ahead = new ReadAhead(io, aligned(5, MiB), chunks(5 * MiB, MiB)[Symbol.iterator]()); // past the end of a 2 MiB file
    t.truthy(await ahead.next());
    t.truthy(await ahead.next());
    await t.throwsAsync(ahead.next(), { message: /ended at byte 2097152/ });
    await ahead.close();
  });
  t.is(openFds(), before);
});

test('a target reads zeros past the end of its device (zeroFill)', async (t) => {
  await withReader('z.img', MiB + 4096, async (io, p) => {
    const bufs = aligned(3, MiB);
    const ahead = new ReadAhead(io, bufs, chunks(3 * MiB, MiB)[Symbol.iterator](), true);
    const seen: Buffer[] = [];
    for (let got = await ahead.next(); got; got = await ahead.next()) seen.push(Buffer.from(bufs[got.which]!));
    await ahead.close();
    t.true(seen[0]!.equals(readAt(p, 0, MiB)));
    t.true(seen[1]!.subarray(0, 4096).equals(readAt(p, MiB, 4096)));
    t.true(seen[1]!.subarray(4096).equals(Buffer.alloc(MiB - 4096)));
    t.true(seen[2]!.equals(Buffer.alloc(MiB)));
  });
});

test('through the page cache only two of the buffers are used (reads are copies made at once); O_DIRECT uses them all', async (t) => {
  for (const cached of [true, false]) {
    const p = ws.fresh(`c-${cached}.img`);
    randomFile(p, 8 * MiB);
    const dev = openSource(p);
    const io = DirectIo.open(dev, { resident: () => (cached ? 8 * MiB : 0) });
    t.is(io.direct, !cached);
    const bufs = aligned(5, MiB);
    const used = new Set<number>();
    const ahead = new ReadAhead(io, bufs, chunks(8 * MiB, MiB)[Symbol.iterator]());
    try {
      for (let got = await ahead.next(); got; got = await ahead.next()) {
        used.add(got.which);
        t.true(bufs[got.which]!.equals(readAt(p, got.piece[0], MiB)), `piece at ${got.piece[0]}`);
      }
    } finally {
      await ahead.close();
      io.close();
      dev.close();
    }
    t.deepEqual([...used].sort(), cached ? [0, 1] : [0, 1, 2, 3, 4]);
  }
});
