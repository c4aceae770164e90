import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  appendKnownHost, checkHostKey, checkHostKeyDetail, fingerprint, keyTypeOf, knownHostLine, parseKnownHosts,
  type HostKeyStatus,
} from '../src/transport/knownhosts.js';
import { makeKey, type TestKey } from './helpers/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'blkdelta-kh-'));
const ed = makeKey(dir, 'ed');
const ec = makeKey(dir, 'ec', 'ecdsa');
const rsa = makeKey(dir, 'rsa', 'rsa');
const other = makeKey(dir, 'other');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const b64 = (k: TestKey) => k.blob.toString('base64');
const line = (names: string, k: TestKey) => `${names} ${k.type} ${b64(k)}`;

// Hashes a one-line known_hosts with ssh-keygen -H, the way HashKnownHosts writes it.
function hashed(names: string, k: TestKey): string {
  const f = join(dir, `hash-${Math.random().toString(36).slice(2)}`);
  writeFileSync(f, line(names, k) + '\n');
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-H', '-f', f], { stdio: 'ignore' });
  const text = readFileSync(f, 'utf8');
  rmSync(f);
  rmSync(f + '.old', { force: true });
  return text;
}

const verdict = test.macro({
  exec(t: ExecutionContext, text: () => string, host: string, port: number, key: TestKey, want: HostKeyStatus) {
    const f = join(dir, `kh-${Math.random().toString(36).slice(2)}`);
    writeFileSync(f, text());
    t.is(checkHostKey([join(dir, 'missing'), f], host, port, key.blob), want);
  },
  title: (given, _text, host: string, port: number, key: TestKey, want: HostKeyStatus) =>
    `${given}: ${host}:${port} ${key.type} -> ${want}`,
});

test('plain name', verdict, () => line('store2', ed), 'store2', 22, ed, 'ok');
test('name is case-insensitive', verdict, () => line('Store2', ed), 'store2', 22, ed, 'ok');
test('comma list', verdict, () => line('a,store2,10.0.0.2', ed), 'store2', 22, ed, 'ok');
test('ecdsa key', verdict, () => line('store2', ec), 'store2', 22, ec, 'ok');
test('rsa key', verdict, () => line('store2', rsa), 'store2', 22, rsa, 'ok');
test('no entry', verdict, () => line('elsewhere', ed), 'store2', 22, ed, 'unknown');
test('empty file', verdict, () => '', 'store2', 22, ed, 'unknown');
test('other key same type', verdict, () => line('store2', other), 'store2', 22, ed, 'changed');
test('only another key type known', verdict, () => line('store2', ec), 'store2', 22, ed, 'changed');
test('one of two keys matches', verdict, () => line('store2', ec) + '\n' + line('store2', ed), 'store2', 22, ed, 'ok');
test('[host]:port entry', verdict, () => line('[127.0.0.1]:2222', ed), '127.0.0.1', 2222, ed, 'ok');
test('[host]:port does not match port 22', verdict, () => line('[127.0.0.1]:2222', ed), '127.0.0.1', 22, ed, 'unknown');
test('plain entry does not match another port', verdict, () => line('127.0.0.1', ed), '127.0.0.1', 2222, ed, 'unknown');
test('[host]:port written as plain name for 22', verdict, () => line('[store2]:22', ed), 'store2', 22, ed, 'unknown');
test('hashed entry', verdict, () => hashed('store2', ed), 'store2', 22, ed, 'ok');
test('hashed entry, host name typed in capitals', verdict, () => hashed('store2', ed), 'STORE2', 22, ed, 'ok');
test('hashed entry other host', verdict, () => hashed('store3', ed), 'store2', 22, ed, 'unknown');
test('hashed [host]:port entry', verdict, () => hashed('[127.0.0.1]:2222', ed), '127.0.0.1', 2222, ed, 'ok');
test('hashed entry with another key', verdict, () => hashed('store2', other), 'store2', 22, ed, 'changed');
test('wildcard', verdict, () => line('*.example.org', ed), 'store2.example.org', 22, ed, 'ok');
test('question mark', verdict, () => line('store?', ed), 'store2', 22, ed, 'ok');
test('negation wins', verdict, () => line('*,!store2', ed), 'store2', 22, ed, 'unknown');
test('@revoked refuses the key', verdict, () => line('store2', ed) + '\n@revoked * ' + `${ed.type} ${b64(ed)}`, 'store2', 22, ed, 'changed');
test('@revoked of another key is harmless', verdict, () => line('store2', ed) + '\n@revoked * ' + `${other.type} ${b64(other)}`, 'store2', 22, ed, 'ok');
test('@cert-authority ignored', verdict, () => `@cert-authority store2 ${ed.type} ${b64(ed)}`, 'store2', 22, ed, 'unknown');
test('comments and blank lines', verdict, () => `# comment\n\n   \n${line('store2', ed)} a comment here\n`, 'store2', 22, ed, 'ok');
test('malformed lines skipped', verdict, () => `store2 ssh-ed25519\nstore2 ssh-rsa ${b64(ed)}\n@bogus store2 ${ed.type} ${b64(ed)}\n${line('x', ed)}`, 'store2', 22, ed, 'unknown');
test('CRLF line ends', verdict, () => line('store2', ed) + '\r\n', 'store2', 22, ed, 'ok');

test('fingerprint matches ssh-keygen -l', (t) => {
  for (const k of [ed, ec, rsa]) {
    const out = execFileSync('/usr/bin/ssh-keygen', ['-l', '-E', 'sha256', '-f', k.publicPath], { encoding: 'utf8' });
    t.is(out.split(' ')[1], fingerprint(k.blob));
  }
});

test('keyTypeOf reads the blob type', (t) => {
  t.is(keyTypeOf(ed.blob), 'ssh-ed25519');
  t.is(keyTypeOf(ec.blob), 'ecdsa-sha2-nistp256');
  t.is(keyTypeOf(rsa.blob), 'ssh-rsa');
  t.is(keyTypeOf(Buffer.alloc(2)), 'unknown');
});

test('the changed verdict names the offending line', (t) => {
  const f = join(dir, 'offending');
  writeFileSync(f, `# first\n${line('store2', other)}\n`);
  const v = checkHostKeyDetail([f], 'store2', 22, ed.blob);
  t.is(v.status, 'changed');
  t.is(v.entry?.file, f);
  t.is(v.entry?.line, 2);
});

test('appendKnownHost creates the file 0600, appends, and ssh-keygen -F finds it', (t) => {
  const f = join(dir, 'sub', 'known_hosts');
  appendKnownHost(f, '127.0.0.1', 2222, ed.type, ed.blob);
  t.is(statSync(f).mode & 0o777, 0o600);
  t.is(checkHostKey([f], '127.0.0.1', 2222, ed.blob), 'ok');
  writeFileSync(f, readFileSync(f, 'utf8') + '# no newline at end');
  appendKnownHost(f, 'store2', 22, ec.type, ec.blob);
  t.is(checkHostKey([f], 'store2', 22, ec.blob), 'ok');
  t.is(parseKnownHosts(readFileSync(f, 'utf8')).length, 2);
  const found = execFileSync('/usr/bin/ssh-keygen', ['-F', '[127.0.0.1]:2222', '-f', f], { encoding: 'utf8' });
  t.true(found.includes(knownHostLine('127.0.0.1', 2222, ed.blob)));
});

test('appendKnownHost refuses a type that does not match the blob', (t) => {
  t.throws(() => appendKnownHost(join(dir, 'kh2'), 'h', 22, 'ssh-rsa', ed.blob));
});
