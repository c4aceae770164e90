// Tables D, E and F of `npm run bench` (issue 13), and the dd baseline of a full copy.
// D: page cache. Each image's pages are dropped (posix_fadvise DONTNEED through
//    `dd oflag=nocache conv=notrunc,fdatasync count=0`: these files only, not the whole machine's cache), a sync runs
//    (local no change, local 1%, 1% over SSH), then `fincore` says how much of each is cached.
//    Hot file: a memory cgroup (v1) limited to 3/4 of --size; in it `cat hot` twice (a hot file
//    of half of --size), then the no-change sync, then the hot file's residency; three runs.
// E: cold cache: the same drop before each run; the sync against `cat a ‖ cat b`, also dropped,
//    in COLD_PAIRS pairs taken side by side; the median pair's ratio counts (the 1% case changes
//    the same blocks again before each run).
// F: start-up CPU of `blkdelta --version` and of `blkdelta server` (stdin closed), best of five; and
//    the server of a whole sync of 1 MiB files (what a session costs it: engine loaded after HELLO).
// Memory: see images.ts. Interrupted: the cgroup is removed in finally (its processes are ours
// and gone); files stay in the work dir, which bench.ts removes.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startSshd } from '../test/helpers/sshd.js';
import { residentBytes } from '../src/io/direct.js';
import { bestOf2, BLOCK, type Images } from './cases.js';
import { changeRandomBlocks, makeRandomImage, makeSparse } from './images.js';
import { BIN, probedRemoteCmd, runBlkdelta, timeParallel, type SyncRun } from './measure.js';

export interface CacheRow {
  name: string;
  run: SyncRun;
  sourceResident: number;
  targetResident: number;
}

export interface HotRow {
  run: SyncRun;
  hotSize: number;
  hotResident: number;
  limit: number;
  sourceResident: number;
  targetResident: number;
}

export interface TableD {
  rows: CacheRow[];
  hot: HotRow[];
  /** Why the hot-file test did not run (no cgroup v1 memory controller). */
  hotSkipped?: string;
}

export interface ColdPair {
  run: SyncRun;
  /** Cold `cat a ‖ cat b` taken right before or after run. */
  catMs: number;
}

/** A cold case: its pairs, and (run, catMs) of the pair with the median ratio. */
export interface ColdRow extends ColdPair {
  name: string;
  pairs: ColdPair[];
}

export interface Startup {
  versionCpuMs: number;
  serverCpuMs: number;
  nodeCpuMs: number;
  /** node -e 0 without NODE_EXTRA_CA_CERTS, when this environment sets it (bin/blkdelta starts Node without it). */
  nodeNoCaCpuMs?: number;
  /** The server of a whole local sync of two identical 1 MiB files (through the probe), best of five. */
  sessionServerCpuMs: number;
}

export interface DdCopy {
  wallMs: number;
  cpuMs: number;
}

/** Writes path's dirty pages back (fdatasync), then drops its pages from the page cache (DONTNEED). */
export function dropCache(path: string): void {
  const r = spawnSync('dd', [`of=${path}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
  if (r.status !== 0) throw new Error(`dd iflag=nocache on ${path} failed: ${r.stderr}`);
}

const resident = (path: string) => residentBytes(path) ?? NaN;

async function cachedRun(name: string, img: Images, args: string[] | ((probe: string) => string[]), dir: string, prefix: string[] = []): Promise<CacheRow> {
  dropCache(img.a);
  dropCache(img.b);
  const run = await runBlkdelta(args, dir, prefix);
  return { name, run, sourceResident: resident(img.a), targetResident: resident(img.b) };
}

/** Table D without the hot file: local no change, local 1%, 1% over SSH. */
export async function tableD(img: Images, dir: string): Promise<TableD> {
  const rows: CacheRow[] = [];
  rows.push(await cachedRun('local, no change', img, ['sync', img.a, img.b], dir));
  changeRandomBlocks(img.b, img.size, BLOCK, 0.01, 3);
  rows.push(await cachedRun('local, 1% changed', img, ['sync', img.a, img.b], dir));
  const sshd = await startSshd();
  try {
    changeRandomBlocks(img.b, img.size, BLOCK, 0.01, 4);
    const dst = `ssh://${sshd.user}@127.0.0.1:${sshd.port}${img.b}`;
    rows.push(await cachedRun('ssh, 1% changed', img, (probe) => ['sync', img.a, dst, '--identity', sshd.userKey.privatePath,
      '--known-hosts', sshd.knownHosts, '--remote-cmd', probedRemoteCmd(probe)], dir));
  } finally {
    await sshd.stop();
  }
  const hot = await hotFile(img, dir);
  return { rows, ...hot };
}

/** The memory cgroup (v1) this process is in, or why there is none. */
function memoryCgroup(): string | { skipped: string } {
  const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => /^\d+:memory:/.test(l));
  const root = '/sys/fs/cgroup/memory';
  if (!line || !existsSync(join(root, 'memory.limit_in_bytes'))) return { skipped: 'no cgroup v1 memory controller here' };
  return join(root, line.split(':')[2]!);
}

/** The hot-file test: three no-change syncs in a memory-limited cgroup that holds a hot file. */
async function hotFile(img: Images, dir: string): Promise<{ hot: HotRow[]; hotSkipped?: string }> {
  const parent = memoryCgroup();
  if (typeof parent !== 'string') return { hot: [], hotSkipped: parent.skipped };
  const cg = join(parent, `blkdelta-bench-${process.pid}`);
  const hotPath = join(dir, 'hot.img');
  const hotSize = Math.floor(img.size / 2 / BLOCK) * BLOCK;
  const limit = Math.floor((img.size * 3) / 4);
  mkdirSync(cg);
  try {
    writeFileSync(join(cg, 'memory.limit_in_bytes'), String(limit));
    const inCg = ['sh', '-c', `echo $$ > ${join(cg, 'cgroup.procs')} && exec "$@"`, 'sh'];
    makeRandomImage(hotPath, hotSize, 'hot');
    dropCache(hotPath);
    const hot: HotRow[] = [];
    for (let i = 0; i < 3; i++) {
      for (let k = 0; k < 2; k++) await timeParallel([{ argv: [...inCg, 'cat', hotPath] }], false);
      const row = await cachedRun('hot', img, ['sync', img.a, img.b], dir, inCg);
      hot.push({ run: row.run, hotSize, hotResident: resident(hotPath), limit, sourceResident: row.sourceResident, targetResident: row.targetResident });
    }
    return { hot };
  } finally {
    rmSync(hotPath, { force: true });
    rmdirSync(cg);
  }
}

/** Cold runs per case in table E: each a (sync, cat) pair, taken in alternating order. */
export const COLD_PAIRS = 3;

/**
 * Table E: no change and 1% with both images dropped from the cache, against cold `cat a ‖ cat b`.
 * A virtual disk's speed depends on its host's own cache, which changes from minute to minute
 * (cold cat took 1.4 to 12.7 s here within five minutes): so each sync is paired with a cat taken
 * right before or after it (alternating), and the row's ratio is the median of its pairs' ratios.
 */
export async function tableE(img: Images, dir: string): Promise<ColdRow[]> {
  const catCold = async () => {
    dropCache(img.a);
    dropCache(img.b);
    return (await timeParallel([{ argv: ['cat', img.a] }, { argv: ['cat', img.b] }], false)).wallMs;
  };
  const syncCold = async () => (await cachedRun('', img, ['sync', img.a, img.b], dir)).run;
  const coldRow = async (name: string, before: () => void): Promise<ColdRow> => {
    const pairs: ColdPair[] = [];
    for (let i = 0; i < COLD_PAIRS; i++) {
      before();
      const catFirst = i % 2 === 1;
      const catMs = catFirst ? await catCold() : NaN;
      const run = await syncCold();
      pairs.push({ run, catMs: catFirst ? catMs : await catCold() });
    }
    return { name, pairs, ...medianBy(pairs, (p) => p.run.wallMs / p.catMs) };
  };
  return [
    await coldRow('no change', () => {}),
    await coldRow('1% changed', () => changeRandomBlocks(img.b, img.size, BLOCK, 0.01, 5)),
  ];
}

/** The item whose key is the median of the items' (of an even count, the lower middle one; ties in given order). */
export function medianBy<T>(items: readonly T[], key: (item: T) => number): T {
  if (!items.length) throw new RangeError('medianBy: no items');
  const sorted = [...items].sort((p, q) => key(p) - key(q));
  return sorted[(sorted.length - 1) >> 1]!;
}

/** user + sys CPU of argv (stdin /dev/null), best of five, through /usr/bin/time. */
function cpuOf(argv: string[], dir: string, env: NodeJS.ProcessEnv = process.env): number {
  const out = join(dir, 'time.out');
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const r = spawnSync('/usr/bin/time', ['-o', out, '-f', '%U %S', ...argv], { stdio: ['ignore', 'ignore', 'ignore'], env });
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status}`);
    const [u, s] = readFileSync(out, 'utf8').trim().split(/\s+/).map(Number);
    best = Math.min(best, (u! + s!) * 1000);
  }
  return best;
}

/**
 * Table F: start-up CPU. A bare server (stdin closed) loads only what answers a HELLO; what a
 * session loads after its HELLO shows in the server of a whole sync of two 1 MiB files.
 */
export async function tableF(dir: string): Promise<Startup> {
  const [a, b] = [join(dir, 'f-a.img'), join(dir, 'f-b.img')];
  writeFileSync(a, Buffer.alloc(1 << 20, 7));
  writeFileSync(b, Buffer.alloc(1 << 20, 7));
  let sessionServerCpuMs = Infinity;
  try {
    for (let i = 0; i < 5; i++) sessionServerCpuMs = Math.min(sessionServerCpuMs, (await runBlkdelta(['sync', a, b], dir)).server.cpuMs);
  } finally {
    rmSync(a, { force: true });
    rmSync(b, { force: true });
  }
  const { NODE_EXTRA_CA_CERTS: ca, ...noCa } = process.env;
  return {
    versionCpuMs: cpuOf([BIN, '--version'], dir), serverCpuMs: cpuOf([BIN, 'server'], dir), nodeCpuMs: cpuOf([process.execPath, '-e', '0'], dir), sessionServerCpuMs,
    ...(ca !== undefined ? { nodeNoCaCpuMs: cpuOf([process.execPath, '-e', '0'], dir, noCa) } : {}),
  };
}

/** Full copies in the dd table: each blkdelta full copy paired with a dd copy taken right before or after it. */
export const COPY_PAIRS = 3;

export interface CopyPair { run: SyncRun; dd: DdCopy }

/** The pairs, and (run, dd) of the pair with the median wall ratio. */
export interface FullCopies extends CopyPair { pairs: CopyPair[] }

/**
 * Full copies of a into an empty sparse b (blkdelta, as case (d)) against `dd if=a of=c bs=4M
 * conv=fsync,notrunc` into an empty sparse c, in COPY_PAIRS pairs taken side by side in
 * alternating order: this virtual disk's write speed follows its host (dd took 3.2 to 16 s for the
 * same copy within the hour here), so a baseline timed minutes apart says more about the host.
 */
export async function fullCopies(img: Images, dir: string): Promise<FullCopies> {
  const c = join(dir, 'dd-copy.img');
  const sync = async () => {
    rmSync(img.b);
    makeSparse(img.b, img.size);
    const run = await runBlkdelta(['sync', img.a, img.b], dir);
    if (run.summary.blocksDiffering * run.summary.blockSize !== img.size) throw new Error(`full copy: ${run.summary.blocksDiffering} blocks differed, expected all`);
    return run;
  };
  try {
    const pairs: CopyPair[] = [];
    for (let i = 0; i < COPY_PAIRS; i++) {
      const ddFirst = i % 2 === 1;
      const dd = ddFirst ? ddCopy(img.a, c, dir) : undefined;
      const run = await sync();
      pairs.push({ run, dd: dd ?? ddCopy(img.a, c, dir) });
    }
    return { pairs, ...medianBy(pairs, (p) => p.run.wallMs / p.dd.wallMs) };
  } finally {
    rmSync(c, { force: true });
  }
}

/** `dd if=a of=c bs=4M conv=fsync,notrunc` into a new empty sparse c of a's size. */
function ddCopy(a: string, c: string, dir: string): DdCopy {
  const out = join(dir, 'time.out');
  rmSync(c, { force: true });
  makeSparse(c, statSync(a).size);
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-o', out, '-f', '%U %S', 'dd', `if=${a}`, `of=${c}`, 'bs=4M', 'conv=fsync,notrunc', 'status=none']);
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`dd copy failed: ${r.stderr}`);
  const [u, s] = readFileSync(out, 'utf8').trim().split(/\s+/).map(Number);
  return { wallMs, cpuMs: (u! + s!) * 1000 };
}
