// spoolStdin: `blkdelta apply -` reads the patch from stdin into a file first, so that all of it is
// checked before the first write (a stream cut anywhere is then refused like a cut file).
//   mkdtemp $TMPDIR/blkdelta-spool-XXXXXX (0700), file "patch" (0600)
//   copy stdin; once the header is in, stop at the bound it allows (spoolBound); every 64 MiB,
//   stop before the spool leaves TMPDIR's file system less than its reserve (spoolReserve) free
// Removed on every exit path: errors, SIGINT/SIGTERM (the abort signal destroys stdin, the copy
// throws, the caller's finally calls remove()); only SIGKILL or a crash leaves the directory.
// Memory: one chunk of stdin at a time (the stream's highWaterMark, 64 KiB).
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync } from 'node:fs';
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

/** Free space the spool leaves on its file system: 5% of it, at most 1 GiB (others need /tmp too). */
export function spoolReserve(fsBytes: number): number {
  return Math.min(2 ** 30, Math.floor(fsBytes * 0.05));
}

const SPACE_CHECK_EVERY = 64 * 2 ** 20;

/** Throws IO when the spool's file system has no more than its reserve free. */
function checkRoom(dir: string, pos: number): void {
  const st = statfsSync(dir);
  const free = st.bavail * st.bsize, reserve = spoolReserve(st.blocks * st.bsize);
  if (free <= reserve) {
    throw new BlkError(ExitCode.IO, `spooling the patch from stdin stopped at byte ${pos}: only ${free} bytes are left free in ${tmpdir()}, and the spool leaves at least ${reserve} free (set TMPDIR to a directory with room for the patch); nothing was written`);
  }
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
    await copy(input, fd, hasher, signal, dir);
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

async function copy(input: Readable, fd: number, hasher: Hasher, signal: AbortSignal | undefined, dir: string): Promise<void> {
  let pos = 0, bound = Infinity, checked = 0;
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
    if (pos + chunk.length > checked) {
      checkRoom(dir, pos);
      checked = pos + SPACE_CHECK_EVERY;
    }
    try {
      writeAll(fd, chunk, pos);
    } catch (err) {
      throw new BlkError(ExitCode.IO, `cannot spool the patch from stdin to ${tmpdir()} at byte ${pos}: ${describe(err)} (set TMPDIR to a directory with room for it)`, { cause: err });
    }
    pos += chunk.length;
  }
}
