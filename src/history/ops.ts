// The four `blkdelta history` operations on one job, each one library call for cmd-history.ts.
// A local target's copies are read here; a remote target's are asked of its server (remote.ts),
// whose policy decides (prune applies the server's retention). prune, verify and restore hold the
// job's lock on this host (a run pruning copies cannot pull one away mid-read; held: LOCKED);
// list only reads.
import path from 'node:path';
import { BlkError, ExitCode } from '../errors.js';
import type { Config, JobConfig } from '../jobs/config.js';
import { lockJob } from '../locks/lock.js';
import { pruneCopies, type PruneResult } from '../lvm/copies.js';
import type { Retention } from '../server/policy.js';
import { parseEndpoint } from '../transport/address.js';
import { entriesOf, findCopy, jobHistory, type HistoryEntry } from './copies.js';
import { askServer, restoreFromServer, type HistoryServer, type RemoteRestore } from './remote.js';
import { restoreCopy } from './restore.js';
import { putVerifyRecord, type CopyCheck } from '../jobs/history-record.js';
import { verifyCopies } from './verify.js';

/** Throws CONFIG when the job keeps no history. */
function keepsHistory(job: JobConfig): void {
  if (!job.targetSnapshot) throw new BlkError(ExitCode.CONFIG, `job ${job.name} keeps no history: set target_snapshot = true`);
}

export async function historyList(job: JobConfig, server?: HistoryServer): Promise<HistoryEntry[]> {
  keepsHistory(job);
  if (server) return (await askServer(server, { op: 'list', job: job.name })).entries!;
  return entriesOf(await jobHistory(job));
}

async function locked<T>(cfg: Config, job: JobConfig, fn: () => Promise<T>): Promise<T> {
  keepsHistory(job);
  const lock = lockJob(cfg.stateDir, job.name, new Date());
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/** What prune did (or would do), and for a remote target the server's retention that decided it. */
export type HistoryPrune = PruneResult & { server?: { host: string; retention: Retention; poolMaxFill?: number } };

/** Applies (or with dryRun shows) the job's retention now; through a server: the server's retention. */
export function historyPrune(cfg: Config, job: JobConfig, dryRun: boolean, server?: HistoryServer): Promise<HistoryPrune> {
  return locked(cfg, job, async () => {
    if (server) {
      const { retention, poolMaxFill, ...r } = (await askServer(server, { op: 'prune', job: job.name, dryRun })).prune!;
      return { ...r, server: { host: server.host, retention, ...(poolMaxFill !== undefined ? { poolMaxFill } : {}) } };
    }
    const h = await jobHistory(job);
    const ts = job.targetSnapshot!;
    return pruneCopies(h.vg, h.lv.name, { job: job.name, retention: ts.retention, poolMaxFill: ts.poolMaxFill, dryRun });
  });
}

/** Re-reads the copies (or the one named) and records the outcome; DIFFERENT names every damaged copy. */
export function historyVerify(cfg: Config, job: JobConfig, id: string | undefined, signal: AbortSignal, server?: HistoryServer): Promise<CopyCheck[]> {
  return locked(cfg, job, async () => {
    const checks = server ? (await askServer(server, { op: 'verify', job: job.name, ...(id !== undefined ? { id } : {}) }, signal)).checks! : await verifyHere(job, id, signal);
    if (id === undefined) putVerifyRecord(cfg.stateDir, { version: 1, job: job.name, at: new Date().toISOString(), copies: checks });
    return checks;
  });
}

async function verifyHere(job: JobConfig, id: string | undefined, signal: AbortSignal): Promise<CopyCheck[]> {
  const h = await jobHistory(job);
  return verifyCopies(id === undefined ? h.copies : [findCopy(h, id, job.name)], signal);
}

/** Throws DIFFERENT naming the damaged copies, after they were printed. */
export function throwIfDamaged(job: string, checks: readonly CopyCheck[]): void {
  const bad = checks.filter((c) => c.result === 'damaged');
  if (bad.length) {
    throw new BlkError(ExitCode.DIFFERENT, `job ${job}: ${bad.length} damaged cop${bad.length === 1 ? 'y' : 'ies'}: ${bad.map((c) => `${c.id} (${c.lv})`).join(', ')}`);
  }
}

/**
 * Copies copy id to dest: a local path, or for a remote target also a path on the target's host
 * (HOST:/path, the server restores there). The copy is the source; it stays as it is.
 */
export function historyRestore(cfg: Config, job: JobConfig, id: string, dest: string, signal: AbortSignal, server?: HistoryServer): Promise<RemoteRestore> {
  return locked(cfg, job, async () => {
    const d = parseEndpoint(dest);
    if (d.kind === 'local' && server) return restoreFromServer(server, job, id, path.resolve(d.path), signal);
    if (d.kind === 'local') {
      const h = await jobHistory(job);
      const r = await restoreCopy(findCopy(h, id, job.name), path.resolve(d.path), { blockSize: job.blockSize, signal });
      return { copy: r.copy, dest: r.dest, bytesWritten: r.summary.bytesWritten, fingerprintMatches: r.fingerprintMatches };
    }
    if (!server || job.target.kind !== 'remote' || d.host !== job.target.host) {
      throw new BlkError(ExitCode.USAGE, `history restore: DEST ${dest} is on another host; give a local path, or a path on the target's host ${server ? server.host : '(this job\'s target is local)'}`);
    }
    const r = (await askServer(server, { op: 'restore', job: job.name, id, dest: d.path }, signal)).restore!;
    return { ...r, copy: `${server.host}:${r.copy}`, dest: `${server.host}:${r.dest}` };
  });
}
