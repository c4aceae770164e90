// Parsers table-tested with real lvs outputs (fixtures/lvm, from the VM transcript).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import {
  decodeAttr, jobOf, ownSnapshots, parseLvs, roleOf, snapshotFill, snapshotKind, snapshotProblem, type LvRow,
} from '../src/lvm/report.js';
import { BlkError, ExitCode } from '../src/errors.js';

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/lvm/${name}.json`, import.meta.url), 'utf8');
const row = (file: string, name: string): LvRow => {
  const r = parseLvs(fixture(file)).find((x) => x.name === name);
  if (!r) throw new Error(`${name} not in ${file}`);
  return r;
};

const attr = test.macro({
  exec(t: ExecutionContext, raw: string, want: Partial<ReturnType<typeof decodeAttr>>) {
    t.like(decodeAttr(raw), want);
  },
  title: (_g, raw: string) => `lv_attr ${raw}`,
});
test(attr, 'owi-aos---', { volumeType: 'o', active: true, open: true, invalid: false, thin: false, skipActivation: false });
test(attr, 'swi-a-s---', { volumeType: 's', active: true, open: false, invalid: false });
test(attr, 'swi-I-s---', { volumeType: 's', active: false, invalid: true });
test(attr, 'Vwi---tz-k', { volumeType: 'V', active: false, thin: true, skipActivation: true });
test(attr, 'Vwi-a-tz-k', { volumeType: 'V', active: true, thin: true, skipActivation: true });
test(attr, 'twi-aotzD-', { volumeType: 't', active: true, open: true, thin: true });
test(attr, '-wi-a-----', { volumeType: '-', active: true, thin: false });

test('lv_attr that is not 10 characters is an error naming it', (t) => {
  const err = t.throws(() => decodeAttr('swi-a'), { instanceOf: BlkError });
  t.is(err?.code, ExitCode.SNAPSHOT);
  t.true(err?.message.includes('"swi-a"'));
});

const parsed = test.macro({
  exec(t: ExecutionContext, file: string, name: string, want: Partial<LvRow>, kind: 'cow' | 'thin' | null, fill: number | null) {
    const r = row(file, name);
    t.like(r, want);
    t.is(snapshotKind(r), kind);
    t.is(snapshotFill(r), fill);
  },
  title: (_g, file: string, name: string) => `${file}: ${name}`,
});
test(parsed, 'healthy-cow', 'lv', { origin: '', snapPercent: null, tags: [], time: '2026-11-21 08:04:30 +0000' }, null, null);
test(parsed, 'healthy-cow', 'snap', { origin: 'lv', snapPercent: 0.12, tags: ['backup', 'ts:2024-01-01'] }, 'cow', 0.12);
test(parsed, 'healthy-cow-bytes', 'snap', { size: 33554432, originSize: 268435456 }, 'cow', 0.12);
test(parsed, 'overflowed-cow', 'snap', { snapPercent: 100 }, 'cow', 100);
test(parsed, 'after-merge', 'lv', { origin: '' }, null, null);
test(parsed, 'thin-snapshot-skip', 'tsnap', { origin: 'thin', snapPercent: null, tags: ['backup'] }, 'thin', null);
test(parsed, 'thin-all', 'tsnap', { pool: 'pool', origin: 'thin' }, 'thin', null);
test(parsed, 'thin-all', 'thin', { pool: 'pool', origin: '', dataPercent: 1.56 }, null, null);
test(parsed, 'thin-all', '[pool_tdata]', { pool: '' }, null, null);
test(parsed, 'thin-activated', 'tsnap', { dataPercent: 1.56 }, 'thin', null);
test(parsed, 'cow-of-thin', 'bigsnap', { origin: 'thin', snapPercent: 0 }, 'cow', 0);
test(parsed, 'thin-pool-full', 'small', { dataPercent: 100 }, null, null);
test(parsed, 'vg-inactive', 'toobig', { snapPercent: null, origin: 'lv' }, 'cow', null);

test('rows have no device number unless lv_kernel_major/minor are reported', (t) => {
  t.is(row('healthy-cow', 'lv').devno, null);
  const r = parseLvs('{"report":[{"lv":[{"lv_name":"a","lv_attr":"-wi-a-----","lv_kernel_major":"254","lv_kernel_minor":"3"},' +
    '{"lv_name":"b","lv_attr":"-wi-------","lv_kernel_major":"-1","lv_kernel_minor":"-1"}]}]}');
  t.is(r[0]?.devno, '254:3');
  t.is(r[1]?.devno, null);
});

const problem = test.macro({
  exec(t: ExecutionContext, file: string, name: string, maxFill: number | undefined, want: RegExp | null) {
    const p = snapshotProblem(row(file, name), maxFill);
    if (want === null) t.is(p, null);
    else t.regex(p ?? '', want);
  },
  title: (_g, file: string, name: string, maxFill?: number) => `problem ${file}/${name} max ${maxFill ?? '-'}`,
});
test(problem, 'healthy-cow', 'snap', undefined, null);
test(problem, 'healthy-cow', 'snap', 50, null);
test(problem, 'healthy-cow', 'snap', 0.1, /0\.12% full, over --snapshot-max-fill 0\.1%/);
test(problem, 'overflowed-cow', 'snap', undefined, /overflowed and is invalid \(lv_attr swi-I-s---\)/);
test(problem, 'thin-activated', 'tsnap', 1, null);

const bad = test.macro({
  exec(t: ExecutionContext, text: string, mention: RegExp) {
    const err = t.throws(() => parseLvs(text), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.SNAPSHOT);
    t.regex(err?.message ?? '', mention);
  },
  title: (_g, text: string) => `parseLvs rejects ${JSON.stringify(text.slice(0, 30))}`,
});
test(bad, '  Volume group "vg9" not found', /not JSON: Volume group/);
test(bad, '{"rep":[]}', /no "report" array/);
test(bad, '{"report":[{"vg":[]}]}', /no "lv" array/);
test(bad, '{"report":[{"lv":[{"lv_name":"x","lv_attr":"bogus"}]}]}', /lv_attr "bogus"/);

test('an empty report is no rows', (t) => {
  t.deepEqual(parseLvs('{"report":[{"lv":[]}]}'), []);
});

const tagged = (name: string, tags: string[], origin = 'data'): string =>
  `{"lv_name":"${name}","lv_attr":"swi-a-s---","origin":"${origin}","lv_tags":"${tags.join(',')}"}`;
const mixed = parseLvs(`{"report":[{"lv":[${[
  tagged('mine', ['blkdelta', 'blkdelta-source', 'blkdelta-job:a']),
  tagged('other-job', ['blkdelta', 'blkdelta-source', 'blkdelta-job:b']),
  tagged('target', ['blkdelta', 'blkdelta-target', 'blkdelta-job:a']),
  tagged('foreign', ['backup', 'blkdelta-job:a']),
  tagged('lookalike', ['blkdelta-source', 'blkdelta-job:a']),
  tagged('other-origin', ['blkdelta', 'blkdelta-source', 'blkdelta-job:a'], 'home'),
].join(',')}]}]}`);
const own = test.macro({
  exec(t: ExecutionContext, f: Parameters<typeof ownSnapshots>[1], want: string[]) {
    t.deepEqual(ownSnapshots(mixed, f).map((r) => r.name), want);
  },
  title: (_g, f?: object) => `ownSnapshots ${JSON.stringify(f)}`,
});
test(own, {}, ['mine', 'other-job', 'target', 'other-origin']);
test(own, { role: 'source', job: 'a' }, ['mine', 'other-origin']);
test(own, { role: 'source', job: 'a', origin: 'data' }, ['mine']);
test(own, { role: 'target' }, ['target']);
test(own, { job: 'zzz' }, []);

test('job and role of a row', (t) => {
  t.deepEqual(mixed.map((r) => [jobOf(r), roleOf(r)]), [
    ['a', 'source'], ['b', 'source'], ['a', 'target'], ['a', ''], ['a', ''], ['a', 'source'],
  ]);
});

test('removeOwned refuses an LV without the blkdelta tag before running lvm', async (t) => {
  const { removeOwned } = await import('../src/lvm/lvm.js');
  for (const r of mixed.filter((x) => !x.tags.includes('blkdelta'))) {
    const err = await t.throwsAsync(removeOwned(r, { retryDelaysMs: [] }), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.SNAPSHOT);
    t.regex(err?.message ?? '', new RegExp(`refusing to remove /${r.name}: it has no "blkdelta" tag`));
  }
});
