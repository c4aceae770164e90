// A real install, as an operator makes one: clone the repository (its committed HEAD), run the
// clone's bin/blkdelta before any build (it must say "run npm ci && npm run build"), `npm ci`,
// `npm pack` (prepack builds dist/), check what the tarball holds, install it with
// `npm i -g --prefix DIR`, then run the installed blkdelta --version, `man -l` on both installed
// pages (and man finding them through MANPATH), and the completion script through bash. Also: the
// man page names every command and every exit code of the table, and the config page every key.
// Network: npm talks to the registry (deps); everything else stays in a temp dir removed after.
import test from 'ava';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT_TABLE } from '../src/errors.js';
import { COMMANDS } from '../src/cli/commands.js';
import { GLOBAL_KEYS, SHARED_KEYS, JOB_KEYS, SSH_KEYS } from '../src/jobs/schema.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const npmFlags = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];

/** Renders a man page to plain text (no hyphenation, wide lines; whitespace collapsed). */
async function render(page: string): Promise<string> {
  const r = await execa('man', ['-l', page], { env: { MANWIDTH: '200', MAN_KEEP_FORMATTING: '', PAGER: 'cat' } });
  return r.stdout.replace(/\s+/g, ' ');
}

test('blkdelta(1) names every command and every exit code with its meaning', async (t) => {
  const text = await render(join(ROOT, 'man/blkdelta.1'));
  for (const name of Object.keys(COMMANDS)) t.true(text.includes(`blkdelta ${name}`), name);
  for (const [code, meaning] of EXIT_TABLE) t.true(text.includes(`${code} ${meaning}`), `${code} ${meaning}`);
});

test('blkdelta.toml(5) names every config key', async (t) => {
  const text = await render(join(ROOT, 'man/blkdelta.toml.5'));
  for (const key of Object.keys({ ...GLOBAL_KEYS, ...SHARED_KEYS, ...JOB_KEYS, ...SSH_KEYS })) t.true(text.includes(key), key);
});

test('a fresh clone packs, installs with npm i -g and runs: version, man pages, bash completion', async (t) => {
  t.timeout(30 * 60_000, 'npm ci, tsc and npm i -g on a shared machine');
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-pack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const clone = join(dir, 'clone');
  await execa('git', ['clone', '--quiet', ROOT, clone]);

  const unbuilt = await execa(process.execPath, [join(clone, 'bin/blkdelta'), '--version'], { reject: false });
  t.is(unbuilt.exitCode, 1);
  t.regex(unbuilt.stderr, /not built: .*dist\/src\/cli\/main\.js is missing; run npm ci && npm run build/);
  t.notRegex(unbuilt.stderr, /ERR_MODULE_NOT_FOUND/);

  await execa('npm', ['ci', '--ignore-scripts', ...npmFlags], { cwd: clone });
  const pack = await execa('npm', ['pack', '--json', '--pack-destination', dir, ...npmFlags], { cwd: clone });
  const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
  const files = info!.files.map((f) => f.path);
  for (const f of ['bin/blkdelta', 'dist/src/cli/main.js', 'LICENSE', 'README.md', 'man/blkdelta.1', 'man/blkdelta.toml.5',
    'fixtures/blkdelta.example.toml', 'systemd/blkdelta@.service', 'systemd/blkdelta@.timer', 'docs/json.md']) {
    t.true(files.includes(f), `tarball holds ${f}`);
  }
  t.deepEqual(files.filter((f) => /^(dist\/(test|bench)|test|bench|src)\/|\.map$|\.ts$/.test(f)), [], 'no tests, bench, sources or maps');

  const prefix = join(dir, 'prefix');
  await execa('npm', ['i', '-g', '--prefix', prefix, ...npmFlags, join(dir, info!.filename)]);
  const bin = join(prefix, 'bin/blkdelta');
  const version = await execa(bin, ['--version']);
  t.is(version.stdout.trim(), VERSION);

  const man1 = await render(join(prefix, 'share/man/man1/blkdelta.1'));
  t.regex(man1, /blkdelta - block-device delta replication/);
  const man5 = await render(join(prefix, 'share/man/man5/blkdelta.toml.5'));
  t.regex(man5, /blkdelta\.toml - jobs for blkdelta run/);
  const where = await execa('man', ['-w', 'blkdelta'], { env: { MANPATH: join(prefix, 'share/man') } });
  t.regex(where.stdout, /blkdelta\.1/);

  const complete = async (words: string[]) => {
    const script = `source <("${bin}" completion); COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _blkdelta; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await execa('bash', ['-c', script], { cwd: dir });
    return r.stdout.split('\n').filter(Boolean).sort();
  };
  t.deepEqual(await complete(['blkdelta', 'sy']), ['sync']);
  t.deepEqual(await complete(['blkdelta', 'c']), ['check', 'completion', 'config']);
  t.deepEqual(await complete(['blkdelta', 'sync', '--size-p']), ['--size-policy']);
  t.deepEqual(await complete(['blkdelta', 'sync', '--size-policy', '']), ['grow', 'min', 'strict']);
  t.deepEqual(await complete(['blkdelta', 'snapshots', '']), ['clean', 'list']);
  t.deepEqual(await complete(['blkdelta', 'check', '-']).then((o) => o.filter((x) => /^-[wct]$/.test(x))), ['-c', '-t', '-w']);
  t.deepEqual(await complete(['blkdelta', 'apply', 'prefi']), ['prefix'], 'operands complete as file names');
});
