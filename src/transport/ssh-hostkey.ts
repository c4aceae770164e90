// The ssh2 hostVerifier for SshTransport: checks the key the server presents against the
// known_hosts files (knownhosts.ts), adds an unknown key when --accept-new-host-key is given,
// and records why it refused so the transport can throw BlkError HOST_KEY with a full message
// (ssh2 itself only reports "Host denied (verification failed)").
import { homedir } from 'node:os';
import { BlkError, ExitCode } from '../errors.js';
import { log } from '../log.js';
import {
  appendKnownHost, checkHostKeyDetail, fingerprint, keyTypeOf, knownHostLine, knownHostName, knownKeyTypes, type HostKeyVerdict,
} from './knownhosts.js';

/** ssh2's default host key algorithms, in its order. */
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa',
];

/**
 * The host key algorithms to offer, those of the key types known_hosts holds for the host first
 * (as OpenSSH orders them): a server with ed25519 and ecdsa keys, known by its ecdsa key only,
 * must present that one, not an ed25519 key that would look like a changed key.
 */
export function hostKeyAlgorithms(check: Pick<HostCheck, 'files' | 'host' | 'port'>): string[] {
  const known = knownKeyTypes(check.files, check.host, check.port)
    .flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]))
    .filter((a) => DEFAULT_HOST_KEY_ALGORITHMS.includes(a));
  return [...new Set([...known, ...DEFAULT_HOST_KEY_ALGORITHMS])];
}

export interface HostCheck {
  files: string[];
  host: string;
  port: number;
  acceptNew: boolean;
  /** Set by the verifier when it refused the key. */
  refusal?: BlkError;
}

/** A verifier for ssh2's ConnectConfig.hostVerifier; see the header. */
export function hostVerifier(check: HostCheck): (key: Buffer) => boolean {
  return (key: Buffer) => {
    let verdict: HostKeyVerdict;
    try {
      verdict = checkHostKeyDetail(check.files, check.host, check.port, key);
      if (verdict.status === 'ok') return true;
      if (verdict.status === 'unknown' && check.acceptNew) return accept(check, key);
    } catch (err) {
      check.refusal = err instanceof BlkError ? err : new BlkError(ExitCode.HOST_KEY, String(err), { cause: err });
      return false;
    }
    check.refusal = verdict.status === 'unknown' ? unknownKey(check, key) : changedKey(check, key, verdict);
    return false;
  };
}

function accept(check: HostCheck, key: Buffer): boolean {
  const file = check.files[0];
  appendKnownHost(file, check.host, check.port, keyTypeOf(key), key);
  log.warn(`added the host key of ${knownHostName(check.host, check.port)} (${keyTypeOf(key)} ${fingerprint(key)}) to ${tilde(file)}`);
  return true;
}

function unknownKey(check: HostCheck, key: Buffer): BlkError {
  const name = knownHostName(check.host, check.port);
  const scan = `ssh-keyscan ${check.port === 22 ? '' : `-p ${check.port} `}-t ${keyTypeOf(key).replace(/^ssh-/, '')} ${check.host}`;
  return new BlkError(ExitCode.HOST_KEY,
    `host key of ${name} is not known: ${keyTypeOf(key)} ${fingerprint(key)} is in none of ${check.files.map(tilde).join(', ')}. ` +
    `Check that fingerprint with the host's administrator (ssh-keygen -lf on its /etc/ssh/ssh_host_*_key.pub), then rerun with ` +
    `--accept-new-host-key, or add this line to ${tilde(check.files[0])} (what \`${scan}\` prints): ${knownHostLine(check.host, check.port, key)}`);
}

function changedKey(check: HostCheck, key: Buffer, v: HostKeyVerdict): BlkError {
  const name = knownHostName(check.host, check.port);
  const where = v.entry ? `${tilde(v.entry.file)}:${v.entry.line}` : 'known_hosts';
  if (v.revoked) {
    return new BlkError(ExitCode.HOST_KEY, `HOST KEY OF ${name} IS REVOKED: ${keyTypeOf(key)} ${fingerprint(key)} is marked @revoked in ${where}; refusing to connect`);
  }
  const known = v.entry ? `${v.entry.keyType} ${fingerprint(v.entry.key)}` : 'another key';
  return new BlkError(ExitCode.HOST_KEY,
    `WARNING: HOST KEY OF ${name} HAS CHANGED: it presents ${keyTypeOf(key)} ${fingerprint(key)} but ${where} holds ${known}. ` +
    `Someone may be intercepting the connection, or the host was reinstalled. Refusing to connect; --accept-new-host-key never ` +
    `replaces a known key. After checking with the host's administrator, remove the old entry ` +
    `(ssh-keygen -R '${name}' -f ${v.entry?.file ?? '~/.ssh/known_hosts'}) and connect again.`);
}

function tilde(file: string): string {
  const home = homedir();
  return file.startsWith(home + '/') ? '~' + file.slice(home.length) : file;
}
