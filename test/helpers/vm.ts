// The VM lane's plumbing for an ava file: one boot of test/vm/run-vm.sh SCRIPT per file, its
// "R <scenario> <key> <value>" facts parsed, and a facts(t, scenario) accessor that fails the
// test with the VM's stderr when the run failed or the scenario printed nothing. No retry: a
// guest that stops making progress times out (124) and fails, with its last lines and run-vm.sh's
// stall report (what each process waits on, the device-mapper state) shown.
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const INSTALL = 'apt-get install qemu-system-x86 busybox-static xz-utils lvm2 thin-provisioning-tools';

export type Facts = Map<string, Map<string, string>>;
export interface VmRun { rc: number | null; how?: string; stdout: string; stderr: string; facts: Facts; seconds?: number }

/** "R scenario key value" lines into scenario → key → value. */
export function parseFacts(stdout: string): Facts {
  const facts: Facts = new Map();
  for (const line of stdout.split('\n')) {
    const m = /^R (\S+) (\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    if (!facts.has(m[1]!)) facts.set(m[1]!, new Map());
    facts.get(m[1]!)!.set(m[2]!, m[3]!);
  }
  return facts;
}

/**
 * Boots the VM once (on first use) with `script` and its `scenarios` (none: the script's own list);
 * `timeoutS` bounds the guest (VM_TIMEOUT).
 */
export function vmLane(script: string, o: { disks?: string; timeoutS: number; scenarios?: string[] }) {
  let run: Promise<VmRun> | undefined;
  const boot = () => new Promise<VmRun>((resolve) => {
    const t0 = Date.now();
    execFile('bash', ['test/vm/run-vm.sh', script, ...(o.scenarios ?? [])], {
      cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, VM_DISKS: o.disks ?? '1G', VM_TIMEOUT: String(o.timeoutS) },
    }, (err, stdout, stderr) => {
      const rc = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      const how = err ? `${err.signal ? `killed by ${err.signal}` : `exit ${String(err.code)}`}: ${err.message.slice(0, 300)}` : 'exit 0';
      resolve({ rc, how, stdout, stderr, facts: parseFacts(stdout), seconds: (Date.now() - t0) / 1000 });
    });
  });
  return async function facts(t: ExecutionContext, scenario: string): Promise<(k: string) => string> {
    t.timeout((o.timeoutS + 120) * 1000);
    const r = await (run ??= boot());
    if (r.rc !== 0) {
      const why = r.rc === 125 && /missing|apt-get/.test(r.stderr) ? `the VM lane cannot run: ${INSTALL}` : `run-vm.sh failed after ${(r.seconds ?? 0).toFixed(0)} s (${r.how ?? '?'})`;
      t.fail(`${why}\nlast facts:\n${r.stdout.split('\n').slice(-4).join('\n').slice(0, 1500)}\nstderr:\n${r.stderr.slice(-6000)}`);
    }
    const f = r.facts.get(scenario);
    if (!f) t.fail(`scenario ${scenario} printed nothing; stderr:\n${r.stderr.slice(-4000)}`);
    t.log(`${scenario}: ${f?.get('seconds') ?? '-'} s of guest time; whole VM run ${(r.seconds ?? 0).toFixed(0)} s`);
    for (const kick of r.stderr.split('\n').filter((l) => /^run-vm: vd[a-z]+: /.test(l))) t.log(kick); // run-vm.sh's disk watchdog acted
    return (k: string) => f?.get(k) ?? `<no ${k}>`;
  };
}

/** An incremental lane's rerun after a kill: it succeeded, the target matches, one base, no stale snapshot. */
export function convergedWithOneBase(t: ExecutionContext, rerun: (k: string) => string, f: (k: string) => string): void {
  t.is(rerun('rc'), '0', rerun('err'));
  t.is(f('same'), 'yes');
  t.is(f('bases'), '1');
  t.is(f('sources'), '0', 'the stale source snapshot was removed');
  t.is(f('metasnap'), '-', 'no metadata snapshot is left reserved');
}
