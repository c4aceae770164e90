// Test helpers for jobs: run the real CLI (bin/blkdelta of this checkout) as a child process,
// optionally as another user, and make a temp dir with image files and a config for N jobs.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { JobState } from '../../src/jobs/state.js';

export const BIN = fileURLToPath(new URL('../../../bin/blkdelta', import.meta.url));

export interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

export interface Spawned { child: ChildProcess; done: Promise<Run> }

/** Starts `blkdelta ARGS`; `user` runs it through runuser (tests run as root). */
export function spawnBlkdelta(args: string[], o: { user?: string; env?: NodeJS.ProcessEnv } = {}): Spawned {
  const argv = o.user ? ['runuser', '-u', o.user, '--', process.execPath, BIN, ...args] : [process.execPath, BIN, ...args];
  const env = { ...process.env, JOURNAL_STREAM: '', ...o.env };
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

export function runBlkdelta(args: string[], o: { user?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return spawnBlkdelta(args, o).done;
}

export interface JobsEnv { dir: string; stateDir: string; config: string; image(job: string, end: 'src' | 'dst'): string }

/**
 * A temp dir with, per job, a random source image and a zeroed target of `size` bytes, and a config
 * (`extra` is appended to every job table; `globals` to the top). Removed after the test.
 */
export function jobsEnv(t: ExecutionContext, jobs: string[], o: { size?: number; extra?: string; globals?: string } = {}): JobsEnv {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-jobs-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const size = o.size ?? 4 * 1024 * 1024;
  const image = (job: string, end: 'src' | 'dst') => join(dir, `${job}.${end}.img`);
  let toml = `state_dir = "${join(dir, 'state')}"\n${o.globals ?? ''}\n`;
  for (const job of jobs) {
    writeRandom(image(job, 'src'), size);
    writeFileSync(image(job, 'dst'), Buffer.alloc(size));
    toml += `\n[jobs.${job}]\nsource = "${image(job, 'src')}"\ntarget = "${image(job, 'dst')}"\n${o.extra ?? ''}\n`;
  }
  const config = join(dir, 'blkdelta.toml');
  writeFileSync(config, toml);
  return { dir, stateDir: join(dir, 'state'), config, image };
}

function writeRandom(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let off = 0; off < size; off += 1 << 20) writeSync(fd, randomBytes(Math.min(1 << 20, size - off)));
  } finally {
    closeSync(fd);
  }
}

/** The job's record file, parsed (throws when missing or not JSON: a test failure). */
export function readState(env: JobsEnv, job: string): JobState {
  return JSON.parse(readFileSync(join(env.stateDir, `${job}.json`), 'utf8')) as JobState;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
