// The bench's VM section (issue 11): incremental against full compare on a 1 GiB thin LV with 1%
// changed in scattered 64 KiB pieces, on real LVM in the VM lane (bench/vm-incremental.sh inside
// test/vm/run-vm.sh). The VM runs without KVM (TCG), so only the ratios count.
//   boot the VM once → facts "R case key value" → table D and two targets per figure:
//   bytes read, each side: >= 20x fewer; wall: >= 5x less.
// Memory: the VM's stdout (a few KiB). Interrupted: run-vm.sh's guest is thrown away; nothing is
// left on this host (its disk images live in run-vm.sh's own temp dir).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Target } from './report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface RunFigures { wallS: number; rssKiB: number; readSource: number; readTarget: number; kind: string }
export interface TableG { changedBytes: number; incremental: RunFigures; full: RunFigures; identical: boolean }

/** Boots the VM with the guest script; the facts, or an Error with the VM's last stderr. */
export function tableG(timeoutS = 3600): Promise<TableG> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['test/vm/run-vm.sh', 'bench/vm-incremental.sh'], {
      cwd: ROOT, maxBuffer: 16 << 20, env: { ...process.env, VM_DISKS: '4G', VM_TIMEOUT: String(timeoutS) },
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

/** Pure: the guest's "R case key value" lines into the table's figures. */
export function parseFacts(stdout: string): TableG {
  const f = new Map<string, string>();
  for (const m of stdout.matchAll(/^R (\S+) (\S+) (.*)$/gm)) f.set(`${m[1]}.${m[2]}`, m[3]!);
  const num = (k: string) => {
    const v = Number(f.get(k));
    if (!Number.isFinite(v)) throw new Error(`VM section: no figure ${k}`);
    return v;
  };
  const run = (c: string): RunFigures => ({
    wallS: num(`${c}.wall`), rssKiB: num(`${c}.rss_kib`), readSource: num(`${c}.read_source`), readTarget: num(`${c}.read_target`), kind: f.get(`${c}.kind`) ?? '',
  });
  return { changedBytes: num('change.bytes'), incremental: run('incremental'), full: run('full'), identical: f.get('check.same_a') === 'yes' && f.get('check.same_b') === 'yes' };
}

const MIB = 1024 * 1024;
const ratio = (a: number, b: number) => (b > 0 ? a / b : Infinity);

export function markdownG(d: TableG): string {
  const row = (name: string, r: RunFigures) =>
    `| ${name} | ${(r.readSource / MIB).toFixed(1)} MiB | ${(r.readTarget / MIB).toFixed(1)} MiB | ${r.wallS.toFixed(1)} s | ${(r.rssKiB / 1024).toFixed(0)} MiB |`;
  return [
    `### G. Incremental vs full compare: 1 GiB thin LV, ${(d.changedBytes / MIB).toFixed(2)} MiB (1%) changed in 64 KiB pieces (VM lane, TCG: only ratios count)`,
    '',
    '| run | read source | read target | wall | peak RSS |',
    '|---|---|---|---|---|',
    row(`incremental (${d.incremental.kind})`, d.incremental),
    row(`full compare`, d.full),
    `| ratio full/incremental | ${ratio(d.full.readSource, d.incremental.readSource).toFixed(1)}x | ${ratio(d.full.readTarget, d.incremental.readTarget).toFixed(1)}x | ${ratio(d.full.wallS, d.incremental.wallS).toFixed(1)}x | |`,
    '',
    `Both targets byte-identical to the source afterwards: ${d.identical ? 'yes' : 'NO'}.`,
  ].join('\n');
}

/** >= 20x fewer bytes read on each side, >= 5x less wall time, the incremental run really incremental, targets identical. */
export function targetsG(d: TableG): Target[] {
  const t = (name: string, r: number, min: number): Target => ({ name, value: `${r.toFixed(1)}x`, limit: `>= ${min}x`, pass: r >= min });
  return [
    t('incremental: fewer bytes read on the source', ratio(d.full.readSource, d.incremental.readSource), 20),
    t('incremental: fewer bytes read on the target', ratio(d.full.readTarget, d.incremental.readTarget), 20),
    t('incremental: less wall time', ratio(d.full.wallS, d.incremental.wallS), 5),
    { name: 'incremental: the run was incremental and both targets identical', value: `${d.incremental.kind}, ${d.identical ? 'identical' : 'DIFFERENT'}`, limit: 'incremental, identical', pass: d.incremental.kind === 'incremental' && d.identical },
  ];
}
