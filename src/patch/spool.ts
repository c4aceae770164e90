// spoolStdin: `blkdelta apply -` reads the patch from stdin into a file first, so that all of it is
// checked before the first write (a stream cut anywhere is then refused like a cut file).
//   mkdtemp $TMPDIR/blkdelta-spool-XXXXXX (0700), file "patch" (0600)
//   copy stdin; once the header is in, stop at the bound it allows (spoolBound)
// Removed on every exit path: errors, SIGINT/SIGTERM (the abort signal destroys stdin, the copy
// throws, the caller's finally calls remove()); only SIGKILL or a crash leaves the directory.
// Memory: one chunk of stdin at a time (the stream's highWaterMark, 64 KiB).
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BlkError, ExitCode, FormatError, describe } from '../errors.js';
import type { Hasher } from '../hash.js';
import { HEADER_LEN, RECORD_HEADER_LEN, decodeHeader, headerLen, headerLenOf, trailerLen, type PatchHeader } from './format.js';
import { BASE_HEAD_LEN, REGION_LEN } from './state.js';
import { writeAll } from './writer.js';

export interface Spool { path: string; remove(): void }

/**
 * The most bytes a valid stream with this header can have: every block of [0, compare_size)
 * (version 1: result_size) in a record of its own, with its base hash, every region, the trailer.
 */
export function spoolBound(h: PatchHeader): number {
  const covered = h.state ? h.state.compareSize : h.resultSize;
  const blocks = Math.ceil(covered / h.blockSize);
  const perBlock = RECORD_HEADER_LEN + (h.state ? BASE_HEAD_LEN + 8 : 0);
  const regions = h.state ? Math.ceil(covered / h.state.regionSize) : 0;
  return headerLen(h) + covered + blocks * perBlock + regions * REGION_LEN + trailerLen(h);
}

export async function spoolStdin(hasher: Hasher, signal?: AbortSignal, input: Readable = process.stdin): Promise<Spool> {
  if ((input as { isTTY?: boolean }).isTTY) throw new BlkError(ExitCode.USAGE, 'apply -: stdin is a terminal; pipe or redirect the patch into it');
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-spool-'));
  const spool: Spool = { path: join(dir, 'patch'), remove: () => rmSync(dir, { recursive: true, force: true }) };
  const onAbort = () => input.destroy(signal!.reason as Error);
  signal?.addEventListener('abort', onAbort, { once: true });
  let fd: number | undefined;
  try {
    fd = openSync(spool.path, 'wx', 0o600);
    await copy(input, fd, hasher, signal);
    return spool;
  } catch (err) {
    spool.remove();
    if (signal?.aborted) throw new BlkError(ExitCode.INTERRUPTED, `${describe(signal.reason)}: while reading the patch from stdin; nothing was written`, { cause: signal.reason });
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (fd !== undefined) closeSync(fd);
  }
}

async function copy(input: Readable, fd: number, hasher: Hasher, signal?: AbortSignal): Promise<void> {
  let pos = 0, bound = Infinity;
  const head: Buffer[] = [];
  if (signal?.aborted) throw signal.reason;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    if (bound === Infinity) {
      head.push(chunk);
      const got = Buffer.concat(head);
      if (got.length >= HEADER_LEN && got.length >= headerLenOf(got)) bound = spoolBound(decodeHeader(got, hasher));
    }
    if (pos + chunk.length > bound) {
      throw new FormatError('stdin', bound, `the stream goes on past the ${bound} bytes its header allows; nothing was written`);
    }
    try {
      writeAll(fd, chunk, pos);
    } catch (err) {
      throw new BlkError(ExitCode.IO, `cannot spool the patch from stdin to ${tmpdir()} at byte ${pos}: ${describe(err)} (set TMPDIR to a directory with room for it)`, { cause: err });
    }
    pos += chunk.length;
  }
}
