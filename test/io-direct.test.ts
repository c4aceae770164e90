// io/direct.ts on real files: O_DIRECT reads and writes give the same bytes as buffered ones,
// the fallbacks (unaligned buffer, unaligned size, a cached device) say so, and a local sync of
// files dropped from the page cache leaves (almost) nothing of them cached (fincore).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { openSource, openTarget } from '../src/io/device.js';
import { DROP_EVERY, DirectIo, WRITE_BATCH, alignedBuffer, askResident, pageCacheBytes, residentBytes, residentBytesAsync } from '../src/io/direct.js';
import { grow } from '../src/io/device.js';
import { ExitCode } from '../src/errors.js';
import { Workspace, randomFile, readAt, sha256, syncFiles, touchBlocks } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-direct-');
test.after.always(() => ws.cleanup());
const MiB = 1 << 20;

/** Writes p's dirty pages back (fdatasync), then drops its pages from the page cache. */
const dropCache = (p: string) => spawnSync('dd', [`of=${p}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
/** The workspace's file system type (tmpfs keeps every page of a file in memory, whatever we do). */
const fsType = () => spawnSync('stat', ['-f', '-c', '%T', ws.dir], { encoding: 'utf8' }).stdout.trim();
const uncached = () => 0;

/** A random file of size bytes opened as a source with a DirectIo (residency 0), both closed after f. */
function withReader(name: string, size: number, f: (io: DirectIo, p: string) => void): void {
  const p = ws.fresh(name);
  randomFile(p, size);
  const dev = openSource(p);
  const io = DirectIo.open(dev, { resident: uncached });
  try {
    f(io, p);
  } finally {
    io.close();
    dev.close();
  }
}

test('reads: O_DIRECT into aligned memory gives the bytes of a buffered read, also for an unaligned size', (t) => {
  for (const size of [3 * MiB, 3 * MiB + 1000, 1000]) {
    withReader('r.img', size, (io, p) => {
      const buf = alignedBuffer(MiB);
      for (let pos = 0; pos < size; pos += MiB) {
        const len = Math.min(MiB, size - pos);
        io.read(buf, len, pos);
        t.true(buf.subarray(0, len).equals(readAt(p, pos, len)), `size ${size} at ${pos}`);
      }
      t.is(io.mode, 'O_DIRECT');
    });
  }
});

test('reads: an unaligned buffer is refused by the kernel (EINVAL): buffered from then on, said in the mode', (t) => {
  withReader('u.img', MiB, (io, p) => {
    const buf = Buffer.from(alignedBuffer(MiB + 8192).buffer, 512 + 7, MiB); // 7 bytes past a sector
    io.read(buf, MiB, 0);
    t.true(buf.equals(readAt(p, 0, MiB)));
    t.regex(io.mode, /^page cache \(O_DIRECT refused: EINVAL/);
    t.false(io.direct);
  });
});

test('open: fincore is asked only when the whole page cache could hold 90% of the device', (t) => {
  const p = ws.fresh('b.img');
  randomFile(p, 10 * MiB);
  // [page cache bytes, fincore's answer, fincore asked, the mode]
  const rows: [number | undefined, number, boolean, RegExp][] = [
    [9 * MiB - 1, 10 * MiB, false, /^O_DIRECT$/], // under 90% of the device: cannot be cached, not asked
    [9 * MiB, 10 * MiB, true, /^page cache \(the device was already cached\)$/],
    [64 * MiB, 0, true, /^O_DIRECT$/],
    [undefined, 10 * MiB, true, /already cached/], // /proc/meminfo unreadable: fincore decides
  ];
  for (const [cache, res, asked, mode] of rows) {
    const dev = openSource(p);
    let calls = 0;
    const io = DirectIo.open(dev, { pageCache: () => cache, resident: () => (calls++, res) });
    try {
      t.is(calls, asked ? 1 : 0, `page cache ${cache}`);
      t.regex(io.mode, mode, `page cache ${cache}`);
    } finally {
      io.close();
      dev.close();
    }
  }
});

test('askResident: fincore asked once ahead of open(), which decides with what it measured and the size it has then', async (t) => {
  const p = ws.fresh('e.img');
  randomFile(p, 10 * MiB);
  const never = () => { throw new Error('open() ran its own fincore'); };
  // [page cache bytes, fincore's answer, grown to (bytes) before open, asked early, the mode]
  const rows: [number | undefined, number | undefined, number | undefined, boolean, RegExp][] = [
    [64 * MiB, 10 * MiB, undefined, true, /^page cache \(the device was already cached\)$/],
    [64 * MiB, 9 * MiB, undefined, true, /already cached/], // 90%
    [64 * MiB, 9 * MiB - 1, undefined, true, /^O_DIRECT$/],
    [64 * MiB, 0, undefined, true, /^O_DIRECT$/],
    [64 * MiB, undefined, undefined, true, /^O_DIRECT$/], // fincore failed: not cached
    [undefined, 10 * MiB, undefined, true, /already cached/], // /proc/meminfo unreadable: fincore decides
    [9 * MiB - 1, 10 * MiB, undefined, false, /^O_DIRECT$/], // the page cache could not hold it: not asked
    [64 * MiB, 10 * MiB, 40 * MiB, true, /^O_DIRECT$/], // all cached, then grown 4x: 25% of it is, so O_DIRECT
  ];
  for (const [cache, res, grownTo, early, mode] of rows) {
    const label = `page cache ${cache}, fincore ${res}, grown to ${grownTo}`;
    const dev = openTarget(p, { write: true });
    let calls = 0;
    const ask = async () => (calls++, res);
    const first = askResident(dev, ask, () => cache);
    t.is(askResident(dev, ask, () => cache), first, 'one promise per device');
    await first;
    t.is(calls, early ? 1 : 0, label);
    if (grownTo !== undefined) grow(dev, grownTo);
    const io = DirectIo.open(dev, { write: true, pageCache: () => cache, resident: never });
    try {
      t.regex(io.mode, mode, label);
    } finally {
      io.close();
      if (grownTo !== undefined) grow(dev, 10 * MiB);
      dev.close();
    }
  }
});

test('askResident: a mounted device is not asked; open() without waiting for it runs its own fincore', async (t) => {
  const p = ws.fresh('f.img');
  randomFile(p, MiB);
  const mounted = openSource(p);
  mounted.mounted = ['/mnt/x'];
  let calls = 0;
  await askResident(mounted, async () => (calls++, MiB));
  t.is(calls, 0);
  mounted.close();
  const dev = openSource(p);
  let settle: (n: number) => void = () => {};
  const pending = askResident(dev, () => new Promise((resolve) => (settle = resolve)), () => 64 * MiB);
  const io = DirectIo.open(dev, { pageCache: () => 64 * MiB, resident: () => MiB });
  t.is(io.mode, 'page cache (the device was already cached)', 'its own answer');
  settle(0);
  await pending;
  t.is(DirectIo.open(dev, { resident: () => 0 }).mode, io.mode, 'decided once per device');
  io.close();
  dev.close();
});

test('residentBytesAsync: what residentBytes says, undefined for a path fincore cannot read', async (t) => {
  const p = ws.fresh('g.img');
  randomFile(p, 2 * MiB);
  if (residentBytes(p) === undefined) return t.fail('fincore is missing: apt-get install util-linux');
  t.is(await residentBytesAsync(p), residentBytes(p));
  t.is(await residentBytesAsync(ws.fresh('missing.img')), undefined);
});

// Serial (AVA runs serial tests before the others): fs.fdatasync is replaced while it runs.
test.serial('writes through the cache: written back behind the caller every DROP_EVERY bytes; a failed write-back is thrown by drain()', async (t) => {
  const real = fs.fdatasync;
  // [bytes written in 1 MiB writes, the write-back fails, it is held until after the writes, write-backs begun by then]
  const rows: [number, boolean, boolean, number][] = [
    [DROP_EVERY - MiB, false, false, 0],
    [DROP_EVERY, false, false, 1],
    [2 * DROP_EVERY + MiB, false, false, 2],
    [2 * DROP_EVERY + MiB, false, true, 1], // one at a time: the second waits until the first has ended
    [DROP_EVERY + MiB, true, false, 1],
  ];
  try {
    for (const [bytes, fails, held, want] of rows) {
      const label = `${bytes / MiB} MiB${fails ? ', write-back fails' : ''}${held ? ', write-back held' : ''}`;
      const p = ws.fresh('wb.img');
      randomFile(p, bytes);
      const dev = openTarget(p, { write: true });
      const io = DirectIo.open(dev, { write: true, resident: () => bytes });
      let calls = 0;
      const waiting: (() => void)[] = [];
      fs.fdatasync = ((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
        calls++;
        const end = () => cb(fails ? Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }) : null);
        if (held) waiting.push(end);
        else setImmediate(end);
      }) as typeof fs.fdatasync;
      try {
        t.is(io.mode, 'page cache (the device was already cached)', label);
        const data = Buffer.alloc(MiB, 7);
        for (let at = 0; at < bytes; at += MiB) {
          await io.writeAsync(data, at); // never waits for a write-back
          await new Promise((resolve) => setImmediate(resolve));
        }
        t.is(calls, want, label);
        for (const end of waiting.splice(0)) end();
        if (fails) {
          const err = await t.throwsAsync(() => io.drain(), { message: /fdatasync of .*wb\.img failed: .*EIO/ }, label);
          t.is((err as { code?: number }).code, ExitCode.IO, `${label}: exit code IO`);
        } else {
          await io.drain();
        }
        t.true(readAt(p, bytes - MiB, MiB).equals(data), `${label}: the bytes are written`);
      } finally {
        fs.fdatasync = real;
        io.close();
        dev.close();
      }
    }
  } finally {
    fs.fdatasync = real;
  }
});

test('pageCacheBytes: Cached plus Buffers of /proc/meminfo; undefined when either is missing or unreadable', (t) => {
  const text = 'MemTotal:       24683620 kB\nBuffers:          120 kB\nCached:          9448488 kB\nSwapCached:            0 kB\n';
  t.is(pageCacheBytes(() => text), (9448488 + 120) * 1024);
  t.is(pageCacheBytes(() => text.replace(/^Buffers.*\n/m, '')), undefined);
  t.is(pageCacheBytes(() => 'Cached: lots\nBuffers: 1 kB\n'), undefined);
  t.is(pageCacheBytes(() => { throw new Error('EACCES'); }), undefined);
  const real = pageCacheBytes();
  t.true(real !== undefined && real > 0, `this machine's page cache: ${real}`);
});

test('reads: a device already in the page cache is read through it', (t) => {
  const p = ws.fresh('c.img');
  randomFile(p, MiB);
  const dev = openSource(p);
  const io = DirectIo.open(dev, { resident: () => MiB });
  t.is(io.mode, 'page cache (the device was already cached)');
  io.close();
  dev.close();
});

test('writes: a target already in the page cache is written through it and nothing is dropped; one fincore per device', async (t) => {
  const p = ws.fresh('c.img');
  randomFile(p, 2 * MiB);
  const dev = openTarget(p, { write: true });
  let asked = 0;
  const cached = () => (asked++, 2 * MiB);
  const reader = DirectIo.open(dev, { resident: cached });
  const writer = DirectIo.open(dev, { write: true, resident: cached });
  try {
    await writer.writeAsync(Buffer.alloc(MiB, 0xcd), 0); // large: O_DIRECT on an uncached target
    await writer.writeAsync(Buffer.alloc(4096, 0xef), MiB); // small: would be dropped on an uncached one
    writer.dropWritten();
    t.is(writer.mode, 'page cache (the device was already cached)');
    t.is(reader.mode, 'page cache (the device was already cached)');
    t.is(asked, 1);
  } finally {
    reader.close();
    writer.close();
    dev.close();
  }
  t.true(readAt(p, 0, MiB).every((b) => b === 0xcd));
  t.true(readAt(p, MiB, 4096).every((b) => b === 0xef));
  if (fsType() !== 'tmpfs' && residentBytes(p) !== undefined) t.is(residentBytes(p), 2 * MiB, 'the cached target stays cached');
});

test('writes: aligned ranges with O_DIRECT, an unaligned tail through the cache; the bytes are right', async (t) => {
  const p = ws.fresh('w.img');
  const size = 2 * MiB + 1000;
  randomFile(p, size);
  const dev = openTarget(p, { write: true });
  const io = DirectIo.open(dev, { write: true, resident: uncached });
  try {
    const data = Buffer.alloc(size, 0xab);
    await io.writeAsync(data.subarray(0, MiB), 0);
    await io.drain(); // writeAsync writes behind: before a write over the same range
    io.write(data.subarray(MiB, 2 * MiB), MiB);
    io.write(data.subarray(2 * MiB), 2 * MiB);
    await io.writeZerosAsync(4096, 4096);
    io.writeZeros(8192, 4096);
    await io.drain();
    t.is(io.mode, 'O_DIRECT');
  } finally {
    io.close();
    dev.close();
  }
  const back = readAt(p, 0, size);
  t.true(back.subarray(0, 4096).every((b) => b === 0xab));
  t.true(back.subarray(4096, 12288).every((b) => b === 0));
  t.true(back.subarray(12288).every((b) => b === 0xab));
});

test('writes behind: contiguous writes are gathered into batches, a gap starts a new one; drain() puts all on the device', async (t) => {
  // 56 writes of 256 KiB with two gaps: several batches per staging buffer, each reused after its
  // write while another is in flight; every write's bytes (distinct) must land where it was asked.
  const p = ws.fresh('wb.img');
  const piece = 256 * 1024;
  const count = 56;
  const at = (i: number) => i * piece + (i >= 20 ? 512 * 1024 : 0) + (i >= 41 ? 3 * piece : 0);
  const size = at(count - 1) + piece + MiB;
  t.true(count * piece > 3 * WRITE_BATCH, 'enough batches to reuse every buffer');
  randomFile(p, size);
  const before = readAt(p, 0, size);
  const dev = openTarget(p, { write: true });
  const io = DirectIo.open(dev, { write: true, resident: uncached });
  const fill = (i: number) => Buffer.alloc(piece, (i * 7 + 1) & 0xff);
  try {
    for (let i = 0; i < count; i++) await io.writeAsync(fill(i), at(i));
    await io.drain();
    t.is(io.mode, 'O_DIRECT');
  } finally {
    io.close();
    dev.close();
  }
  for (let i = 0; i < count; i++) t.true(readAt(p, at(i), piece).equals(fill(i)), `write ${i}`);
  for (const gap of [at(19) + piece, at(40) + piece]) t.true(readAt(p, gap, 4096).equals(before.subarray(gap, gap + 4096)), `the gap at ${gap} is untouched`);
  t.true(readAt(p, at(count - 1) + piece, MiB).equals(before.subarray(at(count - 1) + piece)), 'the tail is untouched');
});

test('writes: small writes go through the cache and are dropped behind every DROP_EVERY bytes; drain() waits for that', async (t) => {
  if (fsType() === 'tmpfs') return t.fail('the work dir is on tmpfs, where every page of a file is memory: set TMPDIR to a disk-backed directory');
  const p = ws.fresh('small.img');
  const size = 2 * DROP_EVERY;
  randomFile(p, size);
  dropCache(p);
  const dev = openTarget(p, { write: true });
  const io = DirectIo.open(dev, { write: true, resident: uncached });
  const block = Buffer.alloc(4096, 0x5a);
  try {
    for (let pos = 0; pos < size; pos += 8192) await io.writeAsync(block, pos); // every other block: DROP_EVERY bytes in all
    await io.drain();
    io.dropWritten();
  } finally {
    io.close();
    dev.close();
  }
  t.true(residentBytes(p)! <= 256 * 1024, `${residentBytes(p)} bytes cached`);
  for (const pos of [0, 8192, size - 8192]) t.true(readAt(p, pos, 4096).equals(block), `block at ${pos}`);
});

test('a local sync of files dropped from the page cache leaves almost none of them cached', async (t) => {
  if (fsType() === 'tmpfs') return t.fail('the work dir is on tmpfs, where every page of a file is memory: set TMPDIR to a disk-backed directory');
  if (residentBytes('/proc/self/exe') === undefined) return t.fail('fincore is missing: apt-get install util-linux');
  const { src, dst } = ws.pair(16 * MiB);
  touchBlocks(dst, 4096, [3, 100, 2000, 4000]);
  dropCache(src);
  dropCache(dst);
  const s = await syncFiles(src, dst);
  t.is(s.blocksWritten, 4);
  t.is(s.sourceIo, 'O_DIRECT');
  t.is(s.targetIo, 'reads O_DIRECT, writes O_DIRECT');
  // the allowance: a few pages the file system may read around a write (extent tree, journal)
  t.true(residentBytes(src)! <= 256 * 1024, `source: ${residentBytes(src)} bytes cached`);
  t.true(residentBytes(dst)! <= 256 * 1024, `target: ${residentBytes(dst)} bytes cached`);
  t.is(sha256(dst), sha256(src));
});
