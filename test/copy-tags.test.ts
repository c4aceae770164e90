// Copy labels as LVM tags (src/lvm/copy-tags.ts) and finding copies by tag (src/lvm/copies.ts). Pure.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { contentTags, dataTag, fpTag, labelsOf, ofTag, retagArgv, stampOf } from '../src/lvm/copy-tags.js';
import { copiesOf, livePoint, lvTime } from '../src/lvm/copies.js';
import { decodeAttr, type LvRow } from '../src/lvm/report.js';
import { BlkError } from '../src/errors.js';

const FP = { algo: 'xxh64-blocks', seed: '18446744073709551615', blockSize: 4096, size: 16777216, digest: '0123456789abcdef' };

test('tags round-trip and stay within the LVM tag alphabet', (t) => {
  const tags = [ofTag('data'), dataTag(Date.parse('2026-11-27T13:22:17.123Z')), fpTag(FP)];
  t.deepEqual(tags, ['blkdelta-of:data', 'blkdelta-data:20261127T132217Z',
    'blkdelta-fp:xxh64-blocks:18446744073709551615:4096:16777216:0123456789abcdef']);
  for (const tag of tags) t.regex(tag, /^[A-Za-z0-9_+.\-/=!:&#]{1,1024}$/);
  t.deepEqual(labelsOf(tags), { of: 'data', dataTime: Date.parse('2026-11-27T13:22:17Z'), fingerprint: FP });
  t.is(stampOf(0), '19700101T000000Z');
});

test('a fingerprint that cannot be a tag is refused', (t) => {
  t.throws(() => fpTag({ ...FP, algo: 'a b' }), { instanceOf: BlkError, message: /fingerprint cannot be an LVM tag/ });
});

const labels = test.macro({
  exec: (t: ExecutionContext, tags: string[], want: ReturnType<typeof labelsOf>) => t.deepEqual(labelsOf(tags), want),
  title: (_t, tags: string[]) => `labels of ${JSON.stringify(tags)}`,
});
const none = { of: null, dataTime: null, fingerprint: null };
test(labels, [], none);
test(labels, ['blkdelta-data:2026-11-27'], none);
test(labels, ['blkdelta-data:20261327T000000Z'], none); // month 13
test(labels, ['blkdelta-data:20261127T132217'], none); // no Z
test(labels, ['blkdelta-fp:xxh64-blocks:1:4096:100:0123456789ABCDEF'], none); // upper case digest
test(labels, ['blkdelta-fp:xxh64-blocks:1:0:100:0123456789abcdef'], none); // block size 0
test(labels, ['blkdelta-fp:xxh64-blocks:-1:4096:100:0123456789abcdef'], none); // negative seed
test(labels, ['blkdelta-fp:xxh64-blocks:1:4096:99999999999999999:0123456789abcdef'], none); // unsafe size
test(labels, ['blkdelta-fp:xxh64-blocks:1:4096:100:0123456789abcde'], none); // 15 digits
test(labels, ['blkdelta-of:'], { ...none, of: '' });

test('contentTags and retagArgv', (t) => {
  const tags = ['blkdelta-data:20261127T132217Z', 'other', 'blkdelta-fp:x:1:2:3:0123456789abcdef', 'blkdelta-of:x'];
  t.deepEqual(contentTags(tags), [tags[0], tags[2]]);
  t.is(retagArgv('vg0', 'lv', [], []), null);
  t.deepEqual(retagArgv('vg0', 'lv', ['a'], ['b', 'c']), ['lvchange', '-y', '--deltag', 'b', '--deltag', 'c', '--addtag', 'a', 'vg0/lv']);
});

const row = (name: string, o: Partial<Omit<LvRow, 'attr'>> & { attr?: string } = {}): LvRow => ({
  vg: 'vg0', name, path: `/dev/vg0/${name}`, origin: '', pool: 'pool', snapPercent: null, dataPercent: null, metadataPercent: null,
  size: 1 << 24, originSize: null, tags: [], time: '2026-11-27 13:00:00 +0000', devno: null, ...o, attr: decodeAttr(o.attr ?? 'Vwi-a-tz--'),
});
const T = ['blkdelta', 'blkdelta-target', 'blkdelta-job:j'];

test('copies are found by their tags, not by origin (a rollback leaves no orphan)', (t) => {
  const live = row('data');
  const rows = [
    live,
    row('a', { origin: '', tags: [...T, 'blkdelta-of:data'], time: '2026-11-27 10:00:00 +0000' }), // origin lost after a merge
    row('b', { origin: 'data', tags: [...T, 'blkdelta-of:data', 'blkdelta-pending'], time: '2026-11-27 12:00:00 +0000' }),
    row('legacy', { origin: 'data', tags: T, time: '2026-11-27 09:00:00 +0000' }), // made before blkdelta-of
    row('other-lv', { origin: 'data', tags: [...T, 'blkdelta-of:data2'] }),
    row('other-job', { origin: 'data', tags: ['blkdelta', 'blkdelta-target', 'blkdelta-job:k', 'blkdelta-of:data'] }),
    row('untagged', { origin: 'data', tags: ['blkdelta-of:data', 'blkdelta-job:j', 'blkdelta-target'] }),
    row('cow', { origin: 'data', attr: 'swi-a-s---', snapPercent: 100, size: 1 << 20, originSize: 1 << 24, tags: [...T, 'blkdelta-of:data'], time: '2026-11-27 11:00:00 +0000' }),
  ];
  const cs = copiesOf(rows, live, 'j');
  t.deepEqual(cs.map((c) => c.id), ['b', 'cow', 'a', 'legacy']);
  t.deepEqual(cs.map((c) => [c.kind, c.pending, c.torn, c.size]), [['thin', true, false, 1 << 24], ['cow', false, true, 1 << 24],
    ['thin', false, false, 1 << 24], ['thin', false, false, 1 << 24]]);
});

test('the live target is a point only while it carries a data label', (t) => {
  t.is(livePoint(row('data')), null);
  t.deepEqual(livePoint(row('data', { tags: ['blkdelta-data:20261127T132217Z'] })),
    { id: 'data', dataTime: Date.parse('2026-11-27T13:22:17Z'), created: Date.parse('2026-11-27T13:22:17Z'), live: true });
});

const time = test.macro({
  exec: (t: ExecutionContext, s: string, want: number) => t.is(lvTime(s), want),
  title: (_t, s: string) => `lv_time ${JSON.stringify(s)}`,
});
test(time, '2026-11-27 13:22:17 +0000', Date.parse('2026-11-27T13:22:17Z'));
test(time, '2026-11-27 14:22:17 +0100', Date.parse('2026-11-27T13:22:17Z'));
test(time, '2026-03-29 03:30:00 +0200', Date.parse('2026-03-29T01:30:00Z'));
test(time, '', 0);
test(time, 'yesterday', 0);
