// Pull with a source snapshot, the server's side: a HELLO with `sourceSnapshot: {job}` asks this
// server to serve a temporary LVM snapshot of the LV that HELLO.path names (/dev/VG/LV), made,
// watched and removed here under the server's own policy ([server.source_snapshot]):
//   HELLO → allow list on the origin's path (session.ts) → snapshotRequest (pure: role source,
//   a /dev/VG/LV path, a valid job name, a policy, else refused) → withSourceSnapshot (stale
//   snapshots of the job removed, pool guard, create, poll fill and pool every second) →
//   the session runs on the snapshot device → the snapshot is removed → the session's result.
// The client never chooses a size or a limit: only the job name (tags, stale clean-up).
// Interruption: a poller problem (COW overflow, pool over pool_max_fill), SIGINT/SIGTERM (the
// server's signal) or the client going away (stdin EOF) ends the session; withSourceSnapshot's
// finally removes the snapshot. SIGKILL leaves it, tagged: the next session of the job removes it.
// A removal that fails makes the server exit SNAPSHOT (13) after a success, or is reported in the
// ERROR frame's `sourceSnapshot` after a failure. Memory: a few lvs rows.
import type { Readable } from 'node:stream';
import { BlkError, ExitCode } from '../errors.js';
import { checkJobName, lvmNameProblem } from '../lvm/argv.js';
import { snapshotReportOf, withSourceSnapshot, type SnapshotReport } from '../lvm/snapshot.js';
import type { Hello, SourceSnapshotInfo } from '../proto/messages.js';
import type { ServerConfig } from './policy.js';

export type SourceSnapshotPolicy = NonNullable<ServerConfig['sourceSnapshot']>;

export { DEFAULT_SOURCE_SNAPSHOT } from './policy.js'; // its home (light, for the server's start-up)

export interface SnapshotRequest {
  vg: string;
  lv: string;
  job: string;
  policy: SourceSnapshotPolicy;
}

const malformed = (why: string) => new BlkError(ExitCode.REMOTE, `protocol error: HELLO ${why}`);

/** Checks a HELLO asking for a source snapshot against the server's policy; throws naming what is wrong. */
export function snapshotRequest(hello: Pick<Hello, 'role' | 'path' | 'sourceSnapshot'>, policy: SourceSnapshotPolicy | undefined): SnapshotRequest {
  const req = hello.sourceSnapshot as unknown;
  if (typeof req !== 'object' || req === null || Array.isArray(req)) throw malformed('field sourceSnapshot must be an object {job}');
  const job = (req as { job?: unknown }).job;
  if (typeof job !== 'string') throw malformed('field sourceSnapshot.job must be a string');
  try {
    checkJobName(job);
  } catch (err) {
    throw malformed(`field sourceSnapshot.job: ${(err as Error).message}`);
  }
  if (hello.role !== 'source') throw malformed(`asks for a source snapshot with role ${String(hello.role)}`);
  const m = /^\/dev\/([^/]+)\/([^/]+)$/.exec(hello.path);
  const cannot = (why: string) => new BlkError(ExitCode.SOURCE, `cannot snapshot ${hello.path}: ${why}`);
  if (!m) throw cannot('a source snapshot needs an LVM path /dev/VG/LV');
  if (m[1] === 'mapper') throw cannot('name the LV as /dev/VG/LV, not /dev/mapper/...');
  const bad = lvmNameProblem(m[1]!, 'VG') ?? lvmNameProblem(m[2]!, 'LV');
  if (bad) throw cannot(bad);
  if (!policy) {
    throw new BlkError(ExitCode.PERMISSION,
      `refused by the server: it has no [server.source_snapshot] policy, so a pull cannot snapshot ${hello.path} here`);
  }
  return { vg: m[1]!, lv: m[2]!, job, policy };
}

/** The WELCOME's description of the snapshot the session reads. */
export function snapshotInfo(r: SnapshotReport): SourceSnapshotInfo {
  return { vg: r.vg, origin: r.origin, job: r.job, name: r.name, kind: r.kind, device: r.device, createdAt: r.createdAt, staleRemoved: r.staleRemoved };
}

/** What the ERROR frame says about the snapshot of a failed session (undefined: none was made). */
export function snapshotOutcome(err: unknown): { name: string; removed: boolean; removeError?: string } | undefined {
  const r = snapshotReportOf(err);
  if (!r?.name) return undefined;
  return { name: `${r.vg}/${r.name}`, removed: r.removed, ...(r.removeError ? { removeError: r.removeError } : {}) };
}

/** What the session on a snapshot gets: a signal that aborts on a problem, and WELCOME's description. */
export interface OnSnapshot { signal: AbortSignal; info: SourceSnapshotInfo }

/**
 * Runs the session on a snapshot of req.vg/req.lv. An abort (a fill/pool problem from the poller,
 * or `signal`: SIGINT/SIGTERM) destroys `input` with its reason, so a pending read ends at once.
 */
export async function withServerSnapshot<T>(req: SnapshotRequest, signal: AbortSignal | undefined, input: Readable,
  session: (device: string, snap: OnSnapshot) => Promise<T>): Promise<T> {
  const spec = {
    vg: req.vg, lv: req.lv, job: req.job, cowSize: req.policy.size, maxFillPct: req.policy.maxFill, poolMaxFillPct: req.policy.poolMaxFill,
  };
  const { value } = await withSourceSnapshot(spec, signal ?? new AbortController().signal, async (device, sig, report) => {
    const stop = () => input.destroy(sig.reason as Error);
    sig.addEventListener('abort', stop, { once: true });
    try {
      return await session(device, { signal: sig, info: snapshotInfo(report) });
    } finally {
      sig.removeEventListener('abort', stop);
    }
  });
  return value;
}
