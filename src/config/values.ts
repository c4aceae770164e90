// Config values by kind (the jobs file and the server's file share them): checkValue() returns the
// converted value or throws a plain Error saying what is wrong; the caller adds file:line:col and
// the key path. Pure.
import { SIZE_POLICIES } from '../engine/types.js';
import { parseDuration, parseSize } from '../units.js';

export type Kind = 'string' | 'path' | 'bool' | 'int' | 'percent' | 'duration' | 'size' | 'sizepolicy' | 'snapshot' | 'argv';
export interface KeySpec { kind: Kind; min?: number; max?: number; pow2?: boolean }

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

/** "integer 5", "a table", "nothing"...: what a value is, for messages. */
export function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'object') return v.constructor?.name === 'TomlDate' ? 'a date' : 'a table';
  return `${typeof v === 'number' && Number.isInteger(v) ? 'integer' : typeof v} ${JSON.stringify(v)}`;
}
