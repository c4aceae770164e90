// The bench's VM section (issue 11): incremental against full compare on thin LVs of 1 GiB and
// 4 GiB with 1% changed in scattered 64 KiB pieces, on real LVM in the VM lane
// (bench/vm-incremental.sh inside test/vm/run-vm.sh). The VM runs without KVM (TCG), so only the
// ratios count; its fixed LVM and Node start-up costs weigh most on the small LV.
//   boot the VM once → facts "R case_MIB key value" → table G, one row pair per size, and the
//   targets: bytes read, each side, each size: >= 20x fewer; wall at the largest size: >= 5x less.
// Memory: the VM's stdout (a few KiB). Interrupted: run-vm.sh's guest is thrown away; nothing is
// left on this host (its disk images live in run-vm.sh's own temp dir).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Target } from './report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface RunFigures { wallS: number; rssKiB: number; readSource: number; readTarget: number; kind: string }
export interface SizeCase { sizeMiB: number; changedBytes: number; incremental: RunFigures; full: RunFigures; identical: boolean }
export interface TableG { cases: SizeCase[] }

/** Boots the VM with the guest script; the facts, or an Error with the VM's last stderr. */
export function tableG(timeoutS = 5400): Promise<TableG> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['test/vm/run-vm.sh', 'bench/vm-incremental.sh'], {
      cwd: ROOT, maxBuffer: 16 << 20, env: { ...process.env, VM_DISKS: '16G', VM_TIMEOUT: String(timeoutS) },
    }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`VM section failed (${err.code ?? err.signal}): ${stderr.slice(-2000)}`));
      try {
        resolve(parseFacts(stdout));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** Pure: the guest's "R case key value" lines into the table's figures, one case per "R size MIB". */
export function parseFacts(stdout: string): TableG {
  const f = new Map<string, string>();
  for (const m of stdout.matchAll(/^R (\S+) (\S+) ?(.*)$/gm)) f.set(`${m[1]}.${m[2]}`, m[3]!);
  const num = (k: string) => {
    const v = Number(f.get(k));
    if (!Number.isFinite(v)) throw new Error(`VM section: no figure ${k}`);
    return v;
  };
  const run = (c: string): RunFigures => ({
    wallS: num(`${c}.wall`), rssKiB: num(`${c}.rss_kib`), readSource: num(`${c}.read_source`), readTarget: num(`${c}.read_target`), kind: f.get(`${c}.kind`) ?? '',
  });
  const sizes = [...stdout.matchAll(/^R size (\d+)/gm)].map((m) => Number(m[1]));
  if (!sizes.length) throw new Error('VM section: no size finished');
  return {
    cases: sizes.map((m) => ({
      sizeMiB: m, changedBytes: num(`change_${m}.bytes`), incremental: run(`incremental_${m}`), full: run(`full_${m}`),
      identical: f.get(`check_${m}.same_a`) === 'yes' && f.get(`check_${m}.same_b`) === 'yes',
    })),
  };
}

const MIB = 1024 * 1024;
const ratio = (a: number, b: number) => (b > 0 ? a / b : Infinity);
const gib = (mib: number) => `${mib / 1024} GiB`;

export function markdownG(d: TableG): string {
  const row = (name: string, r: RunFigures) =>
    `| ${name} | ${(r.readSource / MIB).toFixed(1)} MiB | ${(r.readTarget / MIB).toFixed(1)} MiB | ${r.wallS.toFixed(1)} s | ${(r.rssKiB / 1024).toFixed(0)} MiB |`;
  const rows = d.cases.flatMap((c) => [
    row(`${gib(c.sizeMiB)}: incremental (${c.incremental.kind})`, c.incremental),
    row(`${gib(c.sizeMiB)}: full compare`, c.full),
    `| ${gib(c.sizeMiB)}: ratio full/incremental | ${ratio(c.full.readSource, c.incremental.readSource).toFixed(1)}x | ${ratio(c.full.readTarget, c.incremental.readTarget).toFixed(1)}x | ${ratio(c.full.wallS, c.incremental.wallS).toFixed(1)}x | |`,
  ]);
  return [
    `### G. Incremental vs full compare: thin LVs, 1% changed in 64 KiB pieces (VM lane, TCG: only ratios count)`,
    '',
    '| run | read source | read target | wall | peak RSS |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    `Changed: ${d.cases.map((c) => `${(c.changedBytes / MIB).toFixed(2)} MiB of ${gib(c.sizeMiB)}`).join(', ')}. ` +
      `Both targets byte-identical to the source afterwards: ${d.cases.every((c) => c.identical) ? 'yes' : 'NO'}.`,
  ].join('\n');
}

/**
 * Each size: >= 20x fewer bytes read on each side, the incremental run really incremental, targets
 * identical; the largest size: >= 5x less wall time (the fixed costs of a run weigh less there).
 */
export function targetsG(d: TableG): Target[] {
  const t = (name: string, r: number, min: number): Target => ({ name, value: `${r.toFixed(1)}x`, limit: `>= ${min}x`, pass: r >= min });
  const largest = d.cases.reduce((a, b) => (b.sizeMiB > a.sizeMiB ? b : a));
  return [
    ...d.cases.flatMap((c) => [
      t(`incremental ${gib(c.sizeMiB)}: fewer bytes read on the source`, ratio(c.full.readSource, c.incremental.readSource), 20),
      t(`incremental ${gib(c.sizeMiB)}: fewer bytes read on the target`, ratio(c.full.readTarget, c.incremental.readTarget), 20),
      { name: `incremental ${gib(c.sizeMiB)}: the run was incremental and both targets identical`, value: `${c.incremental.kind}, ${c.identical ? 'identical' : 'DIFFERENT'}`, limit: 'incremental, identical', pass: c.incremental.kind === 'incremental' && c.identical },
    ]),
    t(`incremental ${gib(largest.sizeMiB)}: less wall time`, ratio(largest.full.wallS, largest.incremental.wallS), 5),
  ];
}
