// Benchmark probe, preloaded into every blkdelta process of a bench run with
//   NODE_OPTIONS="--import <dist/bench/probe.js>" BLKDELTA_PROBE_DIR=<dir>
// (the client passes its environment to the local server it spawns; over SSH the bench puts
// both variables on --remote-cmd). When the process exits it writes DIR/<pid>.json: peak RSS
// (VmHWM from /proc/self/status, exact: the kernel keeps the high-water mark), user and system
// CPU of this process alone (children excluded), its uptime and argv. Not imported by blkdelta.
// With BLKDELTA_PROBE_CPUPROF=1 it also profiles the process (node:inspector, in-process) and
// writes DIR/<pid>.cpuprofile (open in Chrome DevTools, or `node dist/bench/profile-top.js DIR`).
// With BLKDELTA_PROBE_MEM=1 it samples process.memoryUsage() (what the peak is made of).
// Killed by a signal, the process writes nothing and the bench reports the probe as missing.
import { openSync, readSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

export interface ProbeReport {
  pid: number;
  ppid: number;
  argv: string[];
  /** Peak resident set size, bytes (VmHWM: includes the node binary's shared, clean file pages). */
  peakRss: number;
  /** Largest RssAnon seen, sampling every 20 ms and at exit: memory private to this process. */
  peakAnon: number;
  userMs: number;
  sysMs: number;
  /** From process start to exit, ms. */
  wallMs: number;
  exitCode: number;
  /** With BLKDELTA_PROBE_MEM=1: largest values seen by sampling process.memoryUsage() every 10 ms. */
  memory?: Record<string, number>;
}

/** A "NAME:   123 kB" field of /proc/self/status in bytes. */
export function statusBytes(status: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!m) throw new Error(`no ${name} line in /proc/self/status`);
  return Number(m[1]) * 1024;
}

// Read through one fd into one buffer: sampling must not add malloc'd garbage of its own.
const statusBuf = Buffer.alloc(8192);
let statusFd: number | undefined;
const status = (): string => {
  statusFd ??= openSync('/proc/self/status', 'r');
  return statusBuf.toString('latin1', 0, readSync(statusFd, statusBuf, 0, statusBuf.length, 0));
};

const dir = process.env.BLKDELTA_PROBE_DIR;
if (dir) {
  const profiler = process.env.BLKDELTA_PROBE_CPUPROF === '1' ? startProfiler() : undefined;
  const memory = process.env.BLKDELTA_PROBE_MEM === '1' ? sampleMemory() : undefined;
  let peakAnon = 0;
  const sampleAnon = () => (peakAnon = Math.max(peakAnon, statusBytes(status(), 'RssAnon')));
  setInterval(sampleAnon, 20).unref();
  process.on('exit', (code) => {
    sampleAnon();
    profiler?.(join(dir, `${process.pid}.cpuprofile`));
    const cpu = process.cpuUsage();
    const report: ProbeReport = {
      pid: process.pid, ppid: process.ppid, argv: process.argv.slice(1),
      peakRss: statusBytes(status(), 'VmHWM'), peakAnon,
      userMs: cpu.user / 1000, sysMs: cpu.system / 1000, wallMs: process.uptime() * 1000, exitCode: code, memory,
    };
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify(report) + '\n');
  });
}

/** Starts the V8 CPU profiler; the returned function stops it and writes the profile (synchronously). */
function startProfiler(): (path: string) => void {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  return (path) => {
    // an in-process session answers synchronously, so this works inside an 'exit' listener
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(path, JSON.stringify(res.profile));
    });
  };
}

/** Keeps the largest rss, heapTotal, heapUsed, external and arrayBuffers seen (bytes). */
function sampleMemory(): Record<string, number> {
  const max: Record<string, number> = {};
  const sample = () => {
    for (const [k, v] of Object.entries(process.memoryUsage())) max[k] = Math.max(max[k] ?? 0, v);
  };
  setInterval(sample, 10).unref();
  return max;
}
