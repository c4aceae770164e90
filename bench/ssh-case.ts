// Table C of `npm run bench`: the same 1%-of-4-KiB-blocks change pushed over the local transport
// and over SSH to a private sshd on 127.0.0.1 (test/helpers/sshd.ts: its own host and user keys,
// known_hosts, stopped by PID), in the same run on the same images:
//   three times: change b (seed 2) → sync a b (local) → change b again (same seed, same blocks)
//   → sync a ssh://root@127.0.0.1:PORT/b --identity K --known-hosts F (remote server probed
//     through --remote-cmd); xxhsum a b must match after each; the fastest run of each is kept
//     (this machine is shared: the minimum of three is the steadier estimate)
//   → ssh 127.0.0.1 'cat > /dev/null' < file of the changed amount (OpenSSH client, same sshd)
//   → ssh 127.0.0.1 true: what opening a session costs on this sshd, paid once by every SSH sync
// Each SSH run also reports the CPU of sshd and the login shell's start-up (the sshd's reaped
// descendants, less the probed server's own): sshd copied its buffers for a whole second in some
// runs here (perf: memmove and page faults in sshd, with both blkdelta ends idle), in others not.
// Memory: see images.ts. Interrupted: the sshd is stopped in finally; files stay in the work dir.
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { startSshd, type TestSshd } from '../test/helpers/sshd.js';
import { bestOf2, BLOCK, MIB, type Images } from './cases.js';
import { changeRandomBlocks } from './images.js';
import { probedRemoteCmd, runBlkdelta, timeParallel, type SyncRun } from './measure.js';

export interface TableC {
  size: number;
  changedBytes: number;
  local: SyncRun;
  ssh: SyncRun;
  /** OpenSSH `ssh host 'cat > /dev/null' < changed-amount file`. */
  sshCatMs: number;
  /** OpenSSH `ssh host true`: session setup alone. */
  sshTrueMs: number;
  /** CPU of sshd and the login shell (not the server) in each SSH run, in run order; the fastest run's is `ssh`'s. */
  sshdCpuMs: number[];
  /** Which of sshdCpuMs is the fastest run's. */
  sshdOfFastest: number;
  /** CPU of the whole session (sshd, the shell, cat) of one `ssh host 'cat > /dev/null'` of the changed amount, and of one `ssh host true`. */
  sshCatCpuMs: number;
  sshTrueCpuMs: number;
}

export async function tableC(img: Images, dir: string): Promise<TableC> {
  const sshd = await startSshd();
  try {
    let changedBytes = 0;
    const dst = `ssh://${sshd.user}@127.0.0.1:${sshd.port}${img.b}`;
    const viaSsh = (probeDir: string) => ['sync', img.a, dst, '--identity', sshd.userKey.privatePath,
      '--known-hosts', sshd.knownHosts, '--remote-cmd', probedRemoteCmd(probeDir)];
    const runs: Record<'local' | 'ssh', SyncRun[]> = { local: [], ssh: [] };
    const sshdCpuMs: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (const name of ['local', 'ssh'] as const) {
        const changed = (changedBytes = changeRandomBlocks(img.b, img.size, BLOCK, 0.01, 2));
        const reaped = reapedCpuMs(sshd.pid);
        const run = await runBlkdelta(name === 'local' ? ['sync', img.a, img.b] : viaSsh, dir);
        if (name === 'ssh') sshdCpuMs.push((await sessionCpuMs(sshd, reaped)) - run.server.cpuMs);
        if (run.summary.blocksDiffering * BLOCK !== changed) {
          throw new Error(`ssh case, ${name} sync: ${run.summary.blocksDiffering} blocks differed, the bench changed ${changed / BLOCK}`);
        }
        await checkEqual(img);
        runs[name].push(run);
      }
    }
    const faster = (r: SyncRun[]) => r.reduce((a, b) => (b.wallMs < a.wallMs ? b : a));
    const [local, ssh] = [faster(runs.local), faster(runs.ssh)];
    const data = join(dir, 'changed.bin');
    copyPrefix(img.a, data, changedBytes);
    const sshCat = () => timeParallel([{ argv: [...sshd.rshArgv(), '127.0.0.1', 'cat > /dev/null'], stdinFile: data }], false);
    const sshTrue = () => timeParallel([{ argv: [...sshd.rshArgv(), '127.0.0.1', 'true'] }], false);
    const sshCatMs = await bestOf2(sshCat);
    const sshTrueMs = await bestOf2(sshTrue);
    // once more each, for the CPU of their sessions (sshd, the shell, cat)
    const sessionCpu = async (run: () => Promise<unknown>) => {
      const reaped = reapedCpuMs(sshd.pid);
      await run();
      return sessionCpuMs(sshd, reaped);
    };
    const sshCatCpuMs = await sessionCpu(sshCat);
    const sshTrueCpuMs = await sessionCpu(sshTrue);
    return { size: img.size, changedBytes, local, ssh, sshCatMs, sshTrueMs, sshdCpuMs, sshdOfFastest: runs.ssh.indexOf(ssh), sshCatCpuMs, sshTrueCpuMs };
  } finally {
    await sshd.stop();
  }
}

/** CPU (ms) of what the sshd has reaped so far: its sessions, with their shells and servers (cutime + cstime, USER_HZ 100). */
function reapedCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return (Number(f[13]) + Number(f[14])) * 10;
}

/** The CPU of the session that just ended: waits until the sshd has reaped it (its session processes gone; at most 10 s). */
async function sessionCpuMs(sshd: TestSshd, before: number): Promise<number> {
  for (let i = 0; i < 200 && sshd.sessionPids().length; i++) await sleep(50);
  if (sshd.sessionPids().length) throw new Error('ssh case: the sshd session outlived its sync by 10 s');
  return reapedCpuMs(sshd.pid) - before;
}

async function checkEqual(img: Images): Promise<void> {
  const xx = await timeParallel([{ argv: ['xxhsum', '-H1', img.a] }, { argv: ['xxhsum', '-H1', img.b] }]);
  const [ha, hb] = xx.stdouts.map((s) => s.split(/\s/)[0]);
  if (ha !== hb) throw new Error(`ssh case: ${img.b} differs from ${img.a} after the sync over SSH`);
}

/** Copies the first n bytes of from into a new file to (random data: nothing for ssh to compress). */
function copyPrefix(from: string, to: string, n: number): void {
  const src = openSync(from, 'r');
  const dst = openSync(to, 'w');
  const buf = Buffer.alloc(MIB);
  try {
    for (let pos = 0; pos < n; pos += MIB) {
      const len = readSync(src, buf, 0, Math.min(MIB, n - pos), pos);
      writeSync(dst, buf, 0, len, pos);
    }
  } finally {
    closeSync(src);
    closeSync(dst);
  }
}
