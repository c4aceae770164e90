// Test helpers for docs/monitoring.md: find its fenced config blocks by their first line (a comment
// naming the file the block goes into), and run the real icinga2 / nagios4 binaries on a temp dir.
// icinga2 gets every path it writes (data, log, cache, spool, run) pointed into that dir with -D
// constants and runs as the current user, so nothing under /etc, /var or /run is touched.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DOC = fileURLToPath(new URL('../../../docs/monitoring.md', import.meta.url));
export const INSTALL_HINT = 'apt-get install icinga2-bin nagios4-core (or run .ci/install-deps)';

export interface DocBlock { first: string; body: string }

/** Every fenced block of the doc, with its first line. */
export function docBlocks(text = readFileSync(DOC, 'utf8')): DocBlock[] {
  const blocks: DocBlock[] = [];
  const re = /^```[^\n]*\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) blocks.push({ first: m[1]!.split('\n')[0]!, body: m[1]! });
  return blocks;
}

/** The one block whose first line starts with `marker`; throws naming the marker otherwise. */
export function docBlock(marker: string): string {
  const found = docBlocks().filter((b) => b.first.startsWith(marker));
  if (found.length !== 1) throw new Error(`docs/monitoring.md: expected one fenced block starting with "${marker}", found ${found.length}`);
  return found[0]!.body;
}

/** Throws with the install hint when a binary is missing (a test failure, never a skip). */
export function requireBinary(path: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: ${INSTALL_HINT}`);
}

export const ICINGA2 = '/usr/sbin/icinga2';
export const NAGIOS4 = '/usr/sbin/nagios4';

/** -D constants that move all of icinga2's state into `dir` (created) and run it as this user. */
export function icingaDefines(dir: string): string[] {
  const sub = { DataDir: 'data', LogDir: 'log', CacheDir: 'cache', SpoolDir: 'spool', InitRunDir: 'run', ConfigDir: 'etc' };
  const defs = Object.entries(sub).map(([k, v]) => {
    mkdirSync(join(dir, v), { recursive: true });
    return `-D${k}=${join(dir, v)}`;
  });
  const me = userInfo();
  const group = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
  return [...defs, `-DZonesDir=${join(dir, 'etc', 'zones.d')}`, `-DRunAsUser=${me.username}`, `-DRunAsGroup=${group}`];
}

export function runSync(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return r;
}

/** `icinga2 object list` output split into objects: "Service db1!blkdelta-db" -> its text. */
export function icingaObjects(listing: string): Map<string, string> {
  const objects = new Map<string, string>();
  for (const part of listing.split(/^(?=Object ')/m)) {
    const m = /^Object '([^']+)' of type '([^']+)'/.exec(part);
    if (m) objects.set(`${m[2]} ${m[1]}`, part);
  }
  return objects;
}

/**
 * Runs `icinga2 daemon` in the foreground until `doneLine` appears in its log (or `timeoutMs`),
 * then SIGTERMs it (it dumps its state) and waits for it to exit. Returns its log.
 */
export async function runIcingaUntil(args: string[], doneLine: RegExp, timeoutMs = 20_000): Promise<string> {
  const child = spawn(ICINGA2, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', () => resolve());
  });
  const seen = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const onData = (d: Buffer) => {
      log += d.toString();
      if (doneLine.test(log)) { clearTimeout(timer); resolve(); }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('close', () => { clearTimeout(timer); resolve(); });
  });
  try {
    await seen;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await workerGone(log);
  }
  return log;
}

/** The umbrella process may exit before its worker: wait for the worker (by PID) to be gone too. */
async function workerGone(log: string): Promise<void> {
  const pid = Number(/Spawned worker process \(PID (\d+)\)/.exec(log)?.[1]);
  if (!pid) return;
  const alive = () => {
    try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
  };
  for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
  if (alive()) process.kill(pid, 'SIGKILL');
}

/** The objects of an icinga2.state file (netstrings of JSON: `LEN:{...},`). */
export function icingaState(path: string): Array<{ name: string; type: string; update: Record<string, unknown> }> {
  const s = readFileSync(path);
  const out = [];
  for (let i = 0; i < s.length;) {
    const colon = s.indexOf(':', i);
    const len = Number(s.subarray(i, colon).toString());
    out.push(JSON.parse(s.subarray(colon + 1, colon + 1 + len).toString()));
    i = colon + 1 + len + 1;
  }
  return out;
}
