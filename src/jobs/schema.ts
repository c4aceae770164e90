// The config file's keys: which keys exist where, their types, and how a value is checked and
// converted. Pure: checkValue() returns the converted value or throws a plain Error with the reason;
// config.ts adds file:line:col and the key path.
import { SIZE_POLICIES } from '../engine/types.js';
import { parseDuration, parseSize } from '../units.js';

export type Kind = 'string' | 'path' | 'bool' | 'int' | 'percent' | 'duration' | 'size' | 'sizepolicy' | 'snapshot' | 'argv';
export interface KeySpec { kind: Kind; min?: number; max?: number; pow2?: boolean }

/** Keys a job may set and [defaults] may provide (everything but source, target, snapshot). */
export const SHARED_KEYS: Record<string, KeySpec> = {
  block_size: { kind: 'size', min: 512, max: 16 * 1024 * 1024, pow2: true },
  bwlimit: { kind: 'size', min: 0 }, // 0: no limit (a job unsets an inherited one)
  verify: { kind: 'bool' },
  compress: { kind: 'bool' },
  size_policy: { kind: 'sizepolicy' },
  snapshot_size: { kind: 'string' },
  snapshot_max_fill: { kind: 'percent' },
  pool_max_fill: { kind: 'percent' },
  target_snapshot: { kind: 'bool' },
  target_snapshot_size: { kind: 'string' },
  keep: { kind: 'int', min: 0, max: 1000 },
  keep_last: { kind: 'int', min: 0, max: 1000 },
  keep_hourly: { kind: 'int', min: 0, max: 1000 },
  keep_daily: { kind: 'int', min: 0, max: 1000 },
  keep_weekly: { kind: 'int', min: 0, max: 1000 },
  keep_monthly: { kind: 'int', min: 0, max: 1000 },
  history_verify_every: { kind: 'duration' },
  history: { kind: 'int', min: 1, max: 1000 },
  warning_age: { kind: 'duration' },
  critical_age: { kind: 'duration' },
  max_duration: { kind: 'duration' },
  // hooks (src/jobs/hooks.ts): argv arrays, no shell
  pre_run: { kind: 'argv' },
  post_run: { kind: 'argv' },
  on_failure: { kind: 'argv' },
  hook_timeout: { kind: 'duration', min: 1, max: 24 * 3600 },
  // incremental runs on a thin LV source (src/lvm/incremental.ts)
  incremental: { kind: 'bool' },
  sample_blocks: { kind: 'int', min: 0, max: 1_000_000 },
  full_compare_every: { kind: 'duration' },
};

export const JOB_KEYS: Record<string, KeySpec> = {
  source: { kind: 'string' },
  target: { kind: 'string' },
  snapshot: { kind: 'snapshot' },
  ...SHARED_KEYS,
};

/** [jobs.NAME.ssh] and [defaults.ssh]: how to reach a remote end. */
export const SSH_KEYS: Record<string, KeySpec> = {
  port: { kind: 'int', min: 1, max: 65535 },
  identity: { kind: 'path' },
  known_hosts: { kind: 'path' },
  remote_cmd: { kind: 'string' },
  connect_timeout: { kind: 'duration' },
};

export const GLOBAL_KEYS: Record<string, KeySpec> = {
  state_dir: { kind: 'path' },
  max_concurrent: { kind: 'int', min: 1, max: 64 },
  wait_timeout: { kind: 'duration' },
  metrics_file: { kind: 'path' },
};

/** Tables that hold keys rather than values. */
export const TABLES = new Set(['defaults', 'jobs', 'ssh']);

const TYPE_NAME: Record<Kind, string> = {
  string: 'a string', path: 'an absolute path string', bool: 'true or false', int: 'an integer',
  percent: 'a number from 1 to 100', duration: 'a duration (seconds, or a string like "36h")',
  size: 'a size (bytes, or a string like "64K")', sizepolicy: `one of ${SIZE_POLICIES.join(', ')}`,
  snapshot: 'true, false or "VG/LV"',
  argv: 'a command as an array of strings, like ["/usr/local/bin/x", "arg"]',
};

/** The converted value, or throws with what is wrong ("expected an integer, got string"). */
export function checkValue(spec: KeySpec, v: unknown): unknown {
  const got = () => new Error(`expected ${TYPE_NAME[spec.kind]}, got ${describeValue(v)}`);
  switch (spec.kind) {
    case 'bool':
      if (typeof v !== 'boolean') throw got();
      return v;
    case 'string':
    case 'path':
      if (typeof v !== 'string') throw got();
      if (v === '') throw new Error('must not be empty');
      if (spec.kind === 'path' && !v.startsWith('/')) throw new Error(`"${v}" is not an absolute path`);
      return v;
    case 'int':
    case 'percent':
      if (typeof v !== 'number' || (spec.kind === 'int' && !Number.isInteger(v))) throw got();
      return inRange(v, spec.kind === 'percent' ? { min: 1, max: 100 } : spec);
    case 'duration':
      if (typeof v !== 'number' && typeof v !== 'string') throw got();
      return inRange(parseDuration(v), spec);
    case 'argv':
      return argvOf(v, got);
    case 'size':
      if (typeof v !== 'number' && typeof v !== 'string') throw got();
      return powerOfTwo(inRange(parseSize(v, 'value'), spec), spec);
    case 'sizepolicy':
      if (typeof v !== 'string' || !(SIZE_POLICIES as readonly string[]).includes(v)) throw got();
      return v;
    case 'snapshot':
      if (typeof v === 'boolean') return v;
      if (typeof v !== 'string' || !/^[A-Za-z0-9+_.-]+\/[A-Za-z0-9+_.-]+$/.test(v)) throw got();
      return v;
  }
}

/** A hook command: a non-empty array of strings, no empty program name, no NUL (no shell runs it). */
function argvOf(v: unknown, got: () => Error): string[] {
  if (!Array.isArray(v) || v.length === 0) throw Array.isArray(v) ? new Error('must name a program: the array is empty') : got();
  v.forEach((a, i) => {
    if (typeof a !== 'string') throw new Error(`element ${i} is ${describeValue(a)}, expected a string`);
    if (a.includes('\0')) throw new Error(`element ${i} contains a NUL character`);
  });
  if (v[0] === '') throw new Error('the program (element 0) must not be empty');
  return v as string[];
}

function powerOfTwo(n: number, spec: KeySpec): number {
  if (spec.pow2 && (n & (n - 1)) !== 0) throw new Error(`${n} is not a power of two`);
  return n;
}

function inRange(n: number, r: { min?: number; max?: number }): number {
  if (r.min !== undefined && n < r.min) throw new Error(`${n} is below the minimum ${r.min}`);
  if (r.max !== undefined && n > r.max) throw new Error(`${n} is above the maximum ${r.max}`);
  return n;
}

export function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'object') return v.constructor?.name === 'TomlDate' ? 'a date' : 'a table';
  return `${typeof v === 'number' && Number.isInteger(v) ? 'integer' : typeof v} ${JSON.stringify(v)}`;
}
