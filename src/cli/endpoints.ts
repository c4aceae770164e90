// Turns SRC and DST of a command line into SyncOptions' source, target and remote transport.
// At most one of them may be remote ([user@]host:/path or ssh://user@host:port/path).
import path from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import type { SyncOptions } from '../engine/types.js';
import { parseEndpoint } from '../transport/address.js';

export function resolveEnds(src: string, dst: string, argv: Record<string, unknown>): Pick<SyncOptions, 'source' | 'target' | 'remote'> {
  const s = parseEndpoint(src);
  const d = parseEndpoint(dst);
  if (s.kind === 'remote' && d.kind === 'remote') {
    throw new BlkError(ExitCode.USAGE, `SRC ${src} and DST ${dst} are both remote: run blkdelta on one of the two hosts`);
  }
  if (s.kind === 'remote' || d.kind === 'remote') throw new BlkError(ExitCode.USAGE, `remote endpoints are not wired in yet (${JSON.stringify(argv._)})`);
  return { source: path.resolve(s.path), target: path.resolve(d.path) };
}
