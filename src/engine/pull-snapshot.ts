// The client's view of a pull from a source snapshot that the server makes (SyncOptions.sourceSnapshot,
// server/snapshots.ts): the snapshot described in WELCOME becomes a SnapshotReport; after RESULT
// the server removes the snapshot and ends its output (an ERROR first if the removal failed), so
// the client waits for that end (snapshotReleased) before it closes; then, whether it was removed:
//   the ERROR frame said so (sourceSnapshot.removed)        -> that
//   the server exited 0 after a success                       -> removed
//   the server exited 13 (SNAPSHOT)                           -> not removed (a success fails: SNAPSHOT)
//   any other exit status                                     -> removed (its finally ran)
//   exit status unknown (killed, connection lost)             -> not removed: the next run of the job cleans up
// Pure functions; the report travels on the summary or on the thrown error (snapshotReportOf).
import { BlkError, ExitCode } from '../errors.js';
import { attachSnapshotReport, type SnapshotReport } from '../lvm/snapshot-report.js';
import { peerSnapshotOf, type Conn, type SourceSnapshotInfo } from '../proto/messages.js';
import { Msg, msgName } from '../proto/wire.js';

/**
 * After RESULT of a pull from a server-made snapshot: waits for the server to remove it and end
 * its output (bounded by the server's lvm timeouts; the run's signal still aborts). An ERROR
 * frame (the removal failed) is thrown, carrying what the server says about the snapshot.
 */
export async function snapshotReleased(conn: Conn): Promise<void> {
  const f = await conn.reader.next();
  if (!f) return;
  if (f.type === Msg.ERROR) throw conn.peerError(f);
  throw new BlkError(ExitCode.REMOTE, `protocol error: ${msgName(f.type)} from ${conn.peerLabel} after RESULT`);
}

/** The report for the snapshot WELCOME describes; REMOTE when the server made none (an older blkdelta). */
export function reportFromWelcome(info: SourceSnapshotInfo | undefined, where: string): SnapshotReport {
  if (typeof info !== 'object' || info === null || typeof info.name !== 'string' || typeof info.vg !== 'string') {
    throw new BlkError(ExitCode.REMOTE,
      `${where} did not make a source snapshot (its WELCOME has none): it is an older blkdelta without pull --snapshot; install the same version there`);
  }
  return {
    vg: info.vg, origin: String(info.origin), job: String(info.job), name: info.name, kind: info.kind, device: String(info.device),
    createdAt: String(info.createdAt), removed: false, fillPct: null, staleRemoved: Array.isArray(info.staleRemoved) ? info.staleRemoved.map(String) : [],
  };
}

/** Whether the server removed its snapshot, from its ERROR frame (if any) and its exit status. */
export function removalOutcome(exit: number | null, failure: unknown): { removed: boolean; removeError?: string } {
  const said = failure === undefined ? undefined : peerSnapshotOf(failure);
  if (said) return { removed: !!said.removed, ...(said.removeError ? { removeError: String(said.removeError) } : {}) };
  if (exit === null) return { removed: false, removeError: 'the server ended without an exit status; the next run of the job removes the snapshot' };
  if (exit === ExitCode.SNAPSHOT) return { removed: false, removeError: `the server exited ${exit}: it could not remove the snapshot (see its log)` };
  return { removed: true };
}

/**
 * Completes the report once the server has exited. A success whose snapshot stayed behind fails
 * with SNAPSHOT; a failure keeps its own error. Either way the error carries the report.
 */
export function settlePull<T extends { sourceSnapshot?: SnapshotReport }>(report: SnapshotReport, exit: number | null,
  outcome: { ok: true; value: T } | { ok: false; error: unknown }, where: string, stderrTail: string): T {
  const done = { ...report, ...removalOutcome(exit, outcome.ok ? undefined : outcome.error) };
  if (!outcome.ok) throw attachSnapshotReport(outcome.error, done);
  if (!done.removed) {
    const tail = stderrTail ? `: ${stderrTail}` : '';
    throw attachSnapshotReport(new BlkError(ExitCode.SNAPSHOT,
      `the sync succeeded but ${where} did not remove snapshot ${done.vg}/${done.name} (${done.removeError})${tail}`), done);
  }
  return { ...outcome.value, sourceSnapshot: done };
}
