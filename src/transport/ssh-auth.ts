// Which credentials SshTransport offers, in order: the ssh-agent (SSH_AUTH_SOCK), then the
// --identity files, or when none is given the default keys ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
// Keys are read and parsed here, before connecting, so a bad --identity fails with a clear
// message; passphrase-protected keys are only usable through the agent (no prompting).
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type { AgentAuthMethod, PublicKeyAuthMethod } from 'ssh2';
import { BlkError, ExitCode, describe } from '../errors.js';
import { log } from '../log.js';

// ssh2 (CommonJS) is loaded on first use: a local sync never pays its ~10 MiB of resident memory.
const ssh2 = (): typeof import('ssh2') => createRequire(import.meta.url)('ssh2');

export interface AuthMethod {
  /** For messages: "ssh-agent" or a key file. */
  label: string;
  auth: AgentAuthMethod | PublicKeyAuthMethod;
}

export const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

/** The credentials to try; throws AUTH when there is none, USAGE for an unreadable --identity. */
export function authMethods(username: string, identityFiles?: string[], agentOpt?: string | false): AuthMethod[] {
  const agent = agentOpt === false ? undefined : agentOpt ?? process.env.SSH_AUTH_SOCK;
  const out: AuthMethod[] = [];
  if (agent) out.push({ label: `ssh-agent (${agent})`, auth: { type: 'agent', username, agent } });
  const explicit = identityFiles !== undefined && identityFiles.length > 0;
  const files = explicit ? identityFiles : DEFAULT_KEYS.map((k) => join(homedir(), '.ssh', k));
  for (const file of files) {
    const key = readKey(file, explicit, !!agent);
    if (key) out.push({ label: file, auth: { type: 'publickey', username, key } });
  }
  if (out.length === 0) {
    throw new BlkError(ExitCode.AUTH,
      `no ssh credentials: SSH_AUTH_SOCK is not set and none of ${files.join(', ')} is a usable passphrase-less key; pass --identity FILE or start ssh-agent`);
  }
  return out;
}

// The key's bytes, or undefined when a default key is missing or only usable through the agent.
function readKey(file: string, explicit: boolean, haveAgent: boolean): Buffer | undefined {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    if (!explicit && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BlkError(explicit ? ExitCode.USAGE : ExitCode.AUTH, `cannot read ssh key ${file}: ${describe(err)}`, { cause: err });
  }
  const parsed = ssh2().utils.parseKey(data);
  if (!(parsed instanceof Error)) return data;
  if (/passphrase|encrypted/i.test(parsed.message)) {
    if (haveAgent || !explicit) {
      log.debug(`ssh key ${file} is passphrase-protected: relying on ssh-agent for it`);
      return undefined;
    }
    throw new BlkError(ExitCode.AUTH, `ssh key ${file} is passphrase-protected: load it into ssh-agent (ssh-add ${file}) and set SSH_AUTH_SOCK`);
  }
  if (!explicit) return undefined;
  throw new BlkError(ExitCode.USAGE, `--identity ${file} is not a private key ssh2 can read: ${parsed.message}`);
}

/** "ssh-agent (...), /root/.ssh/id_ed25519" for the authentication-failed message. */
export function describeAuth(methods: readonly AuthMethod[]): string {
  return methods.map((m) => m.label).join(', ');
}
