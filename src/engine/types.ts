// The engine's public types: what a sync is asked to do and what it reports.
import type { Transport } from '../transport/transport.js';
import type { Fingerprint } from './fingerprint.js';
import type { SnapshotReport } from '../lvm/snapshot.js';
import type { HistoryCopyInfo } from '../proto/messages.js';
import type { BlockRange } from '../ranges.js';
import type { IncrementalReport } from '../lvm/base-record.js';

/** strict: sizes must match; grow: extend a smaller file target; min: compare the common prefix. */
export type SizePolicy = 'strict' | 'grow' | 'min';
export const SIZE_POLICIES: readonly SizePolicy[] = ['strict', 'grow', 'min'];

/**
 * write: make the target equal to the source; dry-run and compare: write nothing, report what
 * differs (compare is the `verify` command); patch: write the records to `patchOut` instead.
 */
export type SyncMode = 'write' | 'dry-run' | 'compare' | 'patch';

export interface SyncOptions {
  /** Device or image path on its host (the remote host when remote.side is 'source'). */
  source: string;
  target: string;
  /** At most one end is remote; the other end runs in this process. */
  remote?: { side: 'source' | 'target'; transport: Transport };
  mode: SyncMode;
  blockSize: number;
  sizePolicy: SizePolicy;
  /** mode 'patch': the local file the patch is written to. */
  patchOut?: string;
  /** patch: replace an existing patch file (a regular file only), atomically at the end. */
  patchOverwrite?: boolean;
  /** Re-read every written block after fsync and check it against what was sent. */
  verify?: boolean;
  /** lz4-compress records that shrink (default true). */
  compress?: boolean;
  /** How many differing block offsets to report (default 10). */
  maxDiffsReported?: number;
  /** Identity of the source state, recorded in a patch header (e.g. snapshot name and time). */
  sourceLabel?: string;
  /**
   * Ask a remote target's server to snapshot the target LV before the first write, as its
   * [server.target_snapshot] policy says (size, retention); a local target: see withTargetSnapshot.
   */
  targetSnapshot?: TargetSnapshotRequest;
  /**
   * The block-hash seed (a u64 in decimal; default: random). A target copy's history passes the
   * seed of the fingerprint the live target is labelled with, so that the run's baseFingerprint
   * is comparable with it (src/lvm/target-snapshot.ts).
   */
  seed?: string;
  /**
   * A remote source (a pull): its server reads a temporary LVM snapshot of `source` (/dev/VG/LV),
   * made, watched and removed under the server's policy (server/snapshots.ts).
   */
  sourceSnapshot?: { job: string };
  /**
   * A remote source (a pull): its server serves the kept copy `id` of the target LV `source`,
   * made for `job` (history restore through the server; server/history.ts).
   */
  historyCopy?: { job: string; id: string };
  /**
   * Compare and write only these blocks ([first, count] in blockSize; merged and clipped here):
   * an incremental run (lvm/incremental.ts). Not with mode 'patch'. The summary then has no
   * fingerprints. The peer must speak the ranges capability.
   */
  ranges?: readonly BlockRange[];
  /**
   * With ranges: blocks outside them compared first (START.sample); any differing ends the run
   * with SampleDiffers (engine/source.ts) before the target is written. The peer must speak the
   * sample capability. The summary then has sampleDiffering (0).
   */
  sample?: readonly BlockRange[];
  /** Start the local half of the protocol as this transport's peer (tests; default: spawn). */
  localTransport?: Transport;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** The remote server is at its max_concurrent: called with "waiting for a slot on HOST (...)" (default: logged). */
  onWait?: (message: string) => void;
}

/** What a client may ask of a server's target snapshots: only the job they belong to. */
export interface TargetSnapshotRequest {
  job?: string;
}

/** What the target's server did with --target-snapshot. */
export interface TargetSnapshotResult {
  name: string;
  reused: boolean;
  kept: string[];
  removed: string[];
}

export interface Progress {
  bytesDone: number;
  bytesTotal: number;
  bytesDiffering: number;
  elapsedMs: number;
  /** Bytes sent plus received between the two ends so far (the network rate, over SSH). */
  bytesExchanged?: number;
}

export interface SyncSummary {
  mode: SyncMode;
  source: string;
  target: string;
  blockSize: number;
  sourceSize: number;
  targetSize: number;
  /** Bytes compared (the common prefix, or both sizes when equal; a ranged run: its ranges). */
  comparedBytes: number;
  blocksCompared: number;
  blocksDiffering: number;
  blocksWritten: number;
  /** Differing blocks that were all zero in the source (sent as zero records). */
  blocksZero: number;
  /** Bytes read from the source and from the target devices. */
  bytesReadSource: number;
  bytesReadTarget: number;
  /** Bytes that crossed the channel, each direction (protocol framing included). */
  bytesSent: number;
  bytesReceived: number;
  /** Bytes of block data written to the target (or to the patch). */
  bytesWritten: number;
  /** Bytes of the patch file, mode 'patch'. */
  patchBytes?: number;
  records: number;
  /** Offsets of the first differing blocks, up to maxDiffsReported. */
  firstDiffs: number[];
  identical: boolean;
  /** True when --verify re-read every written block and all matched. */
  verified: boolean;
  /** True when the target grew (size policy grow). */
  grown: boolean;
  durationMs: number;
  /** A remote target's snapshot (SyncOptions.targetSnapshot). */
  targetSnapshot?: TargetSnapshotResult;
  /** A pull's source snapshot, made and removed by the server (SyncOptions.sourceSnapshot). */
  sourceSnapshot?: SnapshotReport;
  /** The kept copy a pull read (SyncOptions.historyCopy), as its server described it. */
  historyCopy?: HistoryCopyInfo;
  /**
   * The content of [0, comparedBytes) that the run leaves on the target (in write mode, once it
   * succeeded) and the one the target held before. Absent when the source side is an older
   * blkdelta that does not send them.
   */
  fingerprint?: Fingerprint;
  baseFingerprint?: Fingerprint;
  /**
   * How each end used the page cache (io/direct.ts): the source "O_DIRECT" or "page cache (why)";
   * the target "reads ..., writes ...". Absent from an older peer.
   */
  sourceIo?: string;
  targetIo?: string;
  /** SyncOptions.sample given and the run went through: its differing blocks (0). */
  sampleDiffering?: number;
  /** --incremental / incremental = true: which kind of run it was, why a full compare, the base. */
  incremental?: IncrementalReport;
  /** A local source block device mounted read-write while it was read: the copy may be torn. */
  sourceMountedRw?: string[];
}
