// `blkdelta history` refusals that need no LVM, through the real CLI: one row per bad input, with
// its exit code and the words of its message. Nothing is created on the target or the state dir.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBlkdelta } from './helpers/jobs.js';

const dir = mkdtempSync(join(tmpdir(), 'bd-history-cli-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const img = join(dir, 'a.img');
writeFileSync(img, Buffer.alloc(65536));
const cfg = join(dir, 'c.toml');
writeFileSync(cfg, `state_dir = "${dir}/state"
[jobs.file]
source = "${img}"
target = "${img}.dst"
target_snapshot = true
[jobs.remote]
source = "${img}"
target = "u@h:/dev/vg/x"
target_snapshot = true
[jobs.plain]
source = "${img}"
target = "${img}.dst"
`);
writeFileSync(`${img}.dst`, Buffer.alloc(65536));

const refused = test.macro({
  async exec(t: ExecutionContext, args: string[], code: number, words: RegExp) {
    const r = await runBlkdelta(['history', ...args]);
    t.is(r.code, code, r.stderr);
    t.regex(r.stderr, words);
    t.is(r.stdout, '');
    t.false(existsSync(join(dir, 'state', 'file.history.json')), 'no verify record written');
  },
  title: (_t, args: string[], code: number) => `history ${args.join(' ')} -> exit ${code}`,
});

test.serial(refused, ['list', 'nope', '--config', cfg], 15, /jobs\.nope: no such job \(defined: file, remote, plain\)/);
test.serial(refused, ['list', 'plain', '--config', cfg], 15, /job plain keeps no history: set target_snapshot = true/);
test.serial(refused, ['prune', 'plain', '--config', cfg], 15, /job plain keeps no history/);
test.serial(refused, ['list', 'file', '--rsh', 'ssh', '--config', cfg], 2, /--rsh and --remote-cmd are for a job whose target is remote; file's target \S+ is local/);
test.serial(refused, ['verify', 'remote', '--rsh', 'false', '--config', cfg], 9, /closed the connection/);
test.serial(refused, ['restore', 'remote', 'x', 'elsewhere:/dev/vg/y', '--rsh', 'false', '--config', cfg], 2, /DEST elsewhere:\/dev\/vg\/y is on another host/);
test.serial(refused, ['list', 'file', '--config', cfg], 13, /need an LVM logical volume as target: \S+a\.img\.dst is not a block device/);
test.serial(refused, ['verify', 'file', '--config', cfg], 13, /need an LVM logical volume as target/);
test.serial(refused, ['restore', 'file', 'x', join(dir, 'out.img'), '--config', cfg], 13, /need an LVM logical volume as target/);
test.serial(refused, ['list', '--config', cfg], 2, /history: missing JOB \(usage: blkdelta history list <job>\)/);
test.serial(refused, ['restore', 'file', 'x', '--config', cfg], 2, /history: missing DEST \(usage: blkdelta history restore <job> <id> <dest>\)/);
test.serial(refused, ['frobnicate', 'file', '--config', cfg], 2, /history: unknown action "frobnicate" \(actions: list, restore, verify, prune\)/);
test.serial(refused, [], 2, /name an action: list, restore, verify or prune/);
test.serial(refused, ['list', 'file', '--config', join(dir, 'missing.toml')], 15, /cannot read config \S+missing\.toml: ENOENT/);
test.serial(refused, ['prune', 'file', '--dry-run', '--bogus', '--config', cfg], 2, /history: unknown option --bogus/);

test.serial('a restore that is refused leaves DEST untouched', async (t) => {
  const dest = join(dir, 'dest.img');
  writeFileSync(dest, Buffer.alloc(4096, 7));
  const r = await runBlkdelta(['history', 'restore', 'file', 'x', dest, '--config', cfg]);
  t.is(r.code, 13);
  const { readFileSync } = await import('node:fs');
  t.deepEqual(readFileSync(dest), Buffer.alloc(4096, 7));
});
