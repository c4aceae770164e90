// One job's sync step: builds SyncOptions from the job's config and calls the engine's runSync,
// inside the LVM source snapshot when the job has one (withSourceSnapshot removes it whatever
// happens), through the SSH transport when one end is remote, and throttled when bwlimit is set.
//   [source snapshot] -> [target snapshot] -> transport (local server / ssh, bwlimit)
//   -> runSync(write, verify?) -> [rotate target snapshots, keep N]
// What an interruption leaves: see runSync (a target being written is left incomplete) and
// withSourceSnapshot (the snapshot is removed; after SIGKILL the next run removes it).
import { runSync } from '../engine/sync.js';
import type { SyncOptions, SyncSummary } from '../engine/types.js';
import { withSourceSnapshot, snapshotReportOf, type SnapshotReport } from '../lvm/snapshot.js';
import { rotateTargetSnapshots, takeTargetSnapshot } from '../lvm/target-snapshot.js';
import { LocalTransport } from '../transport/local.js';
import { throttled } from '../transport/throttle.js';
import { SshTransport } from '../transport/ssh.js';
import type { Transport } from '../transport/transport.js';
import type { RemoteEndpoint } from '../transport/address.js';
import type { JobConfig } from './config.js';

export interface JobSyncResult {
  summary: SyncSummary;
  snapshot?: SnapshotReport;
  /** The target's last good copy (target_snapshot) and the snapshots kept after rotation. */
  targetSnapshot?: { name: string; reused: boolean; kept: string[] };
}

/** Phase marks: from writing() on a failure may leave the target dirty; after written() it is a copy. */
export interface Phases { writing(): void; written(): void }

export async function syncJob(job: JobConfig, signal: AbortSignal, phases: Phases): Promise<JobSyncResult> {
  if (!job.snapshot) return syncTarget(job, job.source.path, signal, phases);
  const [vg, lv] = job.snapshot.lv.split('/') as [string, string];
  const spec = { vg, lv, job: job.name, size: job.snapshot.size, maxFillPct: job.snapshot.maxFill };
  const { value, report } = await withSourceSnapshot(spec, signal, (device, sig) => syncTarget(job, device, sig, phases));
  return { ...value, snapshot: report };
}

/** target_snapshot: snapshot the target LV, sync, then rotate (only after a success). */
async function syncTarget(job: JobConfig, source: string, signal: AbortSignal, phases: Phases): Promise<JobSyncResult> {
  if (job.target.kind === 'remote') return syncRemoteTarget(job, source, signal, phases);
  const ts = job.targetSnapshot;
  const taken = ts ? await takeTargetSnapshot(job.target.path, { job: job.name, size: ts.size }) : undefined;
  signal.throwIfAborted();
  phases.writing();
  const summary = await runSync(syncOptions(job, source, signal));
  phases.written();
  if (!ts || !taken) return { summary };
  const { kept } = await rotateTargetSnapshots(job.target.path, { job: job.name, keep: ts.keep });
  return { summary, targetSnapshot: { name: `${taken.vg}/${taken.name}`, reused: taken.reused, kept } };
}

/**
 * A remote target: the job only asks (SyncOptions.targetSnapshot); its server takes and rotates
 * the snapshot as its own [server.target_snapshot] says.
 */
async function syncRemoteTarget(job: JobConfig, source: string, signal: AbortSignal, phases: Phases): Promise<JobSyncResult> {
  const ts = job.targetSnapshot;
  phases.writing();
  const summary = await runSync({ ...syncOptions(job, source, signal), ...(ts ? { targetSnapshot: { job: job.name } } : {}) });
  phases.written();
  const t = summary.targetSnapshot;
  return t ? { summary, targetSnapshot: { name: t.name, reused: t.reused, kept: t.kept } } : { summary };
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
    signal,
  };
}

/** The SSH transport to the remote end (ssh options from the job's [ssh] table). */
function remoteTransport(job: JobConfig, remote: RemoteEndpoint): Transport {
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
