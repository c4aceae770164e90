// Bad command lines over every command, one row each: the exit code and the words that name
// what is wrong, never a stack trace or "internal error". `check` speaks the plugin codes: its
// rows expect 3 and the "BLKDELTA UNKNOWN - ..." line on stdout. Local paths only; nothing here
// connects anywhere (rows with a remote end fail on their arguments before any connection).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN_PATH } from '../src/transport/local.js';

const dir = mkdtempSync(join(tmpdir(), 'blkdelta-cli-errors-'));
const img = join(dir, 'a.img');
const img2 = join(dir, 'b.img');
const cfg = join(dir, 'blkdelta.toml');
const state = join(dir, 'state');
const corrupt = join(dir, 'corrupt-state');
writeFileSync(img, Buffer.alloc(65536));
writeFileSync(img2, Buffer.alloc(65536));
writeFileSync(cfg, `state_dir = "${state}"\n\n[jobs.x]\nsource = "${img}"\ntarget = "${img2}"\n`);
mkdirSync(corrupt);
writeFileSync(join(corrupt, 'x.json'), '{"version": 1, "job": "x", "runs": [');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const bad = test.macro({
  async exec(t: ExecutionContext, args: string[], code: number, words: RegExp) {
    const r = await execa(BIN_PATH, args, { reject: false, env: { BLKDELTA_CONFIG: cfg, JOURNAL_STREAM: '' } });
    t.is(r.exitCode, code, r.stdout + r.stderr);
    t.regex(r.stderr, words);
    t.notRegex(r.stderr, /internal error|\n\s+at |\| at /, 'no stack trace');
    if (code === 3 && args[0] === 'check') t.regex(r.stdout, new RegExp(`^BLKDELTA UNKNOWN - ${words.source}`));
  },
  title: (_t, args: string[], code: number) => `blkdelta ${args.join(' ')} -> exit ${code}`,
});

// top level
test(bad, [], 2, /name a command/);
test(bad, ['frobnicate'], 2, /unknown command "frobnicate" \(commands: sync, verify/);
test(bad, ['--frob'], 2, /name a command \(blkdelta --help lists them\)/);
// sync
test(bad, ['sync'], 2, /sync: missing SRC \(usage: blkdelta sync <src> \[dst\]\)/);
test(bad, ['sync', img, img2, 'c'], 2, /sync: too many operands, "c" not expected: it takes at most 2/);
test(bad, ['sync', '--frob', img, img2], 2, /sync: unknown option --frob/);
test(bad, ['sync', '--size-policy', 'shrink', img, img2], 2, /--size-policy "shrink": expected one of strict, grow, min/);
test(bad, ['sync', '-b', '3000', img, img2], 2, /--block-size 3000 is invalid: it must be a power of two/);
test(bad, ['sync', '-b', '0', img, img2], 2, /--block-size 0 is invalid/);
test(bad, ['sync', '-b', 'big', img, img2], 2, /--block-size "big" is not a size/);
test(bad, ['sync', '--connect-timeout', 'abc', 'h:/dev/x', img2], 2, /--connect-timeout "abc": not a number/);
test(bad, ['sync', '--connect-timeout', '0', 'h:/dev/x', img2], 2, /--connect-timeout 0: expected a number of seconds above 0/);
test(bad, ['sync', img, img2, '--connect-timeout'], 2, /--connect-timeout needs a value/);
test(bad, ['sync', '-i', '/k', img, img2], 2, /--identity applies only to a remote end, and .* are both local/);
test(bad, ['sync', '--rsh', 'ssh -p 2', '--connect-timeout', '5', img, img2], 2, /--rsh, --connect-timeout apply only to a remote end/);
test(bad, ['sync', '--bwlimit', 'fast', img, img2], 2, /--bwlimit "fast": expected bytes per second/);
test(bad, ['sync', 'host:2299:/dev/x', img2], 2, /remote path "2299:\/dev\/x" must be absolute; for port 2299 write ssh:\/\/host:2299\/dev\/x/);
test(bad, ['sync', 'me@host:22:/dev/x', img2], 2, /write ssh:\/\/me@host:22\/dev\/x/);
test(bad, ['sync', 'h1:/dev/a', 'h2:/dev/b'], 2, /are both remote/);
test(bad, ['sync', '--force', img, img2], 2, /--force applies only with --patch-out/);
test(bad, ['sync', '--dry-run', '--verify', img, img2], 2, /--dry-run and --verify cannot be used together/);
test(bad, ['sync', join(dir, 'missing.img'), img2], 4, /source .*missing\.img does not exist/);
// verify
test(bad, ['verify', img], 2, /verify: missing DST \(usage: blkdelta verify <src> <dst>\)/);
test(bad, ['verify'], 2, /verify: missing SRC and DST/);
test(bad, ['verify', '--max-diffs', 'abc', img, img2], 2, /--max-diffs "abc": not a number/);
test(bad, ['verify', '--max-diffs', '-1', img, img2], 2, /--max-diffs -1: expected a whole number, 0 or more/);
test(bad, ['verify', '--max-diffs', '1.5', img, img2], 2, /--max-diffs 1\.5: expected a whole number/);
// apply
test(bad, ['apply'], 2, /apply needs a patch and a target: blkdelta apply PATCH \[PATCH\.\.\.\] TARGET/);
test(bad, ['apply', 'p.bdp'], 2, /apply needs a patch and a target/);
test(bad, ['apply', join(dir, 'none.bdp'), img2], 8, /cannot open patch .*none\.bdp: ENOENT/);
// run
test(bad, ['run'], 2, /name a job, or use --all/);
test(bad, ['run', 'x', 'y'], 2, /run: too many operands, "y" not expected: it takes at most 1/);
test(bad, ['run', 'x', '--all'], 2, /--all and --job cannot be used together|cannot be used together/);
test(bad, ['run', 'x', '--config', join(dir, 'none.toml')], 15, /none\.toml/);
test(bad, ['run', 'nojob'], 15, /nojob/);
test(bad, ['run', 'x', '--wait-timeout', 'soon'], 2, /--wait-timeout: "soon" is not a duration/);
test(bad, ['run', 'x', '--metrics-file', join(dir, 'no/such/dir/m.prom')], 2, /--metrics-file .*m\.prom: directory .*no\/such\/dir ENOENT/);
test(bad, ['run', 'x', '--metrics-file', join(img, 'm.prom')], 2, /--metrics-file .*: .*a\.img (is not a directory|ENOTDIR)/);
// status
test(bad, ['status', '-n', 'abc', '--state-dir', state], 2, /--history "abc": not a number/);
test(bad, ['status', '-n', '0', '--state-dir', state], 2, /--history 0: expected a whole number of runs, 1 or more/);
test(bad, ['status', '-n', '-3', '--state-dir', state], 2, /--history -3: expected a whole number/);
test(bad, ['status', 'a', 'b'], 2, /status: too many operands, "b" not expected/);
test(bad, ['status', '--state-dir', corrupt], 8, /record of job x: corrupt/);
test(bad, ['status', '--state-dir', join(dir, 'nowhere')], 8, /cannot read state dir .*nowhere: ENOENT/);
test(bad, ['status', '--config', join(dir, 'none.toml')], 15, /none\.toml/);
// check: plugin codes, UNKNOWN on stdout
test(bad, ['check'], 3, /name one job, or use --all/);
test(bad, ['check', 'x', '-w', '3d', '-c', '1d'], 3, /--warning-age 3d is above --critical-age 1d: the warning must come first/);
test(bad, ['check', 'x', '-w', 'abc'], 3, /--warning-age abc: "abc" is not a duration/);
test(bad, ['check', 'x', '-w', '@1h:2h'], 3, /--warning-age @1h:2h: an age alerts when it grows above a limit/);
test(bad, ['check', 'x', '-c', '10:'], 3, /--critical-age 10:: an age alerts when it grows above a limit/);
test(bad, ['check', 'x', '-w', '2h:1h'], 3, /--warning-age 2h:1h: range "2h:1h": start 2h is above end 1h/);
test(bad, ['check', 'x', '--max-duration', '-5'], 3, /--max-duration -5: .*not a duration/);
test(bad, ['check', 'x', '-t', 'abc'], 3, /--timeout: "abc" is not a duration/);
test(bad, ['check', 'x', '--frob'], 3, /check: unknown option --frob/);
test(bad, ['check', 'x', 'y'], 3, /check: too many operands, "y" not expected/);
test(bad, ['check', 'nojob'], 3, /no job nojob in /);
// config
test(bad, ['config'], 2, /config: missing ACTION \(usage: blkdelta config <action>\)/);
test(bad, ['config', 'frob'], 2, /ACTION "frob": expected one of check/);
test(bad, ['config', 'check', '--config', join(dir, 'none.toml')], 15, /none\.toml/);
// snapshots
test(bad, ['snapshots'], 2, /name an action: list or clean/);
test(bad, ['snapshots', 'frob'], 2, /snapshots: unknown action "frob" \(actions: list, clean\)/);
test(bad, ['snapshots', 'list', '--job', 'bad!name'], 2, /job name "bad!name" is invalid/);
// demo, completion, server
test(bad, ['demo', '--size', 'abc'], 2, /--size "abc" is not a size/);
test(bad, ['demo', '--size', '1M'], 2, /--size 1M: the demo needs whole MiB, at least 16M/);
test(bad, ['completion', 'x'], 2, /completion: too many operands, "x" not expected: it takes none/);
test(bad, ['server', '--frob'], 2, /server: unknown argument "--frob"/);
test(bad, ['server', '--allow'], 2, /server: --allow needs a device path glob/);

test('--json on failure prints an error object on stdout with the exit code', async (t) => {
  const r = await execa(BIN_PATH, ['sync', '--json', join(dir, 'missing.img'), img2], { reject: false });
  t.is(r.exitCode, 4);
  t.deepEqual(JSON.parse(r.stdout), {
    version: 1,
    error: { exitCode: 4, message: `source ${join(dir, 'missing.img')} does not exist`, meaning: 'source missing, unreadable or not a file or block device' },
  });
  const usage = await execa(BIN_PATH, ['status', '--json', '-n', 'abc'], { reject: false });
  t.is(usage.exitCode, 2);
  t.like(JSON.parse(usage.stdout), { version: 1, error: { exitCode: 2, message: '--history "abc": not a number' } });
});

test('-h and --help print the help, -V and --version the version, for the program and a command', async (t) => {
  for (const args of [['-h'], ['--help'], ['sync', '-h'], ['check', '-h']]) {
    const r = await execa(BIN_PATH, args, { reject: false });
    t.is(r.exitCode, 0, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stdout, /blkdelta/);
    t.regex(r.stdout, /--help/);
  }
  for (const args of [['-V'], ['--version'], ['check', '-V']]) {
    const r = await execa(BIN_PATH, args, { reject: false });
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /^\d+\.\d+\.\d+$/);
  }
});

test('every JSON output carries version 1, with durations in seconds', async (t) => {
  const s = await execa(BIN_PATH, ['sync', '--json', img, img2], { reject: false });
  t.is(s.exitCode, 0, s.stderr);
  const summary = JSON.parse(s.stdout);
  t.is(summary.version, 1);
  t.is(typeof summary.durationS, 'number');
  t.false('durationMs' in summary);
  const st = await execa(BIN_PATH, ['status', '--json', '--state-dir', corrupt], { reject: false });
  t.is(st.exitCode, 8);
  t.like(JSON.parse(st.stdout), { version: 1, jobs: [{ job: 'x', problem: 'corrupt' }] });
});
