// `npm run bench`: blkdelta's performance figures (issues 2 and 3), printed as Markdown on stdout
// and written as JSON to bench/results/latest.json. Not a test: nothing here is timed against a
// deadline; targets are checked and printed PASS/FAIL (exit status 1 when one fails).
//   node dist/bench/bench.js [--size 4G] [--quick] [--dir /var/tmp] [--skip-ssh] [--skip-sparse] [--skip-cache]
//                            [--skip-vm | --only-vm | --only-cold]
//   A: random image of --size (default 4 GiB): no change, 1% random 4 KiB blocks, 40 MiB contiguous,
//      a full copy; each also with blocksync-fast when built here (BLKDELTA_BENCH_BLOCKSYNC_FAST=path,
//      or blocksync-fast in PATH); then full copies paired with dd copies (cache.ts fullCopies)
//   B: sparse 1, 4, 16, 64 GiB (peak RSS flatness)      C: the 1% case over SSH vs local
//   D: page cache left by a sync (fincore), hot file under a memory cgroup; E: cold cache;
//   F: start-up CPU (cache.ts). The page-cache tables need a disk-backed --dir (not tmpfs).
//   G: incremental vs full compare on a 1 GiB thin LV in the VM lane (incremental-case.ts)
//   --quick: 1 GiB image, sparse 1 and 4 GiB only (a smoke run of every table).
//   --skip-vm: no G (it needs the VM lane's tools, and takes ~45 min under TCG: 1 GiB and 4 GiB); --only-vm: only G.
//   --only-cold: only E (cold cache), on images of --size in --dir (a disk-backed one).
// Disk: two images of --size plus a copy of the changed data, in a temp dir under --dir (default
// the OS temp dir), removed at the end, also after a failure or Ctrl-C. Memory: see images.ts.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GIB, prepareImages, tableA, tableB } from './cases.js';
import { benchAbort, findTool, requireTool } from './measure.js';
import { markdownA, markdownB, markdownC, markdownD, markdownDd, markdownE, markdownF, markdownTargets, targets, type Results } from './report.js';
import { fullCopies, tableD, tableE, tableF } from './cache.js';
import { tableC } from './ssh-case.js';
import { markdownG, tableG, targetsG } from './incremental-case.js';
import { parseSize } from '../src/units.js';

const RESULTS = fileURLToPath(new URL('../../bench/results/latest.json', import.meta.url));

interface Config {
  size: number;
  sparse: number[];
  dir: string;
  ssh: boolean;
  cache: boolean;
  vm: 'skip' | 'also' | 'only';
  onlyCold: boolean;
}

function config(): Config {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' }, quick: { type: 'boolean' }, dir: { type: 'string' },
      'skip-ssh': { type: 'boolean' }, 'skip-sparse': { type: 'boolean' }, 'skip-cache': { type: 'boolean' },
      'skip-vm': { type: 'boolean' }, 'only-vm': { type: 'boolean' }, 'only-cold': { type: 'boolean' },
    },
  });
  const size = values.size !== undefined ? parseSize(values.size, '--size') : values.quick ? GIB : 4 * GIB;
  const sparse = values['skip-sparse'] ? [] : (values.quick ? [1, 4] : [1, 4, 16, 64]).map((g) => g * GIB);
  return { size, sparse, dir: values.dir ?? tmpdir(), ssh: !values['skip-ssh'], cache: !values['skip-cache'], vm: values['only-vm'] ? 'only' : values['skip-vm'] ? 'skip' : 'also', onlyCold: !!values['only-cold'] };
}

/** The 1, 5 and 15 minute load averages. */
function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function section(md: string): void {
  process.stdout.write(md + '\n\n');
}

async function run(cfg: Config, work: string): Promise<Results> {
  const r: Results = {};
  if (cfg.vm === 'only') return vmSection(r);
  const img = await prepareImages(work, cfg.size);
  if (cfg.onlyCold) {
    r.e = await tableE(img, work);
    section(markdownE(r.e));
    return r;
  }
  r.a = await tableA(img, work, blocksyncFast());
  section(markdownA(r.a));
  r.dd = await fullCopies(img, work);
  section(markdownDd(r.dd));
  if (cfg.ssh) {
    r.c = await tableC(img, work);
    section(markdownC(r.c));
  }
  if (cfg.cache) {
    r.d = await tableD(img, work);
    section(markdownD(r.d));
    r.e = await tableE(img, work);
    section(markdownE(r.e));
  }
  r.f = await tableF(work);
  section(markdownF(r.f));
  rmSync(img.a);
  rmSync(img.b);
  if (cfg.sparse.length) {
    r.b = await tableB(cfg.sparse, work);
    section(markdownB(r.b));
  }
  return cfg.vm === 'also' ? vmSection(r) : r;
}

/** blocksync-fast, when built here (BLKDELTA_BENCH_BLOCKSYNC_FAST, else PATH): the peer issue 13 compares with. */
function blocksyncFast(): { path: string; version: string } | undefined {
  const path = process.env.BLKDELTA_BENCH_BLOCKSYNC_FAST || findTool('blocksync-fast');
  if (!path) return undefined;
  const v = spawnSync(path, ['--version'], { encoding: 'utf8' });
  if (v.status !== 0) throw new Error(`${path} --version failed (${v.status}): ${v.stderr}`);
  return { path, version: `${v.stdout}${v.stderr}`.split('\n')[0]!.split(',')[0]!.trim() };
}

async function vmSection(r: Results): Promise<Results> {
  r.g = await tableG();
  section(markdownG(r.g));
  return r;
}

async function main(): Promise<number> {
  requireTool('xxhsum', 'xxhash');
  const cfg = config();
  const work = mkdtempSync(join(cfg.dir, 'blkdelta-bench-'));
  const cleanup = () => rmSync(work, { recursive: true, force: true });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => benchAbort.abort());
  const t0 = Date.now();
  const loadStart = loadavg();
  section(`## blkdelta bench, ${new Date().toISOString()}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${loadStart}`);
  try {
    const results = await run(cfg, work);
    const t = [...targets(results), ...(results.g ? targetsG(results.g) : [])];
    section(markdownTargets(t));
    const loadEnd = loadavg();
    section(`Bench wall time: ${((Date.now() - t0) / 1000).toFixed(0)} s; load average at the end ${loadEnd} (other work on the machine skews walls).`);
    mkdirSync(dirname(RESULTS), { recursive: true });
    writeFileSync(RESULTS, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, loadStart, loadEnd, config: cfg, results, targets: t }, null, 2) + '\n');
    process.stdout.write(`figures written to ${RESULTS}\n`);
    return t.every((x) => x.pass) ? 0 : 1;
  } finally {
    cleanup();
  }
}

main().then((code) => (process.exitCode = code), (err: Error) => {
  process.stderr.write(`bench failed: ${process.env.BLKDELTA_BENCH_DEBUG ? err.stack : err.message}\n`);
  process.exitCode = 2;
});
