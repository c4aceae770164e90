// Turns SRC and DST of a command line into SyncOptions' source, target and transport.
// At most one of them may be remote ([user@]host:/path or ssh://user@host:port/path). --bwlimit
// caps a local sync too (the records travel to a local server process), as it does for jobs;
// the SSH options are refused on a local sync (they would be silently ignored).
import path from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import type { SyncOptions } from '../engine/types.js';
import { parseEndpoint } from '../transport/address.js';
import { SSH_OPTIONS, transportFor } from '../transport/connect.js';
import { LocalTransport } from '../transport/local.js';
import { parseRate, throttled } from '../transport/throttle.js';

export async function resolveEnds(src: string, dst: string, argv: Record<string, unknown>): Promise<Pick<SyncOptions, 'source' | 'target' | 'remote' | 'localTransport'>> {
  const s = parseEndpoint(src);
  const d = parseEndpoint(dst);
  if (s.kind === 'remote' && d.kind === 'remote') {
    throw new BlkError(ExitCode.USAGE, `SRC ${src} and DST ${dst} are both remote: run blkdelta on one of the two hosts`);
  }
  if (s.kind === 'remote') return { source: s.path, target: path.resolve(d.path), remote: { side: 'source', transport: await transportFor(s, argv) } };
  if (d.kind === 'remote') return { source: path.resolve(s.path), target: d.path, remote: { side: 'target', transport: await transportFor(d, argv) } };
  refuseSshOptions(src, dst, argv);
  const ends = { source: path.resolve(s.path), target: path.resolve(d.path) };
  const rate = typeof argv.bwlimit === 'string' ? parseRate(argv.bwlimit, '--bwlimit') : undefined;
  return !rate ? ends : { ...ends, localTransport: throttled(new LocalTransport(), rate) };
}

/** SSH options mean nothing to a local sync: refused rather than silently ignored. */
function refuseSshOptions(src: string, dst: string, argv: Record<string, unknown>): void {
  const given = SSH_OPTIONS.filter((o) => argv[o] !== undefined);
  if (!given.length) return;
  throw new BlkError(ExitCode.USAGE, `${given.map((o) => `--${o}`).join(', ')} ${given.length > 1 ? 'apply' : 'applies'} only to a remote end, ` +
    `and ${src} and ${dst} are both local (a remote end is [user@]host:/path or ssh://[user@]host[:port]/path)`);
}
