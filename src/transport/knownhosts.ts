// known_hosts: the OpenSSH host-key check that ssh2 leaves to us.
// Each line is `[@marker] patterns keytype base64 [comment]`; patterns are a comma list of names,
// `[host]:port`, wildcards (* ?), negations (!pat) or one hashed `|1|salt|HMAC-SHA1(salt, name)`.
// The name looked up is `host` on port 22 and `[host]:port` otherwise (as OpenSSH writes it).
//   check(name, key): a matching @revoked line with this key      -> 'changed' (refused)
//                     a matching plain line with this exact key   -> 'ok'
//                     any other matching plain line (any type)    -> 'changed'
//                     no matching line                            -> 'unknown'
// @cert-authority lines are ignored (no certificate support). Malformed lines are skipped, as
// OpenSSH does. appendKnownHost writes one plain line (never hashed) with O_APPEND, creating the
// file 0600; an interruption leaves at most that one line half-written at the end.
// Memory: one known_hosts file at a time.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync, mkdirSync, openSync, writeSync, closeSync, fstatSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { BlkError, ExitCode, describe } from '../errors.js';

export type HostKeyStatus = 'ok' | 'unknown' | 'changed';

export interface KnownHostEntry {
  marker?: 'revoked' | 'cert-authority';
  patterns: string;
  keyType: string;
  key: Buffer;
  file: string;
  line: number;
}

export interface HostKeyVerdict {
  status: HostKeyStatus;
  /** The line that made it 'ok' or 'changed' ("revoked" when a @revoked line matched). */
  entry?: KnownHostEntry;
  revoked?: boolean;
}

/** The name known_hosts stores for host:port (lower-cased, as OpenSSH looks names up and hashes them). */
export function knownHostName(host: string, port = 22): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** OpenSSH-style SHA256 fingerprint: "SHA256:" + base64 without padding. */
export function fingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/** The key type named inside an SSH public key blob (its first length-prefixed string). */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const n = keyBlob.readUInt32BE(0);
  return n > 0 && n < 64 && 4 + n <= keyBlob.length ? keyBlob.subarray(4, 4 + n).toString('latin1') : 'unknown';
}

/** Parses known_hosts text; malformed lines are skipped. */
export function parseKnownHosts(text: string, file = 'known_hosts'): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const e = parseLine(raw, file, i + 1);
    if (e) out.push(e);
  });
  return out;
}

function parseLine(raw: string, file: string, line: number): KnownHostEntry | undefined {
  const fields = raw.trim().split(/\s+/);
  if (fields[0] === '' || fields[0].startsWith('#')) return undefined;
  let marker: KnownHostEntry['marker'];
  if (fields[0].startsWith('@')) {
    const m = fields.shift()!;
    if (m !== '@revoked' && m !== '@cert-authority') return undefined;
    marker = m === '@revoked' ? 'revoked' : 'cert-authority';
  }
  const [patterns, keyType, b64] = fields;
  if (!patterns || !keyType || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) return undefined;
  const key = Buffer.from(b64, 'base64');
  if (keyTypeOf(key) !== keyType) return undefined;
  return { marker, patterns, keyType, key, file, line };
}

/** True when a comma list of patterns (plain, wildcard, negated or one hashed entry) matches name. */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!');
    if (!globMatch(negated ? p.slice(1) : p, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function hashedMatch(entry: string, name: string): boolean {
  const parts = entry.split('|');
  if (parts.length !== 4 || parts[3] === '') return false;
  const salt = Buffer.from(parts[2], 'base64');
  const want = Buffer.from(parts[3], 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

// OpenSSH match_pattern: '*' any run, '?' one char, case-insensitive for host names.
function globMatch(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(name);
}

/** Checks a host key against parsed entries; see the header for the rules. */
export function verdictFor(entries: readonly KnownHostEntry[], host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  const name = knownHostName(host, port);
  const matching = entries.filter((e) => e.marker !== 'cert-authority' && patternsMatch(e.patterns, name));
  const revoked = matching.find((e) => e.marker === 'revoked' && e.key.equals(keyBlob));
  if (revoked) return { status: 'changed', entry: revoked, revoked: true };
  const plain = matching.filter((e) => e.marker === undefined);
  const same = plain.find((e) => e.key.equals(keyBlob));
  if (same) return { status: 'ok', entry: same };
  if (plain.length > 0) return { status: 'changed', entry: plain.find((e) => e.keyType === keyTypeOf(keyBlob)) ?? plain[0] };
  return { status: 'unknown' };
}

/** Reads every existing file of the list (missing files are skipped) and checks the key. */
export function checkHostKeyDetail(files: readonly string[], host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  const entries = files.flatMap((f) => {
    const text = readIfExists(f);
    return text === undefined ? [] : parseKnownHosts(text, f);
  });
  return verdictFor(entries, host, port, keyBlob);
}

/** Key types that plain (not revoked) entries hold for host:port, in file order, without duplicates. */
export function knownKeyTypes(files: readonly string[], host: string, port: number): string[] {
  const name = knownHostName(host, port);
  const types = files.flatMap((f) => {
    const text = readIfExists(f);
    return text === undefined ? [] : parseKnownHosts(text, f);
  }).filter((e) => e.marker === undefined && patternsMatch(e.patterns, name)).map((e) => e.keyType);
  return [...new Set(types)];
}

/** 'ok', 'unknown' or 'changed' for host:port presenting keyBlob, per the known_hosts files. */
export function checkHostKey(files: readonly string[], host: string, port: number, keyBlob: Buffer): HostKeyStatus {
  return checkHostKeyDetail(files, host, port, keyBlob).status;
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BlkError(ExitCode.HOST_KEY, `cannot read known hosts file ${file}: ${describe(err)}`, { cause: err });
  }
}

/** The line appendKnownHost writes (also shown to users as what to add by hand). */
export function knownHostLine(host: string, port: number, keyBlob: Buffer): string {
  return `${knownHostName(host, port)} ${keyTypeOf(keyBlob)} ${keyBlob.toString('base64')}`;
}

/** Appends host:port's key to file (created 0600, its directory 0700), as a plain line. */
export function appendKnownHost(file: string, host: string, port: number, keyType: string, keyBlob: Buffer): void {
  if (keyType !== keyTypeOf(keyBlob)) throw new BlkError(ExitCode.INTERNAL, `key type ${keyType} does not match the key blob`);
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const fd = openSync(file, 'a+', 0o600);
    try {
      const sep = endsWithNewline(fd) ? '' : '\n';
      writeSync(fd, `${sep}${knownHostLine(host, port, keyBlob)}\n`);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new BlkError(ExitCode.HOST_KEY, `cannot add the host key to ${file}: ${describe(err)}`, { cause: err });
  }
}

function endsWithNewline(fd: number): boolean {
  const size = fstatSync(fd).size;
  if (size === 0) return true;
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, size - 1);
  return b[0] === 0x0a;
}
