// Torn copies are not successes: a job whose source is an ext4 file system on a loop device,
// mounted read-write and written to, with no snapshot, records a "warning" ("copy may be torn"),
// `check` says WARNING, `config check` warns about the job, `sync` warns at its end. Mounted
// read-only, the same job is a plain success. Loop devices and mounts are undone in after.always.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode } from '../src/errors.js';
import type { JobState } from '../src/jobs/state.js';
import { tempDir } from './helpers/patch-fixture.js';
import { Resources, cleanupAll, requireBlockTools } from './helpers/engine-fixture.js';
import { BIN, runBlkdelta } from './helpers/jobs.js';
import { readFileSync } from 'node:fs';

const MiB = 1 << 20;
const SIZE = 32 * MiB;
const tmp = tempDir('blkdelta-torn-');
const res = new Resources();
const mnt = join(tmp.dir, 'mnt');
let dev = '';
let config = '';

test.before(async () => {
  requireBlockTools();
  writeFileSync(join(tmp.dir, 'src.img'), '');
  truncateSync(join(tmp.dir, 'src.img'), SIZE);
  writeFileSync(join(tmp.dir, 'dst.img'), '');
  truncateSync(join(tmp.dir, 'dst.img'), SIZE);
  dev = await res.attach(join(tmp.dir, 'src.img'));
  await res.run('mkfs.ext4', ['-q', '-F', '-b', '4096', dev]);
  config = join(tmp.dir, 'blkdelta.toml');
  writeFileSync(config, `state_dir = "${join(tmp.dir, 'state')}"\n\n[jobs.live]\nsource = "${dev}"\ntarget = "${join(tmp.dir, 'dst.img')}"\n`);
});
test.after.always(() => cleanupAll(res, tmp.dir));

const state = (): JobState => JSON.parse(readFileSync(join(tmp.dir, 'state', 'live.json'), 'utf8')) as JobState;

test.serial('mounted read-write and written, no snapshot: outcome warning, check WARNING, config check warns', async (t) => {
  await res.mount(dev, mnt);
  writeFileSync(join(mnt, 'data.bin'), randomBytes(4 * MiB));
  const cc = await runBlkdelta(['config', 'check', '--config', config]);
  t.is(cc.code, 0, cc.stderr);
  t.regex(cc.stderr, new RegExp(`warning: job live: source ${dev} is mounted read-write at ${mnt} and the job takes no snapshot: its copy may be torn`));

  const r = await runBlkdelta(['run', 'live', '--config', config]);
  t.is(r.code, ExitCode.OK, r.stderr);
  t.regex(r.stderr, /warning: job live: warning in .*copy may be torn/);
  const rec = state().runs[0]!;
  t.is(rec.outcome, 'warning');
  t.deepEqual(rec.warnings, [`copy may be torn: source ${dev} was mounted read-write at ${mnt} while it was read, and the job takes no snapshot`]);
  t.is(rec.targetState, 'consistent');
  t.false('sourceMountedRw' in rec, 'the engine field does not leak into the record');

  const check = await runBlkdelta(['check', 'live', '--config', config]);
  t.is(check.code, 1, check.stdout);
  t.regex(check.stdout, /^BLKDELTA WARNING - live: last run at \S+ completed with a warning: copy may be torn/);
  const status = await runBlkdelta(['status', 'live', '--config', config]);
  t.regex(status.stdout, /\nlive +warning .*copy may be torn/);

  const sync = await runBlkdelta(['sync', '--json', dev, join(tmp.dir, 'dst.img')]);
  t.is(sync.code, ExitCode.OK, sync.stderr);
  t.deepEqual((JSON.parse(sync.stdout) as { sourceMountedRw: string[] }).sourceMountedRw, [mnt]);
  t.regex(sync.stderr, new RegExp(`warning: copy may be torn: source ${dev} was mounted read-write at ${mnt}`));

  // pulled through the server (a stand-in remote shell runs it here): the server reports the mount
  const rsh = `sh -c 'shift 2; exec sh -c "$1"' rsh`;
  const pull = await runBlkdelta(['sync', '--json', '--rsh', rsh, '--remote-cmd', BIN, `localhost:${dev}`, join(tmp.dir, 'dst.img')]);
  t.is(pull.code, ExitCode.OK, pull.stderr);
  t.deepEqual((JSON.parse(pull.stdout) as { sourceMountedRw: string[] }).sourceMountedRw, [mnt]);
  t.regex(pull.stderr, new RegExp(`warning: copy may be torn: source ${dev} was mounted read-write at ${mnt}`));
  await res.umount(mnt);
});

test.serial('mounted read-only: a plain success, no warning anywhere', async (t) => {
  await res.mount(dev, mnt, 'ro');
  const cc = await runBlkdelta(['config', 'check', '--config', config]);
  t.is(cc.code, 0);
  t.notRegex(cc.stderr, /torn/);
  const r = await runBlkdelta(['run', 'live', '--config', config]);
  t.is(r.code, ExitCode.OK, r.stderr);
  const rec = state().runs[0]!;
  t.is(rec.outcome, 'success');
  t.is(rec.warnings, undefined);
  const check = await runBlkdelta(['check', 'live', '--config', config]);
  t.is(check.code, 0, check.stdout);
  await res.umount(mnt);
  const fsck = await res.run('fsck.ext4', ['-n', '-f', join(tmp.dir, 'dst.img')]).catch((e: Error) => e.message);
  t.notRegex(fsck, /failed/, 'a copy of a read-only mount is consistent');
});
