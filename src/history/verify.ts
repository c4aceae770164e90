// `history verify JOB [ID]`: re-reads each kept copy (read-only, history/readable.ts) with
// fingerprintDevice and compares the result with the fingerprint the copy carries.
//   for each copy (or the one named): torn -> damaged; no fingerprint -> unverifiable;
//   else re-read [0, fp.size) -> ok | damaged (digest differs)
// ops.ts records the outcome (jobs/history-record.ts) for `check` and for
// history_verify_every. Memory: fingerprintDevice's chunk buffer. Interrupted: nothing is
// written; a thin copy activated for the read is deactivated in finally.
import { fingerprintDevice, type Fingerprint } from '../engine/fingerprint.js';
import { openSource } from '../io/device.js';
import type { CopyCheck } from '../jobs/history-record.js';
import type { Copy } from '../lvm/copies.js';
import { withReadableCopy } from './readable.js';

/** Checks each copy in turn; never throws for a damaged copy (it is a result), only for I/O it cannot do. */
export async function verifyCopies(copies: readonly Copy[], signal?: AbortSignal): Promise<CopyCheck[]> {
  const out: CopyCheck[] = [];
  for (const c of copies) {
    signal?.throwIfAborted();
    out.push(await verifyCopy(c, signal));
  }
  return out;
}

async function verifyCopy(c: Copy, signal?: AbortSignal): Promise<CopyCheck> {
  const lv = `${c.row.vg}/${c.id}`;
  if (c.torn) return { id: c.id, lv, result: 'damaged', detail: 'the COW snapshot overflowed (invalid): it holds no complete copy' };
  const fp = c.fingerprint;
  if (!fp) return { id: c.id, lv, result: 'unverifiable', detail: 'the copy carries no fingerprint (taken before its run recorded one)' };
  const found = await withReadableCopy(c, async (path) => {
    const dev = openSource(path);
    try {
      return await fingerprintDevice(dev, fp as Fingerprint, signal);
    } finally {
      dev.close();
    }
  });
  return found.digest === fp.digest
    ? { id: c.id, lv, result: 'ok', detail: `fingerprint ${fp.digest} matches` }
    : { id: c.id, lv, result: 'damaged', detail: `content differs from its fingerprint: expected ${fp.digest}, read ${found.digest}` };
}

