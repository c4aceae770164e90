// One job's sync step: builds SyncOptions from the job's config and calls the engine's runSync,
// inside the LVM source snapshot when the job has one (withSourceSnapshot removes it whatever
// happens), through the SSH transport when one end is remote, and throttled when bwlimit is set.
//   [snapshot] -> transport (local server / ssh) [-> throttle] -> runSync(write, verify?)
// What an interruption leaves: see runSync (a target being written is left incomplete) and
// withSourceSnapshot (the snapshot is removed; after SIGKILL the next run removes it).
import { BlkError, ExitCode } from '../errors.js';
import { runSync } from '../engine/sync.js';
import type { SyncOptions, SyncSummary } from '../engine/types.js';
import { withSourceSnapshot, snapshotReportOf, type SnapshotReport } from '../lvm/snapshot.js';
import { LocalTransport } from '../transport/local.js';
import { throttleChannel } from '../transport/throttle.js';
import type { Transport } from '../transport/transport.js';
import type { JobConfig } from './config.js';

export interface JobSyncResult { summary: SyncSummary; snapshot?: SnapshotReport }

/** Called when the sync itself begins: from here on a failure may leave the target dirty. */
export type OnWriting = () => void;

export async function syncJob(job: JobConfig, signal: AbortSignal, onWriting: OnWriting): Promise<JobSyncResult> {
  if (!job.snapshot) {
    onWriting();
    return { summary: await runSync(await syncOptions(job, job.source.path, signal)) };
  }
  const [vg, lv] = job.snapshot.lv.split('/') as [string, string];
  const spec = { vg, lv, job: job.name, size: job.snapshot.size, maxFillPct: job.snapshot.maxFill };
  const { value, report } = await withSourceSnapshot(spec, signal, async (device, sig) => {
    onWriting();
    return runSync(await syncOptions(job, device, sig));
  });
  return { summary: value, snapshot: report };
}

/** The snapshot report an error from syncJob carries, if a snapshot was involved. */
export function snapshotOfError(err: unknown): SnapshotReport | undefined {
  return snapshotReportOf(err);
}

async function syncOptions(job: JobConfig, sourcePath: string, signal: AbortSignal): Promise<SyncOptions> {
  const remote = job.source.kind === 'remote' ? job.source : job.target.kind === 'remote' ? job.target : undefined;
  const base: Transport = remote ? await remoteTransport(job) : new LocalTransport();
  const transport = job.bwlimit ? throttled(base, job.bwlimit) : base;
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

/** The same transport with each direction capped at `rate` bytes per second. */
function throttled(t: Transport, rate: number): Transport {
  return {
    label: `${t.label}, bwlimit ${rate} B/s`,
    open: async (signal) => throttleChannel(await t.open(signal), rate),
  };
}

/**
 * The SSH transport for a job with a remote end. It comes from the SSH helper's
 * src/transport/connect.ts (transportFor); until that module is part of the build this fails
 * with a clear REMOTE error instead of guessing.
 */
async function remoteTransport(job: JobConfig): Promise<Transport> {
  const spec = '../transport/connect.js';
  let mod: { transportFor?: (...a: unknown[]) => Transport | Promise<Transport> };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (err) {
    throw new BlkError(ExitCode.REMOTE, `job ${job.name}: remote ends need the ssh transport (transport/connect.js), which this build lacks`, { cause: err });
  }
  if (!mod.transportFor) throw new BlkError(ExitCode.REMOTE, `job ${job.name}: transport/connect.js has no transportFor`);
  const remote = job.source.kind === 'remote' ? job.source : job.target;
  return mod.transportFor(remote, { ...job.ssh, port: job.ssh.port ?? (remote.kind === 'remote' ? remote.port : undefined) });
}
