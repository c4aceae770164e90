// Benchmark probe, preloaded into every blkdelta process of a bench run with
//   NODE_OPTIONS="--import <dist/bench/probe.js>" BLKDELTA_PROBE_DIR=<dir>
// (the client passes its environment to the local server it spawns; over SSH the bench puts
// both variables on --remote-cmd). When the process exits it writes DIR/<pid>.json: peak RSS
// (VmHWM from /proc/self/status, exact: the kernel keeps the high-water mark), user and system
// CPU of this process alone (children excluded), its uptime and argv. Not imported by blkdelta.
// Killed by a signal, the process writes nothing and the bench reports the probe as missing.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ProbeReport {
  pid: number;
  ppid: number;
  argv: string[];
  /** Peak resident set size, bytes. */
  peakRss: number;
  userMs: number;
  sysMs: number;
  /** From process start to exit, ms. */
  wallMs: number;
  exitCode: number;
}

/** VmHWM of /proc/self/status in bytes. */
export function peakRssBytes(status: string): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!m) throw new Error('no VmHWM line in /proc/self/status');
  return Number(m[1]) * 1024;
}

const dir = process.env.BLKDELTA_PROBE_DIR;
if (dir) {
  process.on('exit', (code) => {
    const cpu = process.cpuUsage();
    const report: ProbeReport = {
      pid: process.pid, ppid: process.ppid, argv: process.argv.slice(1),
      peakRss: peakRssBytes(readFileSync('/proc/self/status', 'utf8')),
      userMs: cpu.user / 1000, sysMs: cpu.system / 1000, wallMs: process.uptime() * 1000, exitCode: code,
    };
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify(report) + '\n');
  });
}
