// `history restore JOB ID DEST`: copies a kept copy to DEST through the engine (a local sync:
// DEST is opened and refused exactly as any sync target), with --verify's re-read of every
// written block, then re-reads DEST and compares it with the copy's fingerprint. The copy is
// only read (history/readable.ts): it is neither consumed (no merge) nor changed.
// Interrupted: DEST is left part-written (as any sync); the copy is untouched.
import { BlkError, ExitCode } from '../errors.js';
import { openSource } from '../io/device.js';
import { fingerprintDevice, type Fingerprint } from '../engine/fingerprint.js';
import { runSync } from '../engine/sync.js';
import type { SyncSummary } from '../engine/types.js';
import type { Copy } from '../lvm/copies.js';
import type { CopyFingerprint } from '../lvm/copy-tags.js';
import { withReadableCopy } from './readable.js';

export interface RestoreResult {
  copy: string;
  dest: string;
  summary: SyncSummary;
  /** True when DEST's content matches the copy's fingerprint (null: the copy has none). */
  fingerprintMatches: boolean | null;
}

/** Throws DIFFERENT when DEST does not match the copy's fingerprint after the copy: the copy is damaged. */
export async function restoreCopy(c: Copy, dest: string, o: { blockSize: number; signal: AbortSignal }): Promise<RestoreResult> {
  const fp = c.fingerprint;
  const copy = `${c.row.vg}/${c.id}`;
  const summary = await withReadableCopy(c, (source) =>
    runSync({ source, target: dest, mode: 'write', blockSize: fp?.blockSize ?? o.blockSize, sizePolicy: 'strict', verify: true, compress: false, signal: o.signal,
      sourceLabel: `history restore ${copy}` }));
  return { copy, dest, summary, fingerprintMatches: await matchesFingerprint(copy, dest, fp, o.signal) };
}

/** Re-reads DEST and compares it with the copy's fingerprint: null when it has none; DIFFERENT when it differs. */
export async function matchesFingerprint(copy: string, dest: string, fp: CopyFingerprint | null, signal: AbortSignal): Promise<true | null> {
  if (!fp) return null;
  const dev = openSource(dest);
  let found: Fingerprint;
  try {
    found = await fingerprintDevice(dev, fp as Fingerprint, signal);
  } finally {
    dev.close();
  }
  if (found.digest !== fp.digest) {
    throw new BlkError(ExitCode.DIFFERENT, `restored ${copy} to ${dest}, but ${dest} does not match the copy's fingerprint ` +
      `(expected ${fp.digest}, read ${found.digest}): the copy is damaged; run blkdelta history verify`);
  }
  return true;
}
