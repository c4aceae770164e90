import test from 'ava';
import type { ExecutionContext } from 'ava';
import { checkDevice, makePolicy, type ServerPolicy } from '../src/server/policy.js';
import { BlkError, ExitCode } from '../src/errors.js';

const backup: ServerPolicy = { allow: ['/dev/backup/*', '/srv/img/disk[0-9].raw', '/tmp/x/?.img'], readOnly: false };
const open: ServerPolicy = { allow: [], readOnly: false };
const ro: ServerPolicy = { allow: ['/dev/vg/*'], readOnly: true };

const allows = test.macro({
  exec(t: ExecutionContext, policy: ServerPolicy, path: string, write: boolean) {
    t.notThrows(() => checkDevice(policy, path, write));
  },
  title: (given, _p, path: string, write: boolean) => `${given ?? ''} allows ${write ? 'write' : 'read'} of ${JSON.stringify(path)}`.trim(),
});

const refuses = test.macro({
  exec(t: ExecutionContext, policy: ServerPolicy, path: string, write: boolean, fragment: string) {
    const err = t.throws(() => checkDevice(policy, path, write), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.PERMISSION);
    t.true(err?.message.includes(fragment), err?.message);
  },
  title: (given, _p, path: string, write: boolean) => `${given ?? ''} refuses ${write ? 'write' : 'read'} of ${JSON.stringify(path)}`.trim(),
});

test('open', allows, open, '/dev/sda', true);
test('open', allows, open, '/', false);
test(allows, backup, '/dev/backup/lv1', true);
test(allows, backup, '/dev/backup/a;touch pwned', true);
test(allows, backup, '/srv/img/disk7.raw', true);
test(allows, backup, '/tmp/x/a.img', false);
test('read-only', allows, ro, '/dev/vg/home', false);

test(refuses, backup, '/dev/backup/sub/lv', true, 'outside');
test(refuses, backup, '/dev/backup', true, 'outside');
test(refuses, backup, '/dev/sda', false, 'outside');
test(refuses, backup, '/srv/img/diskA.raw', true, 'outside');
test(refuses, backup, '/tmp/x/ab.img', true, 'outside');
test(refuses, backup, '/tmp/x//.img', true, "'//'");
test(refuses, backup, '/dev/backup/../sda', true, "'..'");
test(refuses, backup, '/dev/backup/./lv1', true, "'.'");
test(refuses, backup, '/dev/backup/lv1/', true, "ends with '/'");
test(refuses, backup, 'dev/backup/lv1', true, 'not absolute');
test(refuses, backup, '', true, 'empty');
test(refuses, backup, '/dev/backup/lv\n1', true, 'newline');
test(refuses, backup, '/dev/backup/lv\u00001', true, 'NUL');
test('open policy still checks the shape:', refuses, open, '/dev/../etc/shadow', false, "'..'");
test('read-only', refuses, ro, '/dev/vg/home', true, '--read-only');
test('read-only, outside', refuses, ro, '/dev/sda', false, 'outside');

const globs = test.macro({
  exec(t: ExecutionContext, glob: string, path: string, want: boolean) {
    const policy = { allow: [glob], readOnly: false };
    if (want) t.notThrows(() => checkDevice(policy, path, false));
    else t.throws(() => checkDevice(policy, path, false), { instanceOf: BlkError });
  },
  title: (_g, glob: string, path: string, want: boolean) => `glob ${glob} ${want ? 'matches' : 'does not match'} ${path}`,
});

test(globs, '/dev/mapper/vg-*', '/dev/mapper/vg-backup', true);
test(globs, '/dev/*/backup', '/dev/vg0/backup', true);
test(globs, '/dev/*', '/dev/vg0/backup', false);
test(globs, '/dev/sd[!a]', '/dev/sdb', true);
test(globs, '/dev/sd[!a]', '/dev/sda', false);
test(globs, '/dev/sd[^a]', '/dev/sda', false);
test(globs, '/dev/x[/]y', '/dev/x/y', false);
test(globs, '/img/a.raw', '/img/aXraw', false);
test(globs, '/img/(a)+', '/img/(a)+', true);
test(globs, '/img/\\*', '/img/*', true);
test(globs, '/img/\\*', '/img/a', false);

test('makePolicy validates globs up front', (t) => {
  t.deepEqual(makePolicy(['/dev/backup/*'], true), { allow: ['/dev/backup/*'], readOnly: true });
  t.deepEqual(makePolicy(undefined, undefined), { allow: [], readOnly: false });
  const rel = t.throws(() => makePolicy(['dev/*'], false), { instanceOf: BlkError });
  t.is(rel?.code, ExitCode.USAGE);
  t.true(rel?.message.includes('dev/*'));
  const open = t.throws(() => makePolicy(['/dev/sd[ab'], false), { instanceOf: BlkError });
  t.true(open?.message.includes("'['"));
});
