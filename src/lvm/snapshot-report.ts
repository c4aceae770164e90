// What a run's result says about a source snapshot (SnapshotReport), and the report carried on a
// thrown error (attachSnapshotReport / snapshotReportOf). Kept apart from snapshot.ts, which
// runs lvm: a client that only reads a pull's report (engine/pull-snapshot.ts) loads this alone.
// Memory: one report per error that carries one (a WeakMap: gone with the error).

/** What the result record says about the snapshot. */
export interface SnapshotReport {
  vg: string;
  origin: string;
  job: string;
  name: string;
  kind: 'cow' | 'thin' | '';
  device: string;
  createdAt: string;
  removed: boolean;
  /** COW fill in percent at the last check (null: thin or never checked). */
  fillPct: number | null;
  /** Thin: the pool's data and metadata fill at the last check ("vg0/pool", percent). */
  pool?: { name: string; data: number | null; metadata: number | null };
  staleRemoved: string[];
  /** Why the snapshot could not be removed (the run failed). */
  removeError?: string;
}

const reports = new WeakMap<object, SnapshotReport>();

/** The snapshot report attached to an error thrown by withSourceSnapshot, if any. */
export function snapshotReportOf(err: unknown): SnapshotReport | undefined {
  return typeof err === 'object' && err !== null ? reports.get(err) : undefined;
}

/** Attaches a report to an error (a pull's snapshot, made by the server), for snapshotReportOf. */
export function attachSnapshotReport<E>(err: E, report: SnapshotReport): E {
  if (typeof err === 'object' && err !== null) reports.set(err, report);
  return err;
}
