// One job's sync step: builds SyncOptions from the job's config and calls the engine's runSync,
// inside the LVM source snapshot when the job has one (withSourceSnapshot removes it whatever
// happens; a remote source's server makes and removes its own), through the SSH transport when
// one end is remote, and throttled when bwlimit is set.
//   [source snapshot] -> [target snapshot] -> transport (local server / ssh, bwlimit)
//   -> runSync(write, verify?) -> [label and prune target copies: retention, pool_max_fill]
// incremental = true: withIncremental replaces the source snapshot step (it makes the snapshot,
// picks the ranges, runs a sample pass, then the steps above on the ranges, then rotates the base);
// for a remote source, the server does that LVM part (pullSourceEnd: one session, the record here).
// What an interruption leaves: see runSync (a target being written is left incomplete) and
// withSourceSnapshot (the snapshot is removed; after SIGKILL the next run removes it).
import { runSync } from '../engine/sync.js';
import { writableMounts } from '../io/device.js';
import type { Progress, SyncOptions, SyncSummary } from '../engine/types.js';
import { withSourceSnapshot, snapshotReportOf, type SnapshotReport } from '../lvm/snapshot.js';
import { rotateTargetSnapshots, takeTargetSnapshot, type HistorySummary, type TargetSnapshotInfo } from '../lvm/target-snapshot.js';
import { LocalTransport } from '../transport/local.js';
import { throttled } from '../transport/throttle.js';
import { SshTransport } from '../transport/ssh.js';
import type { Transport } from '../transport/transport.js';
import type { RemoteEndpoint } from '../transport/address.js';
import type { JobConfig } from './config.js';
import { DEFAULT_STATE_DIR } from '../paths.js';
import { runIncremental, withIncremental, type Pass } from '../lvm/incremental.js';
import { pullSourceEnd } from '../engine/pull-incremental.js';

export interface JobSyncResult {
  summary: SyncSummary;
  snapshot?: SnapshotReport;
  /** The target's last good copy (target_snapshot) and the snapshots kept after rotation. */
  targetSnapshot?: { name: string; reused: boolean; kept: string[]; history?: HistorySummary };
}

/**
 * Phase marks: from writing() on a failure may leave the target dirty; after written() it is a
 * copy. compare() when the source snapshot is in place, cleanup() when the sync is done and
 * snapshots are removed or rotated (for the running record's phase).
 */
export interface Phases { writing(): void; written(): void; compare?(): void; cleanup?(): void }

export async function syncJob(job: JobConfig, signal: AbortSignal, phases: Phases, onProgress?: (p: Progress) => void, stateDir = DEFAULT_STATE_DIR): Promise<JobSyncResult> {
  if (job.incremental && job.snapshot) return incrementalJob(job, stateDir, signal, phases, onProgress);
  if (!job.snapshot || job.snapshot.remote) return syncTarget(job, job.source.path, signal, phases, onProgress); // remote: its server snapshots
  const [vg, lv] = job.snapshot.lv.split('/') as [string, string];
  const spec = { vg, lv, job: job.name, size: job.snapshot.size, maxFillPct: job.snapshot.maxFill, poolMaxFillPct: job.snapshot.poolMaxFill };
  const { value, report } = await withSourceSnapshot(spec, signal, async (device, sig) => {
    phases.compare?.();
    return syncTarget(job, device, sig, phases, onProgress);
  });
  return { ...value, snapshot: report };
}

/**
 * incremental = true: the passes of lvm/incremental.ts (the changed ranges with a sample outside
 * them compared first, or everything; everything again when the sample differs); the base record
 * lives in the state dir. A pull: the server keeps the base, one session carries every pass.
 */
async function incrementalJob(job: JobConfig, stateDir: string, signal: AbortSignal, phases: Phases, onProgress?: (p: Progress) => void): Promise<JobSyncResult> {
  const [vg, lv] = job.snapshot!.lv.split('/') as [string, string];
  const spec = {
    vg, lv, job: job.name, stateDir, target: job.targetText, blockSize: job.blockSize, poolMaxFillPct: job.snapshot!.poolMaxFill,
    sampleBlocks: job.incremental!.sampleBlocks, fullCompareEveryS: job.incremental!.fullCompareEveryS,
  };
  let written: JobSyncResult | undefined;
  if (job.snapshot!.remote) { // a pull: the server keeps the base, one session carries every pass
    const { value, report, snapshot } = await runIncremental(spec, pullSourceEnd({ ...syncOptions(job, job.source.path, signal), onProgress }, async (pass, run) => {
      phases.compare?.();
      if (pass.mode !== 'write') return run();
      written = await withLocalTargetSnapshot(job, signal, phases, run);
      return written.summary;
    }));
    return { ...written!, summary: { ...value, incremental: report }, snapshot };
  }
  const { value, report, snapshot } = await withIncremental(spec, signal, async (device, pass, sig) => {
    phases.compare?.();
    written = await syncTarget(job, device, sig, phases, onProgress, pass);
    return written.summary;
  });
  return { ...written!, summary: { ...value, incremental: report }, snapshot };
}

/** An incremental pass's blocks (absent: everything). */
type Ranged = Pick<Pass, 'ranges' | 'sample'>;

/** target_snapshot: snapshot the target LV, sync, then rotate (only after a success). */
async function syncTarget(job: JobConfig, source: string, signal: AbortSignal, phases: Phases, onProgress?: (p: Progress) => void, pass?: Ranged): Promise<JobSyncResult> {
  if (job.target.kind === 'remote') return syncRemoteTarget(job, source, signal, phases, onProgress, pass);
  return withLocalTargetSnapshot(job, signal, phases, (seed) => runSync({ ...syncOptions(job, source, signal), seed, onProgress, ranges: pass?.ranges, sample: pass?.sample }));
}

/** A local target: its target_snapshot taken before run(seed) writes it, rotated after a success. */
async function withLocalTargetSnapshot(job: JobConfig, signal: AbortSignal, phases: Phases, run: (seed?: string) => Promise<SyncSummary>): Promise<JobSyncResult> {
  const ts = job.targetSnapshot;
  const taken = ts ? await takeTargetSnapshot(job.target.path, { job: job.name, size: ts.size, poolMaxFill: ts.poolMaxFill }) : undefined;
  signal.throwIfAborted();
  phases.writing();
  const summary = await run(seedOf(taken, job.blockSize));
  phases.written();
  phases.cleanup?.();
  const snapshot = summary.sourceSnapshot; // a pull's, made by the server
  if (!ts || !taken) return { summary, snapshot };
  const content = { dataTime: Date.now(), fingerprint: summary.fingerprint, baseFingerprint: summary.baseFingerprint, copy: taken.reused ? undefined : taken.name };
  const { kept, history } = await rotateTargetSnapshots(job.target.path, { job: job.name, retention: ts.retention, poolMaxFill: ts.poolMaxFill, content });
  return { summary, snapshot, targetSnapshot: { name: `${taken.vg}/${taken.name}`, reused: taken.reused, kept, history } };
}

/** The seed of the new copy's label, so that the run's baseFingerprint checks it. */
function seedOf(taken: TargetSnapshotInfo | undefined, blockSize: number): string | undefined {
  return taken?.labelled?.blockSize === blockSize ? taken.labelled.seed : undefined;
}

/**
 * A remote target: the job only asks (SyncOptions.targetSnapshot); its server takes and rotates
 * the snapshot as its own [server.target_snapshot] says.
 */
async function syncRemoteTarget(job: JobConfig, source: string, signal: AbortSignal, phases: Phases, onProgress?: (p: Progress) => void, pass?: Ranged): Promise<JobSyncResult> {
  const ts = job.targetSnapshot;
  phases.writing();
  const summary = await runSync({ ...syncOptions(job, source, signal), onProgress, ranges: pass?.ranges, sample: pass?.sample, ...(ts ? { targetSnapshot: { job: job.name } } : {}) });
  phases.written();
  phases.cleanup?.();
  const t = summary.targetSnapshot;
  return t ? { summary, targetSnapshot: { name: t.name, reused: t.reused, kept: t.kept } } : { summary };
}

/** Why a run of this job now could make a torn copy (local source mounted read-write, no snapshot), or undefined. */
export function tornCopyRisk(job: JobConfig): string | undefined {
  if (job.snapshot || job.source.kind !== 'local') return undefined;
  const rw = writableMounts(job.source.path);
  if (!rw.length) return undefined;
  return `source ${job.source.path} is mounted read-write at ${rw.join(', ')} and the job takes no snapshot: its copy may be torn (runs will record a warning); set snapshot = "VG/LV" or unmount it`;
}

/** The snapshot report an error from syncJob carries, if a snapshot was involved. */
export function snapshotOfError(err: unknown): SnapshotReport | undefined {
  return snapshotReportOf(err);
}

function syncOptions(job: JobConfig, sourcePath: string, signal: AbortSignal): SyncOptions {
  const remote = job.source.kind === 'remote' ? job.source : job.target.kind === 'remote' ? job.target : undefined;
  const transport: Transport = remote ? remoteTransport(job, remote)
    : job.bwlimit ? throttled(new LocalTransport(), job.bwlimit) : new LocalTransport();
  return {
    source: job.source.kind === 'remote' ? job.source.path : sourcePath,
    target: job.target.path,
    remote: remote ? { side: remote === job.source ? 'source' : 'target', transport } : undefined,
    localTransport: remote ? undefined : transport,
    mode: 'write',
    blockSize: job.blockSize,
    sizePolicy: job.sizePolicy,
    verify: job.verify,
    compress: job.compress,
    sourceLabel: `${job.name}|${sourcePath}|${new Date().toISOString()}`,
    sourceSnapshot: job.snapshot?.remote ? { job: job.name } : undefined,
    signal,
  };
}

/** The SSH transport to the remote end (ssh options from the job's [ssh] table). */
export function remoteTransport(job: JobConfig, remote: RemoteEndpoint): Transport {
  return new SshTransport({
    host: remote.host,
    port: job.ssh.port ?? remote.port,
    user: remote.user,
    identityFiles: job.ssh.identity ? [job.ssh.identity] : undefined,
    knownHostsFiles: job.ssh.knownHosts ? [job.ssh.knownHosts] : undefined,
    remoteCmd: job.ssh.remoteCmd,
    connectTimeoutMs: job.ssh.connectTimeout !== undefined ? job.ssh.connectTimeout * 1000 : undefined,
    bwlimit: job.bwlimit,
  });
}
