// What a locked-down `blkdelta server --allow GLOB... --read-only` lets a client open.
// The server checks every HELLO in two steps:
//   checkRequest, on the path as sent: it must be absolute and normalized (no NUL or newline, no
//   '.' or '..' component, no '//', no trailing '/'); with readOnly every write (sync target) is
//   refused;
//   checkAllowed, on the names of what the path resolves to (io/device.ts: symlinks followed, and
//   for a device-mapper device the kernel's /dev/mapper/NAME and /dev/VG/LV), before the open and
//   again on the opened file: one of them must match one glob of the allow list (no list:
//   anything goes). A symlink in an allowed directory that points outside the list is refused; a
//   hard link is a second name of the same file, and the administrator's business.
// Globs: '*' is any run of characters except '/', '?' one character except '/', '[...]' a class
// ('[!...]' or '[^...]' negated, ranges a-z); a backslash quotes the next character. An empty
// glob is a usage error, never "everything". Pure functions, no I/O.
import type { Retention } from '../lvm/retention.js';
import { BlkError, ExitCode } from '../errors.js';
import { DEFAULT_COW_SIZE } from '../lvm/argv.js';
import { DEFAULT_POOL_MAX_FILL } from '../lvm/pool.js';

export type { Retention }; // its home is lvm/retention.ts

export interface ServerPolicy {
  /** Globs of the device paths a client may open; empty = everything. */
  allow: string[];
  /** Refuse every write: the server only serves as a sync source or verify peer. */
  readOnly: boolean;
}

export const OPEN_POLICY: ServerPolicy = { allow: [], readOnly: false };

/** checkRequest and checkAllowed on the path itself, for a path that is no symlink. */
export function checkDevice(policy: ServerPolicy, path: string, write: boolean): void {
  checkRequest(policy, path, write);
  checkAllowed(policy, [path], path);
}

/** Throws BlkError PERMISSION when the path as sent is malformed, or a write on a read-only server. */
export function checkRequest(policy: ServerPolicy, path: string, write: boolean): void {
  const why = malformed(path);
  if (why) throw refuse(`device path ${JSON.stringify(path)} ${why}`);
  if (write && policy.readOnly) throw refuse(`device ${path} cannot be written: the server runs with --read-only`);
}

/** Throws BlkError PERMISSION unless one of the resolved names matches the allow list. */
export function checkAllowed(policy: ServerPolicy, names: readonly string[], requested: string): void {
  if (policy.allow.length === 0) return;
  if (names.some((n) => policy.allow.some((g) => globToRegExp(g).test(n)))) return;
  const via = names[0] !== undefined && names[0] !== requested ? ` (it resolves to ${names[0]})` : '';
  throw refuse(`device ${requested}${via} is outside the server's --allow list (${policy.allow.join(' ')})`);
}

function refuse(msg: string): BlkError {
  return new BlkError(ExitCode.PERMISSION, `refused by the server: ${msg}`);
}

// Why a path is not an absolute normalized path, or undefined when it is one.
function malformed(path: string): string | undefined {
  if (path === '') return 'is empty';
  if (/[\0\n\r]/.test(path)) return 'contains a NUL or newline character';
  if (!path.startsWith('/')) return 'is not absolute';
  if (path.includes('//')) return "contains '//'";
  if (path.length > 1 && path.endsWith('/')) return "ends with '/'";
  const parts = path.split('/');
  if (parts.includes('..')) return "contains a '..' component";
  if (parts.includes('.')) return "contains a '.' component";
  return undefined;
}

/** Compiles one allow glob; throws BlkError USAGE naming it when it is malformed. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = classEnd(glob, i);
      re += classToRegExp(glob.slice(i + 1, end));
      i = end;
    } else if (c === '\\' && i + 1 < glob.length) re += escape(glob[++i]);
    else re += escape(c);
  }
  return new RegExp(`^${re}$`);
}

// Index of the ']' closing the class opened at i ('[]...]' and '[!]...]' keep a leading ']').
function classEnd(glob: string, i: number): number {
  let j = i + 1;
  if (glob[j] === '!' || glob[j] === '^') j++;
  if (glob[j] === ']') j++;
  const end = glob.indexOf(']', j);
  if (end < 0) throw new BlkError(ExitCode.USAGE, `bad --allow glob "${glob}": '[' without a closing ']'`);
  return end;
}

function classToRegExp(body: string): string {
  const negated = body.startsWith('!') || body.startsWith('^');
  const chars = (negated ? body.slice(1) : body).replace(/[\\\]^]/g, '\\$&');
  return negated ? `(?!/)[^${chars}]` : `(?!/)[${chars}]`;
}

function escape(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Validates the globs of a command line up front, so a typo fails at start, not at HELLO. */
export function makePolicy(allow: readonly string[] | undefined, readOnly: boolean | undefined): ServerPolicy {
  const globs = [...(allow ?? [])];
  for (const g of globs) {
    if (g === '') throw new BlkError(ExitCode.USAGE, 'bad --allow glob "": an empty glob names no device (it never means "everything"); give a path pattern such as /dev/backup/*');
    if (!g.startsWith('/')) throw new BlkError(ExitCode.USAGE, `bad --allow glob "${g}": must be an absolute path pattern`);
    globToRegExp(g);
  }
  return { allow: globs, readOnly: !!readOnly };
}

/**
 * What `blkdelta server --config FILE` sets beyond allow/readOnly ([server] and its sub-tables,
 * docs/ssh.md). Absent fields: the built-in defaults; an absent table: that feature is refused.
 */
export interface ServerConfig extends ServerPolicy {
  /** Sessions at once on this host, across all server processes (absent: no limit). */
  maxConcurrent?: number;
  /** How long a session over the limit waits for a slot, in seconds (then exit 17). */
  waitTimeout?: number;
  stateDir?: string;
  /** [server.source_snapshot]: what a pull may snapshot here (absent: pulls cannot snapshot). */
  sourceSnapshot?: { size: string; maxFill: number; poolMaxFill: number; incremental?: false };
  /** [server.target_snapshot]: history of every target written here (absent: refused, exit 12). */
  targetSnapshot?: { size: string; poolMaxFill: number; retention: Retention };
}

// The defaults live here, not in config.ts: a server without --config never loads that (nor the
// TOML reader behind it).
/** Longest wait_timeout / --wait-timeout: a week. */
export const MAX_WAIT_TIMEOUT = 7 * 86400;
/** wait_timeout (seconds) when max_concurrent is set and neither the file nor a flag says. */
export const DEFAULT_WAIT_TIMEOUT = 30 * 60;

/**
 * What a plain `blkdelta server` (no --config, no --allow: it already opens anything) uses: COW
 * 20%ORIGIN for a non-thin origin (a thin origin gets a thin snapshot), stop only on an
 * overflow, and the default pool_max_fill.
 */
export const DEFAULT_SOURCE_SNAPSHOT: NonNullable<ServerConfig['sourceSnapshot']> = { size: DEFAULT_COW_SIZE, maxFill: 100, poolMaxFill: DEFAULT_POOL_MAX_FILL };
