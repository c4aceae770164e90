// Runs one blkdelta command for the bench and measures both of its processes.
//   spawn bin/blkdelta ARGS --json (its shebang node flags apply) with NODE_OPTIONS preloading probe.js and a fresh
//   BLKDELTA_PROBE_DIR; wall = spawn to exit, seen from here; each process (the client, and the
//   `blkdelta server` it spawned, or the one sshd started) writes its own peak RSS and CPU at exit.
// Also times plain commands (xxhsum, cat, ssh) run in parallel, stdout captured or discarded.
// Memory: the client's stdout (a JSON summary) and stderr tail. Interrupted: the probe dir stays
// under the bench's temp dir, which the bench removes.
import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join, delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SyncSummary } from '../src/engine/types.js';
import type { ProbeReport } from './probe.js';

export const BIN = fileURLToPath(new URL('../../bin/blkdelta', import.meta.url));
export const PROBE = fileURLToPath(new URL('./probe.js', import.meta.url));
/** Aborted on SIGINT/SIGTERM: kills the running commands so that every finally-block runs. */
export const benchAbort = new AbortController();

export interface ProcessFigures {
  wallMs: number;
  cpuMs: number;
  userMs: number;
  sysMs: number;
  peakRss: number;
  peakAnon: number;
}

export interface SyncRun {
  wallMs: number;
  summary: SyncSummary;
  client: ProcessFigures;
  server: ProcessFigures;
}

/** Environment that makes every blkdelta process started from it write a probe report to dir. */
export function probeEnv(dir: string): Record<string, string> {
  return { BLKDELTA_PROBE_DIR: dir, NODE_OPTIONS: `--import ${PROBE}` };
}

/** --remote-cmd that starts the remote server with the same probe. */
export function probedRemoteCmd(dir: string): string {
  return `BLKDELTA_PROBE_DIR=${dir} NODE_OPTIONS='--import ${PROBE}' ${BIN}`;
}

/** Runs `blkdelta ARGS --json --no-progress`; throws with its stderr when it fails. */
/** args may depend on the probe dir (an SSH run passes it on --remote-cmd); env drops SSH_AUTH_SOCK. */
/** prefix: a command that execs the rest (same pid), e.g. one that joins a cgroup first. */
export async function runBlkdelta(args: string[] | ((probeDir: string) => string[]), workDir: string, prefix: string[] = []): Promise<SyncRun> {
  const probeDir = mkdtempSync(join(workDir, 'probe-'));
  if (typeof args === 'function') args = args(probeDir);
  const env: NodeJS.ProcessEnv = { ...process.env, ...probeEnv(probeDir) };
  delete env.SSH_AUTH_SOCK;
  const t0 = process.hrtime.bigint();
  const argv = [...prefix, BIN, ...args, '--json', '--no-progress'];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env, signal: benchAbort.signal });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  child.once('error', () => {}); // an abort: reported through the exit status below
  const code = await new Promise<number | null>((r) => child.once('close', r));
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (code !== 0) throw new Error(`blkdelta ${(args as string[]).join(' ')} exited with ${code}:\n${stderr}`);
  const reports = readReports(probeDir);
  const client = reports.find((r) => r.pid === child.pid);
  const server = reports.find((r) => r.pid !== child.pid && r.argv.includes('server'));
  if (!client || !server) throw new Error(`probe reports missing in ${probeDir} (client ${!!client}, server ${!!server})`);
  return { wallMs, summary: parseSummary(stdout, stderr), client: figures(client), server: figures(server) };
}

function parseSummary(stdout: string, stderr: string): SyncSummary {
  try {
    return JSON.parse(stdout) as SyncSummary;
  } catch (err) {
    throw new Error(`blkdelta printed no JSON summary (${(err as Error).message}); stdout: ${stdout.slice(0, 500)}; stderr: ${stderr}`);
  }
}

function readReports(dir: string): ProbeReport[] {
  return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as ProbeReport);
}

function figures(r: ProbeReport): ProcessFigures {
  return { wallMs: r.wallMs, cpuMs: r.userMs + r.sysMs, userMs: r.userMs, sysMs: r.sysMs, peakRss: r.peakRss, peakAnon: r.peakAnon };
}

export interface Command {
  argv: string[];
  /** File given as stdin (default none). */
  stdinFile?: string;
}

/** Runs the commands at the same time; wall from the first start to the last exit, and their stdouts. */
export async function timeParallel(cmds: Command[], keepStdout = true): Promise<{ wallMs: number; stdouts: string[] }> {
  const t0 = process.hrtime.bigint();
  const stdouts = await Promise.all(cmds.map((c) => runOne(c, keepStdout)));
  return { wallMs: Number(process.hrtime.bigint() - t0) / 1e6, stdouts };
}

function runOne(c: Command, keepStdout: boolean): Promise<string> {
  const stdinFd = c.stdinFile ? openSync(c.stdinFile, 'r') : undefined;
  const nullFd = keepStdout ? undefined : openSync('/dev/null', 'w');
  const stdio: StdioOptions = [stdinFd ?? 'ignore', nullFd ?? 'pipe', 'pipe'];
  const child = spawn(c.argv[0], c.argv.slice(1), { stdio, signal: benchAbort.signal });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err = (err + s).slice(-2000)));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      for (const fd of [stdinFd, nullFd]) if (fd !== undefined) closeSync(fd);
      if (code === 0) resolve(out);
      else reject(new Error(`${c.argv.join(' ')} exited with ${code}: ${err}`));
    });
  });
}

/** The tool's path on PATH; throws "X is missing: apt-get install PKG" otherwise. */
export function requireTool(name: string, pkg: string): string {
  const found = findTool(name);
  if (found) return found;
  throw new Error(`${name} is missing: apt-get install ${pkg}`);
}

/** name's path in PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}
