// The target's side of an incremental job: which base (thin snapshot of the source) the target was
// last made equal to, kept as <stateDir>/<job>.base.json (docs/lvm.md, "Incremental runs").
//
//   { version: 1, job, target, base: {name, uuid, thinId} | null, blockSize, madeAt, lastFullAt,
//     pending?: "full" | [[first, count], ...], pinnedBytes? }
//
// pending is written before a run writes the target and cleared when it succeeds: a run cut short
// (kill -9, power loss) may have written any block of its ranges ("full": any block at all), so
// the next run adds them to its own ranges (or compares in full). Written atomically (temp file,
// fsync, rename, fsync of the dir): a reader sees the old record or the new one. An unreadable
// or malformed record reads as "none" with the reason, which makes the next run a full compare.
// Memory: one record; its pending ranges are the changed extents of one run.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe } from '../errors.js';
import { rangesProblem, type BlockRange } from '../ranges.js';

export interface BaseRef { name: string; uuid: string; thinId: number }

export interface BaseRecord {
  version: 1;
  job: string;
  /** The target this record is about (a path on its host, or user@host:path). */
  target: string;
  base: BaseRef | null;
  blockSize: number;
  /** When the target was last made equal to the base, and when a full compare last did it (ISO). */
  madeAt: string;
  lastFullAt?: string;
  pending?: 'full' | BlockRange[];
  /** Bytes of pool data only the previous base held when this one replaced it (thin_delta). */
  pinnedBytes?: number;
  /** Why the base was removed without a run replacing it (the pool guard). */
  dropped?: string;
}

export const baseRecordPath = (stateDir: string, job: string): string => join(stateDir, `${job}.base.json`);

/** The record, or null with why (missing: the first run; malformed: say so). */
export function readBaseRecord(stateDir: string, job: string): { record: BaseRecord | null; why?: string } {
  const path = baseRecordPath(stateDir, job);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { record: null, why: `no base recorded in ${path} (the first incremental run of job ${job})` };
    return { record: null, why: `cannot read ${path}: ${describe(err)}` };
  }
  const problem = recordProblem(text);
  return typeof problem === 'string' ? { record: null, why: `base record ${path} is unusable: ${problem}` } : { record: problem };
}

/** The parsed record, or what is wrong with it. */
export function recordProblem(text: string): BaseRecord | string {
  let r: Partial<BaseRecord>;
  try {
    r = JSON.parse(text) as Partial<BaseRecord>;
  } catch {
    return 'not JSON';
  }
  if (r?.version !== 1) return `version ${String(r?.version)} is not 1`;
  if (typeof r.target !== 'string' || typeof r.job !== 'string' || typeof r.madeAt !== 'string') return 'job, target or madeAt missing';
  if (!Number.isSafeInteger(r.blockSize) || r.blockSize! <= 0) return 'blockSize missing';
  const b = r.base;
  if (b !== null && (typeof b !== 'object' || typeof b.name !== 'string' || typeof b.uuid !== 'string' || !Number.isSafeInteger(b.thinId))) return 'base is not {name, uuid, thinId} or null';
  if (r.pending !== undefined && r.pending !== 'full' && rangesProblem(r.pending, Number.MAX_SAFE_INTEGER)) return 'pending is not "full" or block ranges';
  return r as BaseRecord;
}

/** Replaces the record atomically (see the header). */
export function writeBaseRecord(stateDir: string, record: BaseRecord): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const path = baseRecordPath(stateDir, record.job);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, JSON.stringify(record) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* gone already */ }
    throw err;
  }
  const dir = openSync(stateDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** What an incremental run did, for its summary, --json and the job's record. */
export interface IncrementalReport {
  kind: 'incremental' | 'full';
  /** Why this run compared in full (the first run, a missing base, a sample that differed...). */
  reason?: string;
  /** The base the changed ranges were taken against (incremental) and the one kept after the run. */
  base?: string;
  newBase?: string;
  /** Bytes of the changed ranges (incremental), and of the pending ranges of an interrupted run in them. */
  changedBytes?: number;
  /** Blocks sampled outside the changed ranges, and how many of them differed. */
  sampleBlocks?: number;
  sampleDiffering?: number;
  /** Pool bytes the replaced base held alone (what keeping a base cost until this run). */
  pinnedBytes?: number;
  /** Base LVs removed: not named by the record (an interrupted run), over the pool guard, or rotated out. */
  removedBases: string[];
}
