// The command line as a user meets it: every command's --help shows its EXIT STATUS, the README's
// exit table is the code's table, bad arguments exit 2 naming the argument, and the demo runs.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { EXIT_TABLE } from '../src/errors.js';
import { COMMANDS } from '../src/cli/commands.js';
import { BIN_PATH } from '../src/transport/local.js';

const README = new URL('../../README.md', import.meta.url);
const blkdelta = (...args: string[]) => execa(BIN_PATH, args, { reject: false });

test('the README exit status table is the code table, row for row', (t) => {
  const rows = [...readFileSync(README, 'utf8').matchAll(/^\| (\d+) \| (.+) \|$/gm)].map((m) => [Number(m[1]), m[2]]);
  t.deepEqual(rows, EXIT_TABLE.map(([c, text]) => [c, text]));
});

for (const name of Object.keys(COMMANDS)) {
  test(`blkdelta ${name} --help shows EXIT STATUS`, async (t) => {
    const r = await blkdelta(name, '--help');
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /EXIT STATUS/);
  });
}

const usage = test.macro(async (t, args: string[], names: RegExp) => {
  const r = await blkdelta(...args);
  t.is(r.exitCode, 2, r.stderr);
  t.regex(r.stderr, names);
});
test('unknown command', usage, ['frobnicate'], /frobnicate/i);
test('unknown option', usage, ['sync', '--frob', 'a', 'b'], /frob/);
test('missing DST', usage, ['verify', '/tmp/a'], /verify: missing DST \(usage: blkdelta verify <src> <dst>\)/);
test('bad --block-size', usage, ['sync', '--block-size', '3000', '/tmp/a', '/tmp/b'], /block-size 3000/);
test('bad --block-size unit', usage, ['sync', '--block-size', 'big', '/tmp/a', '/tmp/b'], /block-size "big"/);
test('bad --size-policy', usage, ['sync', '--size-policy', 'shrink', '/tmp/a', '/tmp/b'], /size-policy/);
test('two remote ends', usage, ['sync', 'h1:/dev/a', 'h2:/dev/b'], /both remote/);

test('the demo runs every step with the expected exit code and ends with the check', async (t) => {
  const r = await blkdelta('demo', '--size', '16M');
  t.is(r.exitCode, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /IDENTICAL/);
  t.regex(r.stdout, /^BLKDELTA OK - demo/m);
  t.regex(r.stdout, /demo finished/);
});

test('a reader that goes away (| true, | head) is no failure: exit status of the command, no stack trace', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = join(dir, 'a.img'), b = join(dir, 'b.img');
  writeFileSync(a, randomBytes(1 << 20));
  writeFileSync(b, randomBytes(1 << 20));
  // `true` exits without reading: every write blkdelta makes later fails with EPIPE
  const run = (args: string) => execa('bash', ['-c', `${BIN_PATH} ${args} | true; exit "\${PIPESTATUS[0]}"`], { reject: false });
  const copy = join(dir, 'copy.img');
  writeFileSync(copy, readFileSync(a));
  const same = await run(`verify ${a} ${copy}`);
  t.is(same.exitCode, 0, same.stderr);
  t.notRegex(same.stderr, /EPIPE|Unhandled|internal error/);
  const differ = await run(`verify ${a} ${b}`);
  t.is(differ.exitCode, 3, differ.stderr);
  t.notRegex(differ.stderr, /EPIPE|Unhandled|internal error/);
  const help = await run('sync --help');
  t.is(help.exitCode, 0, help.stderr);
  t.notRegex(help.stderr, /EPIPE|Unhandled|internal error/);
});
