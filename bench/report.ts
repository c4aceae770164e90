// The bench's figures as Markdown tables and PASS/FAIL targets (issues 2 and 3).
// Pure functions over the measured rows; bench.ts prints them and writes the same data as JSON.
// MB and MB/s are decimal (10^6, as bdsync's figures are quoted); RSS is in MiB.
import type { SparseRow, TableA } from './cases.js';
import type { ProcessFigures, SyncRun } from './measure.js';
import type { TableC } from './ssh-case.js';
import type { ColdRow, FullCopies, Startup, TableD } from './cache.js';
import type { TableG } from './incremental-case.js';

const MIB = 1024 * 1024;
export const RSS_LIMIT = 80 * MIB;

export interface Target {
  name: string;
  value: string;
  limit: string;
  pass: boolean;
}

export interface Results {
  a?: TableA;
  b?: SparseRow[];
  c?: TableC;
  dd?: FullCopies;
  d?: TableD;
  e?: ColdRow[];
  f?: Startup;
  g?: TableG;
}

/** Issue 13's limits. */
export const CACHE_LIMIT = 64 * MIB;
export const HOT_KEPT = 0.95;

const s = (ms: number) => (ms / 1000).toFixed(2) + ' s';
const mb = (n: number) => (n / 1e6).toFixed(2) + ' MB';
const mib = (n: number) => (n / MIB).toFixed(1) + ' MiB';
const gib = (n: number) => (n / 1024 / MIB).toFixed(n % (1024 * MIB) ? 2 : 0) + ' GiB';
const rate = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);
const x = (r: number) => r.toFixed(2) + 'x';
const exchanged = (r: SyncRun) => r.summary.bytesSent + r.summary.bytesReceived;

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Wall, MB/s, CPU and peak RSS of a run's two processes, as table cells. */
function runCells(r: SyncRun): string[] {
  return [s(r.wallMs), rate(r.summary.comparedBytes, r.wallMs), s(r.client.cpuMs), s(r.server.cpuMs), rss(r.client), rss(r.server)];
}
const RUN_HEAD = ['wall', 'MB/s', 'CPU client', 'CPU server', 'peak RSS client (anon)', 'peak RSS server (anon)'];
const rss = (p: ProcessFigures) => `${mib(p.peakRss)} (${(p.peakAnon / MIB).toFixed(1)})`;
/** Under each table: what the two RSS figures are. */
const RSS_NOTE = 'Peak RSS is VmHWM (what the targets use); it includes ~45 MiB of the node binary\'s clean file pages, ' +
  'shared by both processes. (anon) is the largest RssAnon sampled every 20 ms: memory private to the process.';

export function markdownA(a: TableA): string {
  const bsf = a.blocksyncFast !== undefined;
  const rows = a.rows.map((c) => [c.name, mb(c.changedBytes), ...runCells(c.run), mb(exchanged(c.run)), s(c.xxhsumMs), s(c.catMs), x(c.run.wallMs / c.xxhsumMs), x(c.run.wallMs / c.catMs),
    ...(bsf ? [c.bsfMs === undefined ? '-' : s(c.bsfMs), c.bsfMs === undefined ? '-' : x(c.run.wallMs / c.bsfMs)] : [])]);
  return [
    `### A. ${gib(a.size)} random image, 4 KiB blocks, local sync (client + spawned server)`,
    `Warm cache: images written and fsynced (${s(a.prepMs)}), then read once with cat; nothing dropped. ` +
      'Baselines timed right after each sync on the same files, best of two; xxhsum hashes matching also checks the sync. CPU = user + sys. ' + RSS_NOTE,
    bsf ? `blocksync-fast: ${a.blocksyncFast}, one process, default XXH3 and 2 MiB buffers, on the same change made again, then \`sync b\` (blkdelta fsyncs the target); checked with xxhsum after.`
      : 'blocksync-fast: not found here (build it from its source and put it in PATH or BLKDELTA_BENCH_BLOCKSYNC_FAST): no column.',
    '',
    table(['case', 'changed', ...RUN_HEAD, 'exchanged', 'xxhsum -H1 a ‖ b', 'cat a ‖ cat b', 'wall / xxhsum', 'wall / cat', ...(bsf ? ['blocksync-fast', 'wall / blocksync-fast'] : [])], rows),
  ].join('\n');
}

export function markdownB(rows: SparseRow[]): string {
  const f = flatness(rows);
  return [
    '### B. Sparse devices: identical sparse source and target (no-change sync over holes)',
    RSS_NOTE,
    '',
    table(['size', ...RUN_HEAD], rows.map((r) => [gib(r.size), ...runCells(r.run)])),
    '',
    `Peak RSS max/min: client ${x(f.client)}, server ${x(f.server)}.`,
  ].join('\n');
}

export function markdownC(c: TableC): string {
  const row = (name: string, r: SyncRun) => [name, s(r.wallMs), s(r.client.cpuMs), s(r.server.cpuMs), rss(r.client), rss(r.server), mb(exchanged(r))];
  return [
    `### C. ${gib(c.size)} image, 1% of 4 KiB blocks changed (${mb(c.changedBytes)}), pushed over SSH to sshd on 127.0.0.1`,
    'Each transport ran three times (alternating, same change); the fastest run is shown. Bytes on the wire = protocol bytes both ways ' +
      '(SSH framing, MACs and padding not counted). ' + RSS_NOTE,
    '',
    table(['transport', 'wall', 'CPU client', 'CPU server', 'peak RSS client (anon)', 'peak RSS server (anon)', 'bytes on the wire'], [row('local', c.local), row('ssh (ssh2 client, OpenSSH sshd)', c.ssh)]),
    '',
    `OpenSSH \`ssh 127.0.0.1 'cat > /dev/null' < ${mb(c.changedBytes)} file\`: ${s(c.sshCatMs)}; \`ssh 127.0.0.1 true\` (opening a session, paid once per SSH sync): ${s(c.sshTrueMs)}. SSH wall / local wall: ${x(c.ssh.wallMs / c.local.wallMs)}.`,
    `CPU of sshd and the login shell's start-up files (not the server), each SSH run: ${c.sshdCpuMs.map((ms, i) => (i === c.sshdOfFastest ? `**${s(ms)}**` : s(ms))).join(', ')} (the fastest run's in bold); ` +
      `the whole session of \`ssh … true\`: ${s(c.sshTrueCpuMs)}, of \`ssh … 'cat > /dev/null'\` of the changed amount: ${s(c.sshCatCpuMs)}.`,
  ].join('\n');
}

export function markdownDd(d: FullCopies): string {
  const cpu = (r: SyncRun) => r.client.cpuMs + r.server.cpuMs;
  const rows = d.pairs.map((p) => {
    const cells = [s(p.run.wallMs), s(cpu(p.run)), s(p.dd.wallMs), s(p.dd.cpuMs), x(p.run.wallMs / p.dd.wallMs), x(cpu(p.run) / p.dd.cpuMs)];
    return p.run === d.run ? cells.map((c) => `**${c}**`) : cells;
  });
  return [
    `### Full copy against \`dd bs=4M conv=fsync\` (both into an empty sparse file)`,
    '',
    'Each blkdelta full copy is paired with a dd copy taken right before or after it (this virtual disk\'s',
    'write speed follows its host); the pair with the median wall ratio (bold) counts. CPU: both blkdelta processes.',
    '',
    table(['blkdelta wall', 'blkdelta CPU', 'dd wall', 'dd CPU', 'wall / dd', 'CPU / dd'], rows),
  ].join('\n');
}

const io = (r: SyncRun) => `${r.summary.sourceIo ?? '?'} / ${r.summary.targetIo ?? '?'}`;

export function markdownD(d: TableD): string {
  const rows = d.rows.map((r) => [r.name, s(r.run.wallMs), mib(r.sourceResident), mib(r.targetResident), io(r.run)]);
  const hot = d.hot.map((h, i) => [String(i + 1), s(h.run.wallMs), `${((100 * h.hotResident) / h.hotSize).toFixed(1)}%`, mib(h.sourceResident), mib(h.targetResident)]);
  return [
    '### D. Page cache: what a sync leaves cached (fincore), images dropped from the cache before each run',
    'Files on the bench dir\'s file system; pages dropped per file (dd oflag=nocache conv=notrunc,fdatasync count=0), not machine-wide. io = how source / target were read (and written).',
    '',
    table(['run', 'wall', 'source cached', 'target cached', 'io source / target'], rows),
    '',
    d.hotSkipped ? `Hot-file test skipped: ${d.hotSkipped}.` : `Hot file (${gib(d.hot[0]?.hotSize ?? 0)}) read twice in a memory cgroup (v1) limited to ${gib(d.hot[0]?.limit ?? 0)}, then a no-change sync in it:`,
    ...(d.hot.length ? ['', table(['run', 'wall', 'hot file cached', 'source cached', 'target cached'], hot)] : []),
  ].join('\n');
}

export function markdownE(rows: ColdRow[]): string {
  return [
    '### E. Cold cache: both images dropped from the page cache before each run',
    '',
    'Each sync is paired with a cold cat taken right before or after it (the host of this virtual disk',
    'caches it too, and its speed changes by minutes); the median pair (bold) counts.',
    '',
    table(['case', 'wall', 'CPU client', 'CPU server', 'cat a ‖ cat b (cold)', 'wall / cat', 'io source / target'],
      rows.flatMap((r) => r.pairs.map((p) => {
        const cells = [r.name, s(p.run.wallMs), s(p.run.client.cpuMs), s(p.run.server.cpuMs), s(p.catMs), x(p.run.wallMs / p.catMs), io(p.run)];
        return p === r.pairs.find((q) => q.run === r.run) ? cells.map((c, i) => (i === 0 || i === 6 ? c : `**${c}**`)) : cells;
      }))),
  ].join('\n');
}

export function markdownF(f: Startup): string {
  return [
    '### F. Start-up CPU (user + sys, best of five)',
    '',
    table(['command', 'CPU'], [['node -e 0 (the floor)', s(f.nodeCpuMs)],
      ...(f.nodeNoCaCpuMs !== undefined ? [['node -e 0 without NODE_EXTRA_CA_CERTS (set here; Node parses that CA bundle at start-up, and bin/blkdelta starts Node without it)', s(f.nodeNoCaCpuMs)]] : []),
      ['blkdelta --version', s(f.versionCpuMs)], ['blkdelta server (stdin closed)', s(f.serverCpuMs)],
      ['server of a whole local sync, 1 MiB (not a target; the probe\'s own loading included)', s(f.sessionServerCpuMs)]]),
  ].join('\n');
}

export function flatness(rows: SparseRow[]): { client: number; server: number } {
  const ratio = (v: number[]) => Math.max(...v) / Math.min(...v);
  return { client: ratio(rows.map((r) => r.run.client.peakRss)), server: ratio(rows.map((r) => r.run.server.peakRss)) };
}

/** Every run with a label, for the RSS target. */
function allRuns(r: Results): [string, SyncRun][] {
  return [
    ...(r.a?.rows.map((c) => [`A ${c.name}`, c.run] as [string, SyncRun]) ?? []),
    ...(r.b?.map((b) => [`B sparse ${gib(b.size)}`, b.run] as [string, SyncRun]) ?? []),
    ...(r.c ? [['C local', r.c.local], ['C ssh', r.c.ssh]] as [string, SyncRun][] : []),
    ...(r.d?.rows.map((d) => [`D ${d.name}`, d.run] as [string, SyncRun]) ?? []),
    ...(r.e?.map((e) => [`E ${e.name}`, e.run] as [string, SyncRun]) ?? []),
  ];
}

export function targets(r: Results): Target[] {
  const t: Target[] = [];
  const add = (name: string, value: number, limit: number, fmt: (n: number) => string) => t.push({ name, value: fmt(value), limit: fmt(limit), pass: value <= limit });
  const noChange = r.a?.rows[0];
  if (noChange) add(`no-change compare of ${gib(r.a!.size)} / parallel xxhsum wall`, noChange.run.wallMs / noChange.xxhsumMs, 2.5, x);
  const caseB = r.a?.rows[1];
  // 54 MB for 4 GiB (bdsync: 59.9 MB), scaled with the image size
  const [caseA1, caseB1] = r.a?.rows ?? [];
  if (caseA1) add('A (a) no change / cat a ‖ cat b (warm)', caseA1.run.wallMs / caseA1.catMs, 1.5, x);
  if (caseB1) add('A (b) 1% changed / cat a ‖ cat b (warm)', caseB1.run.wallMs / caseB1.catMs, 1.5, x);
  for (const c of [caseA1, caseB1]) {
    if (c?.bsfMs !== undefined) add(`A ${c.name.split(' ')[0]} ${c === caseA1 ? 'no change' : '1% changed'} / blocksync-fast (faster: < 1)`, c.run.wallMs / c.bsfMs, 1, x);
  }
  if (r.dd) {
    const n = r.dd.pairs.length;
    add(`full copy wall / dd bs=4M conv=fsync wall (median of ${n} pairs)`, r.dd.run.wallMs / r.dd.dd.wallMs, 2, x);
    add(`full copy CPU (both processes) / dd CPU (that pair)`, (r.dd.run.client.cpuMs + r.dd.run.server.cpuMs) / r.dd.dd.cpuMs, 2, x);
  }
  if (caseB) add(`bytes exchanged, case (b) at 4 KiB, ${gib(r.a!.size)}`, exchanged(caseB.run), 54e6 * (r.a!.size / (4 * 1024 * MIB)), mb);
  for (const side of ['client', 'server'] as const) {
    const runs = allRuns(r);
    if (runs.length === 0) break;
    const [label, run] = runs.reduce((m, e) => (e[1][side].peakRss > m[1][side].peakRss ? e : m));
    add(`peak RSS of every ${side} process (largest: ${label})`, run[side].peakRss, RSS_LIMIT, mib);
  }
  if (r.b && r.b.length > 1) {
    const f = flatness(r.b);
    add(`peak RSS flat over sparse ${r.b.map((b) => gib(b.size)).join(', ')}: client max/min`, f.client, 1.1, x);
    add('peak RSS flat over sparse sizes: server max/min', f.server, 1.1, x);
  }
  if (r.c) {
    add('SSH wall / local wall, same change', r.c.ssh.wallMs / r.c.local.wallMs, 1.2, x);
    add('peak RSS over SSH, client side', r.c.ssh.client.peakRss, RSS_LIMIT, mib);
    add('peak RSS over SSH, server side', r.c.ssh.server.peakRss, RSS_LIMIT, mib);
  }
  for (const row of r.d?.rows ?? []) {
    add(`page cache after D ${row.name}: source`, row.sourceResident, CACHE_LIMIT, mib);
    add(`page cache after D ${row.name}: target`, row.targetResident, CACHE_LIMIT, mib);
  }
  if (r.d?.hot.length) {
    const worst = Math.min(...r.d.hot.map((h) => h.hotResident / h.hotSize));
    add(`hot file kept cached, worst of ${r.d.hot.length} runs (fraction evicted)`, 1 - worst, 1 - HOT_KEPT, (n) => `${(100 * n).toFixed(1)}%`);
  }
  for (const row of r.e ?? []) add(`cold cache, ${row.name} / cold cat a ‖ cat b (median of ${row.pairs.length} pairs)`, row.run.wallMs / row.catMs, 1.3, x);
  if (r.f) {
    add('start-up CPU, blkdelta --version', r.f.versionCpuMs, 150, s);
    add('start-up CPU, blkdelta server', r.f.serverCpuMs, 150, s);
  }
  return t;
}

export function markdownTargets(t: Target[]): string {
  return ['### Targets', '', table(['target', 'measured', 'limit', 'result'], t.map((r) => [r.name, r.value, r.limit, r.pass ? 'PASS' : 'FAIL']))].join('\n');
}
