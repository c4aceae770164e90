// The local server a sync starts ahead of need (transport/local.ts prestartServer): which command
// lines start one, and that none outlives the client, whether the sync used it or failed first.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { prestartsServer } from '../src/cli/main.js';
import { ExitCode } from '../src/errors.js';
import { runBlkdelta } from './helpers/jobs.js';

const rows: [string[], boolean][] = [
  [['sync', 'a.img', 'b.img'], true],
  [['sync', '/dev/vg0/lv', '/dev/backup/lv', '--bwlimit', '10M'], true],
  [['sync', '--snapshot', 'vg0/lv', '/dev/backup/lv'], true],
  [['sync', 'a.img', 'host:/b.img'], false],
  [['sync', 'host:/a.img', 'b.img'], false],
  [['sync', 'a.img', 'ssh://u@h:22/b.img'], false],
  [['sync', '--snapshot', 'host:vg0/lv', 'b.img'], false],
  [['sync', '--help'], false],
  [['sync', '-h'], false],
  [['sync', '--version'], false],
  [['verify', 'a.img', 'b.img'], false],
  [['run', 'job'], false],
  [['server'], false],
  [[], false],
];
for (const [args, want] of rows) test(`prestartsServer ${JSON.stringify(args)} is ${want}`, (t) => t.is(prestartsServer(args), want));

/** Pids of live processes whose environment holds mark (a zombie's environ reads empty). */
function marked(mark: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'latin1').includes(mark)) found.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

const cases: [string, (a: string, b: string) => string[], number][] = [
  ['a sync that used it', (a, b) => ['sync', a, b], ExitCode.OK],
  ['a sync refused for its usage before any session', (a, b) => ['sync', a, b, '--frob'], ExitCode.USAGE],
  ['a sync whose server refused its target', (a) => ['sync', a, '/nonexistent/dir/b.img'], ExitCode.TARGET_REFUSED],
  ['a sync refused for its source', (_a, b) => ['sync', '/nonexistent/dir/a.img', b], ExitCode.SOURCE],
];
for (const [name, argv, code] of cases) {
  test(`no prestarted server outlives ${name}`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'blkdelta-prestart-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const [a, b] = [join(dir, 'a.img'), join(dir, 'b.img')];
    writeFileSync(a, randomBytes(1 << 20));
    writeFileSync(b, Buffer.alloc(1 << 20));
    const mark = `BLKDELTA_TEST_MARK=${randomUUID()}`;
    const r = await runBlkdelta(argv(a, b), { env: { BLKDELTA_TEST_MARK: mark.split('=')[1] } });
    t.is(r.code, code, r.stderr);
    t.deepEqual(marked(mark), [], 'a process of this run is still alive');
    if (code === ExitCode.OK) t.deepEqual(readFileSync(b), readFileSync(a));
  });
}
