// A plain local sync loads neither the LVM runners (snapshots, incremental runs), nor the SSH and
// --rsh transports, nor the patch writer: they cost start-up CPU in every sync that does not use
// them. Run against a copy of the built tree without those modules: a local sync, a dry-run and a
// verify work as in the full tree; a command that needs one of them fails (not silently).
// Memory: 1 MiB files. The copy (dist/src, ~2 MiB) is removed in the teardown.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import { randomFile, sha256 } from './helpers/engine-fixture.js';
import { installWithout } from './helpers/partial-install.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'blkdelta-client-lazy-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const NOT_LOADED = [
  'lvm/snapshot.js', 'lvm/target-snapshot.js', 'lvm/incremental.js', 'lvm/base-lvm.js', 'lvm/lvm.js', 'engine/pull-incremental.js',
  'transport/ssh.js', 'transport/rsh.js', 'transport/knownhosts.js', 'patch/writer.js',
];
const BIN = installWithout(dir, 'install', NOT_LOADED);

const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });

test(`without ${NOT_LOADED.length} modules a plain sync needs none of, local commands work`, (t) => {
  const [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
  randomFile(a, MiB);
  randomFile(b, MiB);
  const dry = run(['sync', '--dry-run', a, b]);
  t.is(dry.status, ExitCode.DIFFERENT, dry.stderr);
  const sync = run(['sync', a, b]);
  t.is(sync.status, ExitCode.OK, sync.stderr);
  t.is(sha256(b), sha256(a));
  const verify = run(['verify', a, b]);
  t.is(verify.status, ExitCode.OK, verify.stderr);
});

test('a command that needs a missing module fails, and leaves the target as it was', (t) => {
  const [a, b] = [join(dir, 'c.img'), join(dir, 'd.img')];
  randomFile(a, MiB);
  randomFile(b, MiB);
  const before = sha256(b);
  const rows: [string, string[], RegExp][] = [
    ['--patch-out', ['sync', '--patch-out', join(dir, 'p.patch'), a, b], /patch\/writer\.js/],
    ['a remote target', ['sync', a, 'backup@127.0.0.1:/nonexistent.img'], /transport\/ssh\.js/],
    ['--rsh', ['sync', '--rsh', '/bin/false', a, '127.0.0.1:/x.img'], /transport\/rsh\.js/],
  ];
  for (const [name, args, missing] of rows) {
    const r = run(args);
    t.not(r.status, ExitCode.OK, name);
    t.regex(r.stderr, missing, name);
  }
  t.is(sha256(b), before);
});
