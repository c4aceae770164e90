// Protocol messages (docs/protocol.md) and the Conn that sends and expects them.
// Handshake: client HELLO → server WELCOME; client START → server READY; then the target side
// streams HASHES, the source side streams RECORDs and a DONE, the target answers RESULT.
// Either side may send ERROR at any point and stop; the peer turns it into a BlkError.
import type { Channel } from '../transport/transport.js';
import type { TargetSnapshotResult, TargetSnapshotSpec } from '../engine/types.js';
import type { SnapshotReport } from '../lvm/snapshot.js';
import { BlkError, ExitCode } from '../errors.js';
import { FrameReader, FrameWriter, Msg, msgName, parseJson, type Frame, type MsgType } from './wire.js';

export const PROTOCOL_MAGIC = 'BLKDELTA';
export const PROTOCOL_VERSION = 1;
/** Capabilities this build speaks; a peer may list more, never fewer for what is asked of it. */
export const CAPS = ['lz4', 'zero', 'grow', 'verify', 'source-snapshot'] as const;

export type Role = 'source' | 'target';

export interface Hello {
  magic: string;
  version: number;
  caps: string[];
  role: Role;
  path: string;
  /** The target will be written (sync). False for dry-run, verify and patch output. */
  write: boolean;
  /** Target side: take an LVM snapshot before the first write, keep N (optional). */
  targetSnapshot?: TargetSnapshotSpec;
  /** Source side: serve a temporary snapshot of the LV `path` names, made under the server's policy. */
  sourceSnapshot?: { job: string };
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
}

export interface Result {
  blocksWritten: number;
  bytesWritten: number;
  bytesRead: number;
  verified: boolean;
  targetSnapshot?: TargetSnapshotResult;
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
  constructor(readonly channel: Channel, readonly peerLabel: string) {
    this.reader = new FrameReader(channel.input);
    this.writer = new FrameWriter(channel.output);
  }

  /** The next frame of the given type; an ERROR frame from the peer is thrown as its BlkError. */
  async expect(type: MsgType): Promise<Frame> {
    const f = await this.reader.next();
    if (!f) throw await this.closedAfterExit(`waiting for ${msgName(type)}`);
    if (f.type === Msg.ERROR) throw this.peerError(f);
    if (f.type !== type) throw new BlkError(ExitCode.REMOTE, `protocol error: expected ${msgName(type)} from ${this.peerLabel}, got ${msgName(f.type)}`);
    return f;
  }

  async expectJson<T>(type: MsgType): Promise<T> {
    return parseJson<T>(await this.expect(type));
  }

  peerError(f: Frame): BlkError {
    const body = parseJson<ErrorBody>(f);
    const code = Number.isInteger(body.code) && body.code > 0 && body.code < 256 ? body.code : ExitCode.REMOTE;
    const err = new BlkError(code as ExitCode, `${this.peerLabel}: ${String(body.message)}`);
    if (typeof body.sourceSnapshot === 'object' && body.sourceSnapshot !== null) peerSnapshots.set(err, body.sourceSnapshot);
    return err;
  }

  /** The peer closed its end: wait for it to exit, so that its stderr is complete, then closed(). */
  async closedAfterExit(when: string): Promise<BlkError> {
    await this.channel.close();
    return this.closed(when);
  }

  closed(when: string): BlkError {
    const tail = this.channel.stderrTail().trim();
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
  if (typeof obj !== 'object' || obj === null) throw new BlkError(ExitCode.REMOTE, `malformed ${what}: not an object`);
  for (const [k, t] of Object.entries(spec)) {
    const v = (obj as Record<string, unknown>)[k];
    if (typeof v !== t || (t === 'number' && !Number.isSafeInteger(v))) {
      throw new BlkError(ExitCode.REMOTE, `malformed ${what}: field ${k} must be ${t === 'number' ? 'an integer' : `a ${t}`}`);
    }
  }
}

export function checkMagic(what: string, m: { magic?: unknown; version?: unknown }): void {
  if (m.magic !== PROTOCOL_MAGIC) throw new BlkError(ExitCode.REMOTE, `${what}: the other end is not blkdelta (bad magic)`);
  if (m.version !== PROTOCOL_VERSION) {
    throw new BlkError(ExitCode.REMOTE, `${what}: protocol version ${String(m.version)} is not supported (this blkdelta speaks ${PROTOCOL_VERSION}); install the same blkdelta version on both ends`);
  }
}
