// Protocol messages (docs/protocol.md) and the Conn that sends and expects them.
// Handshake: client HELLO → server WELCOME; client START → server READY; then the target side
// streams HASHES, the source side streams RECORDs and a DONE, the target answers RESULT.
// Either side may send ERROR at any point and stop; the peer turns it into a BlkError.
// A history request (HELLO.history): the server answers HISTORY instead of WELCOME (list, verify,
// prune, restore on the server), or WELCOME and a sync whose source is a kept copy (read).
import type { Channel } from '../transport/transport.js';
import type { TargetSnapshotRequest, TargetSnapshotResult } from '../engine/types.js';
import type { SnapshotReport } from '../lvm/snapshot.js';
import type { CopyFingerprint } from '../lvm/copy-tags.js';
import type { PruneResult } from '../lvm/copies.js';
import type { Retention } from '../lvm/retention.js';
import type { BlockRange } from '../ranges.js';
import type { BaseRef } from '../lvm/base-record.js';
import { BlkError, ExitCode, peerExitCode, printable } from '../errors.js';
import { FrameReader, FrameWriter, Msg, msgName, parseJson, type Frame, type MsgType } from './wire.js';
import type { ByteSource } from './byte-source.js';

export const PROTOCOL_MAGIC = 'BLKDELTA';
export const PROTOCOL_VERSION = 1;
/**
 * Capabilities this build speaks; a peer may list more, never fewer for what is asked of it.
 * policy-snapshot: HELLO.policySnapshot (the server's [server.target_snapshot] decides size and
 * retention; HELLO.targetSnapshot of older clients is refused). wait: the server may send WAIT
 * frames before WELCOME while the session waits for a max_concurrent slot. history: HELLO.history
 * (a job's kept copies on the server: list, verify, prune, restore, read). ranges: START.ranges
 * (both sides hash only those blocks: an incremental run). incremental: HELLO.incremental (a pull
 * whose server keeps the job's base next to the source: WELCOME.incremental, several STARTs in
 * one session, ROTATE/BASE frames; server/incremental.ts). sample: START.sample (a random sample
 * compared first; a difference there ends the session before anything is written).
 */
export const CAPS = ['lz4', 'zero', 'grow', 'verify', 'source-snapshot', 'policy-snapshot', 'wait', 'history', 'ranges', 'incremental', 'sample'] as const;

export type Role = 'source' | 'target';

export interface Hello {
  magic: string;
  version: number;
  caps: string[];
  role: Role;
  path: string;
  /** The target will be written (sync). False for dry-run, verify and patch output. */
  write: boolean;
  /**
   * Target side, write: snapshot the target LV before the first write as the server's policy says
   * (size, retention); the client may only name the job. Needs the policy-snapshot capability.
   */
  policySnapshot?: TargetSnapshotRequest;
  /** Source side: serve a temporary snapshot of the LV `path` names, made under the server's policy. */
  sourceSnapshot?: { job: string };
  /** A request about the kept copies of the target LV `path` names (needs the history capability). */
  history?: HistoryRequest;
  /** With sourceSnapshot: an incremental pull; the server keeps the job's base (needs the incremental capability). */
  incremental?: IncrementalAsk;
}

/** HELLO.incremental: the base the target's record names (null: none), whether to read the changes since it. */
export interface IncrementalAsk { base: BaseRef | null; delta: boolean; blockSize: number }

/** WELCOME.incremental: what the server found (lvm/base-lvm.ts SourceDelta without the size: WELCOME.size). */
export interface IncrementalInfo { thin: boolean; reason?: string; ranges?: BlockRange[]; removedBases: string[]; dropped?: string }

/** Client → server after the write pass of an incremental pull: make the new base, then (recorded) drop the old one. */
export interface Rotate { step: 'make' | 'drop' }

/** Server → client, the answer to ROTATE make: the new base and what the old one pinned. */
export interface NewBase { base: BaseRef; pinnedBytes?: number }

export const HISTORY_OPS = ['list', 'verify', 'prune', 'restore', 'read'] as const;

/**
 * HELLO.history. list, verify (id: one copy), prune (dryRun: show only; the server's retention),
 * restore (id to dest, a path on the server) are answered by one HISTORY frame; read (id) makes the
 * copy the source of the session that follows (role source): the client pulls it.
 */
export interface HistoryRequest {
  op: (typeof HISTORY_OPS)[number];
  job: string;
  id?: string;
  dryRun?: boolean;
  dest?: string;
}

/** The copy a read session serves (in WELCOME). */
export interface HistoryCopyInfo { id: string; lv: string; fingerprint: CopyFingerprint | null }

/** One line of `history list`, local or from a server (the JSON fields are documented in docs/history.md). */
export interface HistoryEntry {
  id: string;
  /** VG/LV of the copy (for the live target: the target LV). */
  lv: string;
  /** ISO time of the data it holds (the end of the run that made it), null when unknown. */
  dataTime: string | null;
  /** ISO time the copy was taken. */
  created: string | null;
  kind: 'thin' | 'cow';
  size: number | null;
  fingerprint: CopyFingerprint | null;
  /** good | pending (the last good copy of a torn target) | torn (overflowed) | live | dirty (live, being written or cut short). */
  state: 'good' | 'pending' | 'torn' | 'live' | 'dirty';
  live?: true;
}

/** One copy's `history verify` outcome, local or from a server. */
export interface CopyCheck {
  id: string;
  /** VG/LV of the copy. */
  lv: string;
  result: 'ok' | 'damaged' | 'unverifiable';
  detail: string;
}

/** Server → client: the answer to HELLO.history (all but read). */
export interface HistoryReply {
  version: 1;
  op: HistoryRequest['op'];
  entries?: HistoryEntry[];
  checks?: CopyCheck[];
  /** prune: the outcome, and the server's retention that made it. */
  prune?: PruneResult & { retention: Retention; poolMaxFill?: number };
  restore?: { copy: string; dest: string; bytesWritten: number; fingerprintMatches: boolean | null };
}

/** The snapshot a server made for HELLO.sourceSnapshot (in WELCOME). */
export type SourceSnapshotInfo = Pick<SnapshotReport, 'vg' | 'origin' | 'job' | 'name' | 'kind' | 'device' | 'createdAt' | 'staleRemoved'>;

export interface Welcome {
  magic: string;
  version: number;
  caps: string[];
  kind: 'file' | 'block';
  size: number;
  /** Present when HELLO asked for a source snapshot and the server made one. */
  sourceSnapshot?: SourceSnapshotInfo;
  /** A source block device mounted read-write where the server reads it: the mount points. */
  mountedRw?: string[];
  /** Present when HELLO.history asked to read a kept copy: the session's source. */
  historyCopy?: HistoryCopyInfo;
  /**
   * HELLO.policySnapshot: the seed and block size of the live target's label, so that the client
   * hashes with them and the run's baseFingerprint can confirm the copy's label (else the copy
   * is relabelled with an unknown data time). Absent when the target carries no label.
   */
  labelSeed?: { seed: string; blockSize: number };
  /** HELLO.incremental: the server's findings (the session then takes several STARTs and ROTATE frames). */
  incremental?: IncrementalInfo;
}

export interface Start {
  blockSize: number;
  /** Per-run hash seed, decimal string (a u64 does not fit a JSON number). */
  seed: string;
  /** Bytes both sides hash: [0, compareSize). Past the target's end it reads as zeros. */
  compareSize: number;
  /** The target's size after the sync (> its size only when a file target grows). */
  resultSize: number;
  /** Bytes per HASHES frame / read; a multiple of blockSize; also the largest record. */
  chunkSize: number;
  /** Where the source sends records: to the target side ('peer'), elsewhere, or nowhere. */
  recordsToPeer: boolean;
  compress: boolean;
  verify: boolean;
  /**
   * Only these blocks ([first, count], sorted, disjoint, inside compareSize) are read, hashed and
   * compared by both sides, in this order; absent: all of [0, compareSize). Needs the ranges
   * capability. A DONE of a ranged run carries no fingerprints (they cover the whole device).
   */
  ranges?: BlockRange[];
  /**
   * With ranges: blocks outside them (sorted, disjoint, sharing no block with ranges) that both
   * sides read and compare FIRST. The source sends no record for them; when any differs it stops
   * the session before any record (the target is not written) with a SampleDiffers error, so its
   * caller can compare in full instead. Needs the sample capability.
   */
  sample?: BlockRange[];
}

export interface Done {
  blocksCompared: number;
  blocksDiffering: number;
  blocksZero: number;
  records: number;
  dataBytes: number;
  bytesRead: number;
  firstDiffs: number[];
  /**
   * Fingerprint digests (engine/fingerprint.ts; the START's seed and block size, [0, compareSize))
   * of the content the target holds after the run and of the one it held before. Optional: a
   * source older than this field sends neither.
   */
  fingerprint?: string;
  baseFingerprint?: string;
  /** How the source was read: "O_DIRECT" or "page cache (why)" (io/direct.ts). Optional: older sources send none. */
  io?: string;
  /** START.sample given: how many of its blocks differed (always 0: a differing sample ends the session). */
  sampleDiffering?: number;
}

export interface Result {
  blocksWritten: number;
  bytesWritten: number;
  bytesRead: number;
  verified: boolean;
  targetSnapshot?: TargetSnapshotResult;
  /** How the target was read and written ("reads O_DIRECT, writes O_DIRECT"; io/direct.ts). Optional: older targets send none. */
  io?: string;
}

/** Server → client before WELCOME (clients with the wait capability): the session waits for a slot. */
export interface Wait {
  /** The server's max_concurrent and wait_timeout (seconds). */
  maxConcurrent: number;
  waitTimeout: number;
  /** Who holds the slots ("held by ..."), for the client's message. */
  holders: string;
}

export interface ErrorBody {
  code: number;
  message: string;
  /** A session on a source snapshot: whether the server removed it before sending this ERROR. */
  sourceSnapshot?: { name: string; removed: boolean; removeError?: string };
}

export class Conn {
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
  /** source: where the reader gets its bytes, when not from channel.input's chunks (the server's stdin: byte-source.ts). */
  constructor(readonly channel: Channel, readonly peerLabel: string, source?: ByteSource) {
    this.reader = new FrameReader(source ?? channel.input);
    this.writer = new FrameWriter(channel.output);
  }

  /**
   * The next frame of the given type; an ERROR frame from the peer is thrown as its BlkError
   * (peerError: its code checked against the exit table, its text without control characters).
   * `pending`: a read already started (the server reads on while it waits for a slot).
   */
  async expect(type: MsgType, pending?: Promise<Frame | null>): Promise<Frame> {
    const f = await (pending ?? this.reader.next());
    if (!f) throw await this.closedAfterExit(`waiting for ${msgName(type)}`);
    if (f.type === Msg.ERROR) throw this.peerError(f);
    if (f.type !== type) throw new BlkError(ExitCode.REMOTE, `protocol error: expected ${msgName(type)} from ${this.peerLabel}, got ${msgName(f.type)}`);
    return f;
  }

  async expectJson<T>(type: MsgType, pending?: Promise<Frame | null>): Promise<T> {
    return parseJson<T>(await this.expect(type, pending));
  }

  peerError(f: Frame): BlkError {
    const body = parseJson<Partial<ErrorBody> | null>(f);
    const message = typeof body?.message === 'string' ? body.message.slice(0, 4096) : 'sent a malformed ERROR';
    const err = new BlkError(peerExitCode(body?.code), `${this.peerLabel}: ${printable(message)}`);
    if (typeof body?.sourceSnapshot === 'object' && body.sourceSnapshot !== null) peerSnapshots.set(err, body.sourceSnapshot);
    return err;
  }

  /** The peer closed its end: wait for it to exit, so that its stderr is complete, then closed(). */
  async closedAfterExit(when: string): Promise<BlkError> {
    await this.channel.close();
    return this.closed(when);
  }

  closed(when: string): BlkError {
    const tail = printable(this.channel.stderrTail().trim());
    return new BlkError(ExitCode.REMOTE, `${this.peerLabel} closed the connection ${when}${tail ? `; its stderr: ${tail}` : ''}`);
  }

  sendError(code: number, message: string, sourceSnapshot?: ErrorBody['sourceSnapshot']): Promise<void> {
    return this.writer.sendJson(Msg.ERROR, { code, message, ...(sourceSnapshot ? { sourceSnapshot } : {}) } satisfies ErrorBody);
  }
}

const peerSnapshots = new WeakMap<object, NonNullable<ErrorBody['sourceSnapshot']>>();

/** What the peer's ERROR frame said about its source snapshot, if the error came from one. */
export function peerSnapshotOf(err: unknown): ErrorBody['sourceSnapshot'] {
  return typeof err === 'object' && err !== null ? peerSnapshots.get(err) : undefined;
}

/** Checks that a JSON message has the fields we rely on, with the right types. */
export function checkFields(what: string, obj: unknown, spec: Record<string, 'string' | 'number' | 'boolean' | 'object'>): void {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new BlkError(ExitCode.REMOTE, `malformed ${what}: not a JSON object`);
  for (const [k, t] of Object.entries(spec)) {
    const v = (obj as Record<string, unknown>)[k];
    if (typeof v !== t || (t === 'number' && !Number.isSafeInteger(v))) {
      throw new BlkError(ExitCode.REMOTE, `malformed ${what}: field ${k} must be ${t === 'number' ? 'a whole number of magnitude below 2^53' : `a ${t}`}`);
    }
  }
}

export function checkMagic(what: string, m: { magic?: unknown; version?: unknown }): void {
  if (m.magic !== PROTOCOL_MAGIC) throw new BlkError(ExitCode.REMOTE, `${what}: the other end is not blkdelta (bad magic)`);
  if (m.version !== PROTOCOL_VERSION) {
    throw new BlkError(ExitCode.REMOTE, `${what}: protocol version ${String(m.version)} is not supported (this blkdelta speaks ${PROTOCOL_VERSION}); install the same blkdelta version on both ends`);
  }
}

/**
 * A WELCOME from the server, checked before any of it is used: magic and version, kind "file" or
 * "block", size a whole number of bytes >= 0, caps a list of at most 64 short strings (REMOTE,
 * naming the field). The optional fields are read by welcomeMountedRw, welcomeLabelSeed,
 * historyCopyOf and reportFromWelcome, each of which trusts nothing either.
 */
export function checkWelcome(peer: string, w: unknown): asserts w is Welcome {
  checkFields('WELCOME', w, { kind: 'string', size: 'number' });
  checkMagic(peer, w as Welcome);
  const { kind, size, caps } = w as Welcome;
  const bad = (why: string) => new BlkError(ExitCode.REMOTE, `${peer}: malformed WELCOME: ${why}`);
  if (kind !== 'file' && kind !== 'block') throw bad(`field kind must be "file" or "block", got ${printable(JSON.stringify(kind))}`);
  if (size < 0) throw bad(`field size must be a whole number of bytes >= 0, got ${size}`);
  if (!Array.isArray(caps) || caps.length > 64 || !caps.every((c) => typeof c === 'string' && c.length <= 64)) {
    throw bad('field caps must be a list of at most 64 strings of at most 64 characters');
  }
}

/** WELCOME.mountedRw as shown to the operator: at most 16 mount points, printable, 4096 characters each. */
export function welcomeMountedRw(at: unknown): string[] | undefined {
  if (!Array.isArray(at) || at.length === 0) return undefined;
  return at.slice(0, 16).map((m) => printable(String(m)).slice(0, 4096));
}

/** WELCOME.labelSeed when the client asked for a policy snapshot and it fits the run's block size: a decimal u64, else undefined. */
export function welcomeLabelSeed(asked: boolean, l: unknown, blockSize: number): string | undefined {
  if (!asked || typeof l !== 'object' || l === null) return undefined;
  const { seed, blockSize: bs } = l as { seed?: unknown; blockSize?: unknown };
  if (bs !== blockSize) return undefined;
  return typeof seed === 'string' && /^\d{1,20}$/.test(seed) && BigInt(seed) < 2n ** 64n ? seed : undefined;
}

/** The error for a server without the history capability (it answered a history HELLO with WELCOME). */
export function noHistory(peer: string): BlkError {
  return new BlkError(ExitCode.REMOTE, `the server at ${peer} does not support history (an older blkdelta); upgrade blkdelta there (nothing was read or changed)`);
}

/** WELCOME.historyCopy of a read session, checked; REMOTE when the server lacks the capability or sent none. */
export function historyCopyOf(welcome: Welcome, peer: string): HistoryCopyInfo {
  if (!welcome.caps?.includes('history')) throw noHistory(peer);
  const c = welcome.historyCopy as unknown;
  checkFields('WELCOME.historyCopy', c, { id: 'string', lv: 'string' });
  const fp = (c as HistoryCopyInfo).fingerprint;
  if (fp !== null) checkFields('WELCOME.historyCopy.fingerprint', fp, { algo: 'string', seed: 'string', blockSize: 'number', size: 'number', digest: 'string' });
  const { id, lv } = c as HistoryCopyInfo;
  return { id: printable(id), lv: printable(lv), fingerprint: fp };
}
