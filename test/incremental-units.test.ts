// Incremental runs, pure parts as table tests (thin_delta XML captured from the real tools in the
// VM lane: fixtures/lvm/thin-delta*.xml), and the engine restricted to block ranges on image files.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { complement, mergeRanges, pieces, rangesProblem, sampleOutside, sampleProblem, type BlockRange } from '../src/ranges.js';
import { SampleDiffers } from '../src/engine/source.js';
import { fullCompareDue, missProbability, parseThinDelta, poolDevices, toBlockRanges, DEFAULT_SAMPLE_BLOCKS } from '../src/lvm/thin-delta.js';
import { parseDuration } from '../src/units.js';
import { BlkError, ExitCode } from '../src/errors.js';
import { MAX_RANGES, tooScattered } from '../src/lvm/incremental.js';
import { MAX_FRAME } from '../src/proto/wire.js';
import { Workspace, readAt, sha256, syncFiles as sync, touchBlocks } from './helpers/engine-fixture.js';

const xml = (name: string) => readFileSync(new URL(`../../fixtures/lvm/${name}.xml`, import.meta.url), 'utf8');
const KiB = 1024;
const MiB = 1024 * KiB;

test('thin_delta XML (real, 64 KiB pool chunks): different, left_only (a discard) and right_only are changed', (t) => {
  const d = parseThinDelta(xml('thin-delta'));
  t.is(d.poolBlockBytes, 64 * KiB);
  t.deepEqual([d.left, d.right], [2, 3]);
  // the capture wrote 4 KiB blocks 100, 200-202, 500, 900, discarded 4-5 MiB, wrote 20-22 MiB
  t.deepEqual(d.changed, [[6, 1], [12, 1], [31, 1], [56, 1], [64, 16], [320, 32]]);
  t.is(d.leftOnlyBlocks, 4 + 16, 'the base pins the old versions of the rewritten blocks and the discarded ones');
});

test('thin_delta XML of a snapshot against itself: nothing changed', (t) => {
  t.deepEqual(parseThinDelta(xml('thin-delta-same')).changed, []);
});

const malformed = test.macro({
  exec(t: ExecutionContext, text: string, why: RegExp) {
    const err = t.throws(() => parseThinDelta(text), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.SNAPSHOT);
    t.regex(err!.message, why);
  },
  title: (_t, text: string, why: RegExp) => `thin_delta XML refused (${why.source}): ${JSON.stringify(text.slice(-60))}`,
});
test(malformed, '', /no <superblock><diff>/);
test(malformed, '<superblock data_block_size="128"><diff left="1" right="2"><same begin="0" length="1"/>', /no <superblock><diff>/);
test(malformed, '<superblock><diff left="1" right="2"></diff></superblock>', /no data_block_size/);
test(malformed, '<superblock data_block_size="128"><diff left="1" right="2"><different begin="x" length="1"/></diff></superblock>', /no begin/);
test(malformed, '<superblock data_block_size="128"><diff left="1" right="2"><different><range begin="1" length="1"/></different></diff></superblock>', /verbose/);
test(malformed, '<superblock data_block_size="128"><diff left="1" right="2">oops</diff></superblock>', /unknown content/);

const blocks = test.macro({
  exec(t: ExecutionContext, changed: BlockRange[], poolBytes: number, bs: number, dev: number, want: BlockRange[]) {
    t.deepEqual(toBlockRanges(changed, poolBytes, bs, dev), want);
  },
  title: (_t, changed: BlockRange[], poolBytes: number, bs: number) => `pool ranges ${JSON.stringify(changed)} of ${poolBytes} B → ${bs} B blocks`,
});
test(blocks, [[6, 1], [12, 1]], 64 * KiB, 4 * KiB, 64 * MiB, [[96, 16], [192, 16]]);
test(blocks, [[6, 1], [7, 2]], 64 * KiB, 4 * KiB, 64 * MiB, [[96, 48]]); // adjacent extents merge
test(blocks, [[1, 1], [2, 1], [5, 1]], 64 * KiB, 1 * MiB, 64 * MiB, [[0, 1]]); // sync blocks larger: widened, merged
test(blocks, [[3, 2]], 64 * KiB, 256 * KiB, 64 * MiB, [[0, 2]]); // 192-320 KiB spans two 256 KiB blocks
test(blocks, [[1023, 4]], 64 * KiB, 4 * KiB, 64 * MiB, [[16368, 16]]); // clipped to the device's 16384 blocks
test(blocks, [[2000, 4]], 64 * KiB, 4 * KiB, 64 * MiB, []); // past the end: nothing
test(blocks, [], 64 * KiB, 4 * KiB, 64 * MiB, []);

const merge = test.macro({
  exec(t: ExecutionContext, r: BlockRange[], want: BlockRange[]) {
    t.deepEqual(mergeRanges(r), want);
  },
  title: (_t, r: BlockRange[]) => `merge ${JSON.stringify(r)}`,
});
test(merge, [[5, 2], [0, 1], [1, 1], [10, 0]], [[0, 2], [5, 2]]);
test(merge, [[0, 10], [2, 3]], [[0, 10]]);
test(merge, [[0, 3], [3, 3], [7, 1]], [[0, 6], [7, 1]]);

const problem = test.macro({
  exec(t: ExecutionContext, r: unknown, total: number, want: RegExp | null) {
    const p = rangesProblem(r, total);
    if (want) t.regex(p ?? '', want);
    else t.is(p, null);
  },
  title: (_t, r: unknown, total: number) => `ranges ${JSON.stringify(r)} of ${total} blocks`,
});
test(problem, [[0, 1], [2, 3]], 5, null);
test(problem, [], 5, null);
test(problem, 'x', 5, /not an array/);
test(problem, [[0, 1.5]], 5, /entry 0 is not/);
test(problem, [[-1, 1]], 5, /entry 0 is not/);
test(problem, [[0, 0]], 5, /empty/);
test(problem, [[2, 1], [1, 1]], 5, /not sorted/);
test(problem, [[0, 2], [1, 1]], 5, /not sorted/);
test(problem, [[4, 2]], 5, /past the compared 5 blocks/);

test('pieces: ranges split at the chunk size and clipped to the compared bytes; none: the whole device', (t) => {
  const p = { blockSize: 4096, chunkSize: 1 * MiB, compareSize: 3 * MiB - 4096 };
  t.deepEqual([...pieces(p)], [[0, MiB, false], [MiB, MiB, false], [2 * MiB, MiB - 4096, false]]);
  t.deepEqual([...pieces({ ...p, ranges: [[1, 1], [200, 300], [767, 10]] })],
    [[4096, 4096, false], [200 * 4096, MiB, false], [200 * 4096 + MiB, 300 * 4096 - MiB, false]]);
  t.deepEqual([...pieces({ ...p, ranges: [] })], []);
  t.deepEqual([...pieces({ ...p, ranges: [[1, 1]], sample: [[5, 1], [700, 2]] })], [[5 * 4096, 4096, true], [700 * 4096, 2 * 4096, true], [4096, 4096, false]], 'the sample first');
  t.deepEqual([...pieces({ ...p, sample: [[5, 1]] })].length, 3, 'a sample without ranges is ignored (a full run)');
});

const sampleCase = test.macro((t, sample: unknown, ranges: BlockRange[] | undefined, words: RegExp | null) => {
  const why = sampleProblem(sample, ranges, 100);
  if (words) t.regex(why ?? '', words);
  else t.is(why, null);
});
for (const [sample, ranges, words] of [
  [[[5, 1], [50, 2]], [[0, 5], [6, 10]], null],
  [[], [[0, 1]], null],
  [[[5, 1]], undefined, /needs ranges/],
  [[[5, 1]], [[4, 2]], /shares blocks with the ranges/],
  [[[5, 1], [3, 1]], [[0, 1]], /not sorted/],
  [[[99, 2]], [[0, 1]], /past the compared 100 blocks/],
  ['x', [[0, 1]], /not an array/],
] as const) {
  test(`sampleProblem ${JSON.stringify(sample)} next to ${JSON.stringify(ranges)}`, sampleCase, sample, ranges as BlockRange[] | undefined, words);
}

test('complement: the gaps between ranges', (t) => {
  t.deepEqual(complement([[2, 3], [7, 1]], 10), [[0, 2], [5, 2], [8, 2]]);
  t.deepEqual(complement([], 4), [[0, 4]]);
  t.deepEqual(complement([[0, 4]], 4), []);
});

/** A seeded generator (mulberry32) so the draws are reproducible. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const sample = test.macro({
  exec(t: ExecutionContext, total: number, changed: BlockRange[], k: number, want: number) {
    const s = sampleOutside(total, changed, k, seeded(7));
    t.is(s.length, want);
    const set = new Set(s.map(([b]) => b));
    t.is(set.size, s.length, 'distinct');
    for (const [b, n] of s) {
      t.is(n, 1);
      t.true(b >= 0 && b < total);
      t.false(changed.some(([a, m]) => b >= a && b < a + m), `block ${b} is inside a changed range`);
    }
    t.deepEqual(s, [...s].sort((a, b) => a[0] - b[0]));
  },
  title: (_t, total: number, changed: BlockRange[], k: number) => `sample ${k} of ${total} blocks outside ${JSON.stringify(changed).slice(0, 40)}`,
});
test(sample, 65536, [[0, 100], [5000, 64], [65000, 536]], 128, 128);
test(sample, 10, [[2, 3]], 128, 7); // fewer free blocks than asked: all of them
test(sample, 10, [[0, 10]], 128, 0);
test(sample, 1000, [], 0, 0);

test('sample: a target rewritten in a tenth of its blocks is caught (default sample size, 2000 seeded trials)', (t) => {
  t.true(missProbability(DEFAULT_SAMPLE_BLOCKS, 0.1) < 1e-5);
  const total = 65536;
  const rewritten = (b: number) => b >= 30000 && b < 30000 + total / 10; // one contiguous tenth
  const rand = seeded(11);
  let missed = 0;
  for (let i = 0; i < 2000; i++) if (!sampleOutside(total, [[0, 64]], DEFAULT_SAMPLE_BLOCKS, rand).some(([b]) => rewritten(b))) missed++;
  t.is(missed, 0);
});

const due = test.macro({
  exec(t: ExecutionContext, last: number | undefined, every: number | undefined, now: number, want: boolean) {
    t.is(fullCompareDue(last, every, now), want);
  },
  title: (_t, last, every, now, want: boolean) => `full compare due: last ${last}, every ${every} s, now ${now} → ${want}`,
});
test(due, 0, 7 * 86400, 7 * 86400 * 1000 - 1, false);
test(due, 0, 7 * 86400, 7 * 86400 * 1000, true);
test(due, undefined, 3600, 5, true);
test(due, undefined, undefined, 5, false);
test(due, 0, 0, 1e12, false);

test('full_compare_every values parse as durations', (t) => {
  t.is(parseDuration('7d'), 7 * 86400);
  t.is(parseDuration('36h'), 36 * 3600);
  t.is(parseDuration('1w'), 7 * 86400);
  t.throws(() => parseDuration('7x'));
});

test('pool device names double the dashes of VG and pool names', (t) => {
  t.deepEqual(poolDevices('vg0', 'pool'), { tmeta: '/dev/mapper/vg0-pool_tmeta', tpool: 'vg0-pool-tpool' });
  t.deepEqual(poolDevices('my-vg', 'thin-pool'), { tmeta: '/dev/mapper/my--vg-thin--pool_tmeta', tpool: 'my--vg-thin--pool-tpool' });
});

const ws = new Workspace('blkdelta-incr-');
test.after.always(() => ws.cleanup());

test('engine with ranges: only those blocks are read on both ends and written; outside stays as it was', async (t) => {
  const { src, dst } = ws.pair(8 * MiB);
  touchBlocks(src, 4096, [10, 11, 300, 1500, 2000]);
  const s = await sync(src, dst, { ranges: [[300, 1], [10, 4], [1500, 1]] });
  t.like(s, { blocksCompared: 6, blocksDiffering: 4, blocksWritten: 4, bytesReadSource: 6 * 4096, bytesReadTarget: 6 * 4096 });
  t.is(s.fingerprint, undefined, 'a ranged run has no whole-device fingerprint');
  for (const b of [10, 11, 300, 1500]) t.deepEqual(readAt(dst, b * 4096, 4096), readAt(src, b * 4096, 4096));
  t.notDeepEqual(readAt(dst, 2000 * 4096, 4096), readAt(src, 2000 * 4096, 4096), 'block 2000 is outside the ranges');
  const rest = await sync(src, dst);
  t.like(rest, { blocksDiffering: 1 });
  t.is(sha256(dst), sha256(src));
});

test('engine with ranges: more than a chunk per range, ranges past the compared size clipped; patch mode refused', async (t) => {
  const { src, dst } = ws.pair(4 * MiB);
  touchBlocks(src, 4096, [0, 255, 256, 700, 1023]);
  const s = await sync(src, dst, { ranges: [[0, 800], [1000, 100]] });
  t.like(s, { blocksCompared: 824, blocksDiffering: 5, bytesReadSource: 824 * 4096, bytesReadTarget: 824 * 4096 });
  t.is(sha256(dst), sha256(src));
  const err = await t.throwsAsync(sync(src, dst, { mode: 'patch', patchOut: ws.fresh('p.patch'), ranges: [[0, 1]] }));
  t.is((err as BlkError).code, ExitCode.USAGE);
});

test('engine with a sample: compared first, equal → the ranges are written and sampleDiffering is 0', async (t) => {
  const { src, dst } = ws.pair(4 * MiB);
  touchBlocks(src, 4096, [10, 300]);
  const s = await sync(src, dst, { ranges: [[10, 1], [300, 1]], sample: [[5, 1], [600, 3]] });
  t.like(s, { blocksCompared: 6, blocksDiffering: 2, blocksWritten: 2, sampleDiffering: 0, bytesReadSource: 6 * 4096, bytesReadTarget: 6 * 4096, comparedBytes: 6 * 4096 });
  t.is(sha256(dst), sha256(src));
});

test('engine with a sample: a differing sample block ends the session before anything is written (SampleDiffers)', async (t) => {
  const { src, dst } = ws.pair(4 * MiB);
  touchBlocks(src, 4096, [10, 601]);
  const before = sha256(dst);
  const err = await t.throwsAsync(sync(src, dst, { ranges: [[10, 1]], sample: [[5, 1], [600, 3]] }));
  t.true(err instanceof SampleDiffers, String(err));
  t.like(err as SampleDiffers, { differing: 1, sampled: 4, bytesRead: 4 * 4096 });
  t.regex(err!.message, /^1 of 4 sampled blocks outside the changed ranges differ/);
  t.is(sha256(dst), before, 'block 10 (a changed range) was not written either');
});

// ---- options, config keys, the base record, lvs thin ids ----
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { incrementalOf, type SnapshotArgs } from '../src/lvm/sync-options.js';
import { parseConfig } from '../src/jobs/config.js';
import { readBaseRecord, recordProblem, writeBaseRecord, type BaseRecord } from '../src/lvm/base-record.js';
import { parseThinIds } from '../src/lvm/incremental.js';

type A = SnapshotArgs & { src?: string; dst?: string };
const refused = test.macro({
  exec(t: ExecutionContext, a: A, mode: string, mention: string) {
    const err = t.throws(() => incrementalOf(a, mode, 4096, '/dev/bk/x'), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err!.message.includes(mention), err!.message);
  },
  title: (_t, a: A, mode: string, mention: string) => `sync ${JSON.stringify(a)} (${mode}) refused: ${mention}`,
});
test(refused, { incremental: true, src: 'a', dst: 'b' }, 'write', '--incremental needs --snapshot VG/LV');
test(refused, { incremental: true, snapshot: 'root@src:vg0/data', src: '/dev/bk/x', 'pool-max-fill': 50 }, 'write', 'snapshots under its own policy');
test(refused, { incremental: true, snapshot: 'vg0/data', src: '/dev/bk/x' }, 'dry-run', 'only when writing the target');
test(refused, { incremental: true, snapshot: 'vg0/data', src: '/dev/bk/x', 'snapshot-size': '1G' }, 'write', 'needs a thin snapshot');
test(refused, { incremental: true, snapshot: 'vg0/data', src: '/dev/bk/x', 'sample-blocks': -1 }, 'write', '--sample-blocks must be');
test(refused, { incremental: true, snapshot: 'vg0/data', src: '/dev/bk/x', 'full-compare-every': '7x' }, 'write', '--full-compare-every');
test(refused, { snapshot: 'vg0/data', src: '/dev/bk/x', 'sample-blocks': 5 }, 'write', '--sample-blocks needs --incremental');

test('sync --incremental options make the spec; without --incremental none', (t) => {
  t.is(incrementalOf({ snapshot: 'vg0/data', src: '/dev/bk/x' }, 'write', 4096, '/dev/bk/x'), undefined);
  t.like(incrementalOf({ incremental: true, snapshot: 'vg0/data', src: '/dev/bk/x', 'full-compare-every': '7d', 'sample-blocks': 0, 'state-dir': '/s' }, 'write', 65536, '/dev/bk/x'),
    { vg: 'vg0', lv: 'data', job: 'vg0-data', stateDir: '/s', target: '/dev/bk/x', blockSize: 65536, sampleBlocks: 0, fullCompareEveryS: 7 * 86400 });
  // a pull: the server keeps the base, this host the record
  t.like(incrementalOf({ incremental: true, snapshot: 'root@src:vg0/data', src: '/dev/bk/x' }, 'write', 4096, '/dev/bk/x'),
    { vg: 'vg0', lv: 'data', job: 'vg0-data', target: '/dev/bk/x', blockSize: 4096 });
});

const JOB = '[jobs.thin]\nsource = "/dev/vg0/thin"\ntarget = "/dev/bk/thin"\n';
test('config: incremental keys read; refusals name the key', (t) => {
  const cfg = parseConfig(`${JOB}snapshot = true\nincremental = true\nsample_blocks = 64\nfull_compare_every = "7d"\n`, 'b.toml');
  t.deepEqual(cfg.jobs[0]!.incremental, { sampleBlocks: 64, fullCompareEveryS: 7 * 86400 });
  const pull = parseConfig(`[jobs.p]\nsource = "root@h:/dev/vg0/thin"\ntarget = "/dev/bk/thin"\nsnapshot = true\nincremental = true\n`, 'b.toml');
  t.truthy(pull.jobs[0]!.incremental, 'a pull: the server keeps the base');
  t.like(pull.jobs[0], { snapshot: { lv: 'vg0/thin', remote: true } });
  const bad = (text: string, want: RegExp) => {
    const err = t.throws(() => parseConfig(text, 'b.toml'), { instanceOf: BlkError });
    t.regex(err!.message, want);
  };
  bad(`${JOB}incremental = true\n`, /jobs\.thin\.incremental: needs snapshot = "VG\/LV"/);
  bad(`${JOB}snapshot = true\nsnapshot_size = "1G"\nincremental = true\n`, /jobs\.thin\.snapshot_size: incremental runs need a thin snapshot/);
  bad(`${JOB}snapshot = true\nsample_blocks = 3\n`, /jobs\.thin\.sample_blocks: needs incremental = true/);
  bad(`${JOB}snapshot = true\nincremental = true\nsample_block = 3\n`, /did you mean sample_blocks\?/);
  bad(`${JOB}snapshot = true\nincremental = true\nsample_blocks = 100001\n`, /jobs\.thin\.sample_blocks: 100001 is above the maximum 100000/);
  bad(`${JOB}snapshot = true\nincremental = true\nsample_blocks = -1\n`, /jobs\.thin\.sample_blocks: -1 is below the minimum 0/);
});

test('base record: written atomically and read back; missing and malformed records say why', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-base-'));
  try {
    t.regex(readBaseRecord(dir, 'j').why ?? '', /no base recorded in .*j\.base\.json \(the first incremental run of job j\)/);
    const r: BaseRecord = { version: 1, job: 'j', target: '/dev/bk/x', base: { name: 'b', uuid: 'u', thinId: 7 }, blockSize: 4096, madeAt: 'now', pending: [[1, 2]] };
    writeBaseRecord(dir, r);
    t.deepEqual(readBaseRecord(dir, 'j').record, r);
    writeFileSync(join(dir, 'j.base.json'), '{"version":1,');
    t.regex(readBaseRecord(dir, 'j').why ?? '', /unusable: not JSON/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const rec = test.macro({
  exec(t: ExecutionContext, r: unknown, want: RegExp) {
    t.regex(String(recordProblem(JSON.stringify(r))), want);
  },
  title: (_t, _r: unknown, want: RegExp) => `base record refused: ${want.source}`,
});
const OK = { version: 1, job: 'j', target: 't', base: null, blockSize: 4096, madeAt: 'x' };
test(rec, { ...OK, version: 2 }, /version 2 is not 1/);
test(rec, { ...OK, target: undefined }, /job, target or madeAt missing/);
test(rec, { ...OK, blockSize: 0 }, /blockSize missing/);
test(rec, { ...OK, base: { name: 'b' } }, /base is not/);
test(rec, { ...OK, pending: [[3, 1], [1, 1]] }, /pending is not/);
test(rec, { ...OK, pending: 'half' }, /pending is not "full"/);

test('lvs thin ids (real output): thin LVs only, with uuid, thin_id and size', (t) => {
  const ids = parseThinIds(readFileSync(new URL('../../fixtures/lvm/lvs-thin-ids.json', import.meta.url), 'utf8'));
  t.deepEqual([...ids.keys()].sort(), ['base', 'new', 'src']);
  t.like(ids.get('base'), { uuid: 'SJ89tf-Enx3-ZJi0-xH1l-qI6Y-F6gQ-ODPDfO', thinId: 2 });
  t.is(ids.get('new')!.thinId, 3);
});

test('too scattered for one run: more than MAX_RANGES ranges is a full compare with its reason; the limit fits one frame', (t) => {
  const at = (n: number): BlockRange[] => Array.from({ length: n }, (_, i) => [i * 2, 1] as BlockRange);
  t.is(tooScattered(at(MAX_RANGES)), undefined);
  t.regex(tooScattered(at(MAX_RANGES + 1)) ?? '', /scattered over 200001 ranges, more than the 200000 a run carries/);
  t.true(JSON.stringify(at(MAX_RANGES).map(([a, n]) => [a + 2 ** 40, n])).length < MAX_FRAME / 2, 'with block numbers of a 4 PiB device');
});

// ---- the metadata snapshot's marker: which process holds it (a reused pid or a past boot is gone) ----
import { markerHolder } from '../src/lvm/base-lvm.js';
import { stillRunning } from '../src/locks/proc.js';

const marker = test.macro({
  exec(t: ExecutionContext, text: string, want: ReturnType<typeof markerHolder>) {
    t.deepEqual(markerHolder(text), want);
  },
  title: (title) => `metadata snapshot marker: ${title}`,
});
test('a bare pid (older versions)', marker, '1234\n', { pid: 1234 });
test('a process identity', marker, '{"pid":1234,"startTicks":99,"bootId":"b"}\n', { pid: 1234, startTicks: 99, bootId: 'b' });
test('empty', marker, '', null);
test('garbage', marker, 'x; rm -rf /', null);
test('JSON null', marker, 'null', null);
test('pid 0', marker, '{"pid":0}', null);
test('pid negative', marker, '{"pid":-5}', null);
test('pid a string', marker, '{"pid":"12"}', null);
test('pid huge', marker, '{"pid":1e300}', null);
test('startTicks a string is ignored', marker, '{"pid":7,"startTicks":"x","bootId":3}', { pid: 7 });
test('metadata snapshot marker: a pid reused since (other start time) or from a past boot is not the holder', (t) => {
  const self = markerHolder(JSON.stringify({ pid: process.pid, startTicks: 1, bootId: 'x' }))!;
  t.false(stillRunning(self), 'another boot id');
  t.true(stillRunning(markerHolder(String(process.pid))!), 'a bare pid that is alive');
});
