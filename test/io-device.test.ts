// src/io: the sysfs reader fails closed for targets (a read error other than ENOENT refuses, where
// it used to read as "no holders" / "not read-only"), on a sysfs tree of the test's own made
// with real files whose reads fail (EISDIR, ENOTDIR); the kernel names of a device-mapper device
// that an allow list matches; the open-then-check of openTarget on real files.
import test from 'ava';
import fs from 'node:fs';
import { join } from 'node:path';
import { BlkError, ExitCode } from '../src/errors.js';
import { lvmName, namesOf, openTarget, writeRefusal } from '../src/io/device.js';
import { Sysfs } from '../src/io/sysfs.js';
import { Workspace, randomFile } from './helpers/engine-fixture.js';

const ws = new Workspace('blkdelta-io-');
test.after.always(() => ws.cleanup());

const MM = '250:0';
const RDEV = 250 << 8; // makedev(250, 0)
const blockStat = { isFile: () => false, isBlockDevice: () => true, rdev: RDEV, mode: 0o60660 } as unknown as fs.Stats;

/** A sysfs tree: dev/block/250:0 with the given entries (string: a file; null: a directory). */
function sysTree(entries: Record<string, string | null>): string {
  const root = ws.fresh('sys');
  const dev = join(root, 'dev/block', MM);
  fs.mkdirSync(dev, { recursive: true });
  fs.mkdirSync(join(root, 'block'));
  for (const [name, content] of Object.entries(entries)) {
    const p = join(dev, name);
    fs.mkdirSync(join(p, '..'), { recursive: true });
    if (content === null) fs.mkdirSync(p);
    else fs.writeFileSync(p, content);
  }
  return root;
}

const failsClosed = test.macro({
  exec(t, entries: Record<string, string | null>, words: RegExp) {
    const root = sysTree(entries);
    const err = t.throws(() => writeRefusal('/dev/fake', blockStat, new Sysfs(true, root)), { instanceOf: BlkError });
    t.is(err!.code, ExitCode.TARGET_REFUSED);
    t.regex(err!.message, words);
    t.regex(err!.message, /so the target's state cannot be checked/);
    t.notThrows(() => writeRefusal('/dev/fake', blockStat, new Sysfs(false, root)), 'a lenient reader (sources) reads it as absent');
  },
  title: (name) => `a target fails closed when ${name}`,
});
test('ro cannot be read (EISDIR)', failsClosed, { size: '2048', ro: null }, /cannot read .*250:0\/ro \(EISDIR/);
test('holders cannot be listed (ENOTDIR)', failsClosed, { size: '2048', ro: '0', holders: 'not a directory' }, /cannot read .*250:0\/holders \(ENOTDIR/);

const verdict = test.macro({
  exec(t, entries: Record<string, string | null>, want: RegExp | undefined) {
    const why = writeRefusal('/dev/fake', blockStat, new Sysfs(true, sysTree(entries)));
    if (want) t.regex(why ?? '', want);
    else t.is(why, undefined);
  },
  title: (name) => `writeRefusal: ${name}`,
});
test('absent attributes (ENOENT) are not errors', verdict, { size: '2048' }, undefined);
test('ro 0, no holders', verdict, { size: '2048', ro: '0', holders: null }, undefined);
test('ro 1', verdict, { size: '2048', ro: '1', holders: null }, /the block device is read-only/);
test('a holder', verdict, { size: '2048', ro: '0', holders: null, 'holders/dm-3': '' }, /in use by dm-3/);

/** A sysfs tree whose /sys/block is a file (readdir: ENOTDIR), and a 4 KiB image file. */
function unlistableLoops(): { root: string; img: string } {
  const root = ws.fresh('sys');
  fs.mkdirSync(join(root, 'dev/block'), { recursive: true });
  fs.writeFileSync(join(root, 'block'), 'not a directory');
  const img = ws.fresh('t.img');
  randomFile(img, 4096);
  return { root, img };
}

test('a file target: /sys/block that cannot be listed fails closed', (t) => {
  const { root, img } = unlistableLoops();
  const st = fs.statSync(img);
  const err = t.throws(() => writeRefusal(img, st, new Sysfs(true, root)), { instanceOf: BlkError });
  t.regex(err!.message, /cannot read .*\/block \(ENOTDIR/);
  t.is(writeRefusal(img, st, new Sysfs(false, root)), undefined);
});

test('openTarget names the target when sysfs fails closed, and writes nothing', (t) => {
  const { root, img } = unlistableLoops();
  const err = t.throws(() => openTarget(img, { write: true, sysRoot: root }), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.TARGET_REFUSED);
  t.regex(err!.message, new RegExp(`^target ${img} refused: cannot read`));
  t.notThrows(() => openTarget(img, { write: false, sysRoot: root }).close(), 'reading needs no refusal checks');
});

const lvm = test.macro({
  exec: (t, dm: string, want: { vg: string; lv: string } | undefined) => t.deepEqual(lvmName(dm), want),
  title: (_p, dm) => `lvmName ${JSON.stringify(dm)}`,
});
test(lvm, 'vg0-backup', { vg: 'vg0', lv: 'backup' });
test(lvm, 'my--vg-my--lv', { vg: 'my-vg', lv: 'my-lv' });
test(lvm, 'vg-lv--tmeta', { vg: 'vg', lv: 'lv-tmeta' });
test(lvm, 'a---b', { vg: 'a-', lv: 'b' });
test(lvm, 'nodash', undefined);
test(lvm, 'a-b-c', undefined);
test(lvm, '-lv', undefined);
test(lvm, 'vg-', undefined);
test(lvm, '', undefined);

test('namesOf: an LVM volume answers to its resolved path, /dev/mapper/NAME and /dev/VG/LV from the kernel', (t) => {
  const root = sysTree({ size: '2048', 'dm/name': 'backup-web01\n', 'dm/uuid': 'LVM-abcdef\n' });
  t.deepEqual(namesOf('/dev/dm-3', blockStat, new Sysfs(false, root)), ['/dev/dm-3', '/dev/mapper/backup-web01', '/dev/backup/web01']);
  const crypt = sysTree({ size: '2048', 'dm/name': 'luks-1', 'dm/uuid': 'CRYPT-LUKS2-x' });
  t.deepEqual(namesOf('/dev/dm-4', blockStat, new Sysfs(false, crypt)), ['/dev/dm-4', '/dev/mapper/luks-1'], 'not LVM: no /dev/VG/LV name');
  t.deepEqual(namesOf('/dev/loop0', blockStat, new Sysfs(false, sysTree({ size: '2048' }))), ['/dev/loop0']);
  t.deepEqual(namesOf('/srv/a.img', undefined), ['/srv/a.img']);
});

test('openTarget: realPath is what was opened, symlinks resolved', (t) => {
  const img = ws.fresh('real.img');
  randomFile(img, 4096);
  const link = ws.fresh('link.img');
  fs.symlinkSync(img, link);
  const seen: string[][] = [];
  const dev = openTarget(link, { write: true, allow: (names) => seen.push(names) });
  try {
    t.is(dev.realPath, fs.realpathSync(img));
    t.deepEqual(seen, [[fs.realpathSync(img)], [fs.realpathSync(img)]], 'checked before the open and on the opened fd');
  } finally {
    dev.close();
  }
});
