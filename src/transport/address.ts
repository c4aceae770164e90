// Endpoint addresses: tells a local path from a remote one, the way scp does.
//   /dev/x, ./img, ../a:b        local (a path starting with '/' or '.' is local even with a ':')
//   host:/dev/x, user@host:/dev/x, [::1]:/dev/x, user@[fe80::1]:/dev/x   remote, scp-style
//   ssh://user@host:2222/dev/x, ssh://[::1]/dev/x                         remote, URL form
//   anything without a ':' before its first '/'                           local
// A user or host starting with '-' is refused (ssh would take it for an option).
// Pure string work; bad remote addresses throw BlkError USAGE naming the address.
import { BlkError, ExitCode } from '../errors.js';

export type Endpoint =
  | { kind: 'local'; path: string }
  | { kind: 'remote'; user?: string; host: string; port?: number; path: string };

export type RemoteEndpoint = Extract<Endpoint, { kind: 'remote' }>;

/** Parses SRC or DST of a command line into a local path or a remote [user@]host[:port] and path. */
export function parseEndpoint(s: string): Endpoint {
  if (s === '') throw bad(s, 'empty');
  if (s.startsWith('ssh://')) return parseUrl(s);
  if (s.startsWith('/') || s.startsWith('.')) return { kind: 'local', path: s };
  const colon = hostEnd(s);
  if (colon < 0) return { kind: 'local', path: s };
  const { user, host } = splitUser(s, s.slice(0, colon));
  const path = s.slice(colon + 1);
  if (path === '') throw bad(s, 'no device path after the host');
  return remote(s, user, host, undefined, path);
}

/** "user@host:2222" style label for messages. */
export function formatRemote(e: RemoteEndpoint): string {
  const host = e.host.includes(':') ? `[${e.host}]` : e.host;
  return `${e.user ? e.user + '@' : ''}${host}${e.port ? ':' + e.port : ''}`;
}

// Index of the ':' that ends the host part, or -1 when the string is a local path.
function hostEnd(s: string): number {
  const at = s.indexOf('@');
  const hostStart = at >= 0 && at < firstOf(s, ':/') ? at + 1 : 0;
  if (s[hostStart] === '[') {
    const close = s.indexOf(']', hostStart);
    if (close < 0) throw bad(s, "missing ']' after an IPv6 address");
    if (s[close + 1] !== ':') throw bad(s, "expected ':' after ']'");
    return close + 1;
  }
  const colon = s.indexOf(':');
  const slash = s.indexOf('/');
  if (colon < 0 || (slash >= 0 && slash < colon)) return -1;
  return colon;
}

function firstOf(s: string, chars: string): number {
  let best = s.length;
  for (const c of chars) {
    const i = s.indexOf(c);
    if (i >= 0 && i < best) best = i;
  }
  return best;
}

function splitUser(whole: string, hostPart: string): { user?: string; host: string } {
  const at = hostPart.lastIndexOf('@');
  let host = at >= 0 ? hostPart.slice(at + 1) : hostPart;
  const user = at >= 0 ? hostPart.slice(0, at) : undefined;
  if (user === '') throw bad(whole, "empty user name before '@'");
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { user, host };
}

function parseUrl(s: string): Endpoint {
  const rest = s.slice('ssh://'.length);
  const slash = rest.indexOf('/', rest.startsWith('[') ? rest.indexOf(']') : 0);
  if (slash < 0) throw bad(s, 'no device path after the host');
  const authority = rest.slice(0, slash);
  const at = authority.lastIndexOf('@');
  const user = at >= 0 ? unescape(s, authority.slice(0, at)) : undefined;
  if (user === '') throw bad(s, "empty user name before '@'");
  const { host, port } = splitPort(s, at >= 0 ? authority.slice(at + 1) : authority);
  return remote(s, user, host, port, unescape(s, rest.slice(slash)));
}

// "host", "host:22", "[::1]", "[::1]:22" -> host and optional port.
function splitPort(whole: string, hp: string): { host: string; port?: number } {
  if (hp.startsWith('[')) {
    const close = hp.indexOf(']');
    if (close < 0) throw bad(whole, "missing ']' after an IPv6 address");
    const after = hp.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw bad(whole, "expected ':' after ']'");
    return { host: hp.slice(1, close), port: after ? parsePort(whole, after.slice(1)) : undefined };
  }
  const colon = hp.lastIndexOf(':');
  if (colon < 0) return { host: hp };
  return { host: hp.slice(0, colon), port: parsePort(whole, hp.slice(colon + 1)) };
}

function unescape(whole: string, p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw bad(whole, `bad %-escape in "${p}"`);
  }
}

function parsePort(whole: string, p: string): number {
  const n = Number(p);
  if (p === '' || !Number.isInteger(n) || n < 1 || n > 65535) throw bad(whole, `bad port "${p}"`);
  return n;
}

function remote(whole: string, user: string | undefined, host: string, port: number | undefined, path: string): RemoteEndpoint {
  if (host === '') throw bad(whole, 'empty host name');
  if (/[\s/]/.test(host) || host.startsWith('-')) throw bad(whole, `bad host name "${host}"${host.startsWith('-') ? " (it starts with '-', which ssh would read as an option)" : ''}`);
  if (user?.startsWith('-')) throw bad(whole, `bad user name "${user}": it starts with '-', which ssh would read as an option`);
  if (/^\d+:\//.test(path) && port === undefined) {
    const p = path.slice(0, path.indexOf(':'));
    throw bad(whole, `remote path "${path}" must be absolute; for port ${p} write ssh://${user ? user + '@' : ''}${host.includes(':') ? `[${host}]` : host}:${p}${path.slice(p.length + 1)}`);
  }
  if (!path.startsWith('/')) throw bad(whole, `remote path "${path}" must be absolute`);
  const e: RemoteEndpoint = { kind: 'remote', host, path };
  if (user !== undefined) e.user = user;
  if (port !== undefined) e.port = port;
  return e;
}

function bad(s: string, why: string): BlkError {
  return new BlkError(ExitCode.USAGE, `bad address "${s}": ${why}`);
}
