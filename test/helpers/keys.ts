// Real SSH keys for tests, made by ssh-keygen in a temp dir (no passphrase).
import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export interface TestKey {
  type: string;
  privatePath: string;
  publicPath: string;
  /** "ssh-ed25519 AAAA... comment" */
  publicLine: string;
  blob: Buffer;
}

/** Fails with an install hint when an OpenSSH tool is missing. */
export function requireTool(path: string, pkg: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: apt-get install ${pkg}`);
}

/** ssh-keygen -t TYPE into dir/name (and name.pub). */
export function makeKey(dir: string, name: string, type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519'): TestKey {
  requireTool('/usr/bin/ssh-keygen', 'openssh-client');
  const privatePath = join(dir, name);
  const extra = type === 'rsa' ? ['-b', '2048'] : [];
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', type, ...extra, '-N', '', '-C', `blkdelta-test-${name}`, '-f', privatePath], { stdio: 'ignore' });
  const publicPath = privatePath + '.pub';
  const publicLine = readFileSync(publicPath, 'utf8').trim();
  const [keyType, b64] = publicLine.split(' ');
  return { type: keyType, privatePath, publicPath, publicLine, blob: Buffer.from(b64, 'base64') };
}
