// An incremental pull, the server's side (docs/lvm.md, "Pulled incremental runs"): a HELLO with
// sourceSnapshot {job} and incremental {base, delta, blockSize} asks this server, on the source
// host, to do the LVM part of an incremental run (lvm/base-lvm.ts) under its own policy:
//   HELLO → allow list on the origin, [server.source_snapshot] required (else PERMISSION, before
//   anything is created), incrementalAsk (every field checked: a base name is only ever matched
//   against the rows of LVs this server tagged as the job's base, never put in lvm argv)
//   → withBaseSnapshot: remove the job's bases the client's record does not name (and the named
//     one over pool_max_fill), thin snapshot S, thin_delta(base, S) if asked
//   → WELCOME (with incremental: thin, ranges or the reason, removed bases)
//   → up to MAX_PASSES STARTs, each a pass on S (the client's sample, then its write)
//   → ROTATE make: B' = thin snapshot of S, answered with BASE {name, uuid, thinId}
//   → ROTATE drop (the client recorded B'): the old base is removed
//   → S removed, output ended (EOF; the client waits for it)
// What the client may do: name its base and job, ask for the changes, run passes, ask for the
// rotation. It never chooses an LV to remove, a size or a limit.
// Interrupted: the client going away (EOF) or SIGINT/SIGTERM ends the session; S is removed; a B'
// made but not yet named by the client's record is removed by the next session of the job; an old
// base not yet dropped is removed by the next session too (the record names B'). SIGKILL leaves
// S (removed by the next session, tagged) and possibly B' (the same). Memory: the changed ranges.
import type { Readable } from 'node:stream';
import { BlkError, ExitCode } from '../errors.js';
import { openSource } from '../io/device.js';
import { checkBlockSize, checkStart, runSourceSide } from '../engine/session.js';
import { PeerSink } from '../engine/sinks.js';
import { lvmNameProblem } from '../lvm/argv.js';
import { withBaseSnapshot, type BaseAsk, type Rotation, type SourceDelta } from '../lvm/base-lvm.js';
import type { BaseRef } from '../lvm/base-record.js';
import { Conn, CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Hello, type IncrementalInfo, type NewBase, type Start, type Welcome } from '../proto/messages.js';
import { Msg, msgName, type Frame } from '../proto/wire.js';
import { DEFAULT_STATE_DIR } from '../paths.js';
import type { ServerConfig } from './policy.js';
import { snapshotInfo, type SnapshotRequest } from './snapshots.js';
import { parseObject } from './validate.js';

/** Passes one session serves: a sample and a write, with room for one more; a client asking more is refused. */
export const MAX_PASSES = 4;
/** An LVM uuid as lvs prints it: 6-4-4-4-4-4-6 characters of [A-Za-z0-9]. */
const LVM_UUID = /^[A-Za-z0-9]{6}(-[A-Za-z0-9]{4}){5}-[A-Za-z0-9]{6}$/;
/** Thin device ids are 24 bits. */
const MAX_THIN_ID = 2 ** 24 - 1;

const malformed = (why: string) => new BlkError(ExitCode.REMOTE, `malformed HELLO: field incremental${why}`);

/** HELLO.incremental checked (REMOTE naming the field); it needs HELLO.sourceSnapshot and role source. */
export function incrementalAsk(hello: Pick<Hello, 'role' | 'sourceSnapshot' | 'incremental'>): BaseAsk {
  const v = hello.incremental as unknown;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(' must be an object {base, delta, blockSize}');
  if (hello.sourceSnapshot === undefined || hello.role !== 'source') throw malformed(' needs role source and sourceSnapshot {job} (an incremental pull)');
  const o = v as Record<string, unknown>;
  if (typeof o.delta !== 'boolean') throw malformed('.delta must be a boolean');
  if (typeof o.blockSize !== 'number') throw malformed('.blockSize must be a number');
  try {
    checkBlockSize(o.blockSize);
  } catch {
    throw malformed(`.blockSize ${o.blockSize} is not a power of two from 512 to 16 MiB`);
  }
  return { named: baseRefOf(o.base), delta: o.delta, blockSize: o.blockSize };
}

/** incremental.base: null or {name, uuid, thinId}, each checked. */
function baseRefOf(b: unknown): BaseRef | null {
  if (b === null) return null;
  if (typeof b !== 'object' || Array.isArray(b) || b === undefined) throw malformed('.base must be null or {name, uuid, thinId}');
  const { name, uuid, thinId } = b as Record<string, unknown>;
  if (typeof name !== 'string') throw malformed('.base.name must be a string');
  const bad = lvmNameProblem(name, 'LV');
  if (bad) throw malformed(`.base.name: ${bad}`);
  if (typeof uuid !== 'string' || !LVM_UUID.test(uuid)) throw malformed('.base.uuid must be an LVM uuid (xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx)');
  if (typeof thinId !== 'number' || !Number.isSafeInteger(thinId) || thinId < 0 || thinId > MAX_THIN_ID) throw malformed(`.base.thinId must be a whole number from 0 to ${MAX_THIN_ID}`);
  return { name, uuid, thinId };
}

/** PERMISSION when the server's [server.source_snapshot] says incremental = false (it keeps no base here). */
export function checkIncrementalPolicy(req: SnapshotRequest): void {
  if (req.policy.incremental !== false) return;
  throw new BlkError(ExitCode.PERMISSION, `refused by the server: its [server.source_snapshot] policy has incremental = false, so it keeps no base of ${req.vg}/${req.lv} ` +
    'for an incremental pull; pull without --incremental, or set incremental = true there');
}

/** WELCOME.incremental from what the server found. */
export function incrementalInfo(d: SourceDelta): IncrementalInfo {
  return {
    thin: d.thin, removedBases: d.removedBases.slice(),
    ...(d.reason !== undefined ? { reason: d.reason } : {}), ...(d.ranges ? { ranges: d.ranges } : {}), ...(d.dropped ? { dropped: d.dropped } : {}),
  };
}

/** A ROTATE frame's step, checked against what came before: make once, after a pass; drop once, after make. */
export function rotateStep(f: Frame, state: { passes: number; made: boolean }): 'make' | 'drop' {
  const o = parseObject(f, 1024);
  const step = o.step;
  if (step !== 'make' && step !== 'drop') throw new BlkError(ExitCode.REMOTE, 'malformed ROTATE: field step must be "make" or "drop"');
  if (step === 'make' && (state.made || state.passes === 0)) throw new BlkError(ExitCode.REMOTE, `protocol error: ROTATE make ${state.made ? 'twice' : 'before any pass'}`);
  if (step === 'drop' && !state.made) throw new BlkError(ExitCode.REMOTE, 'protocol error: ROTATE drop before ROTATE make');
  return step;
}

/**
 * What a frame after WELCOME asks, checked against what came before (a START counts as a pass):
 * a pass (at most MAX_PASSES, none after ROTATE make), ROTATE make or drop; anything else REMOTE.
 */
export function sessionStep(f: Frame, state: { passes: number; made: boolean }): 'start' | 'make' | 'drop' {
  if (f.type === Msg.ROTATE) return rotateStep(f, state);
  if (f.type !== Msg.START) throw new BlkError(ExitCode.REMOTE, `protocol error: ${msgName(f.type)} in an incremental session (expected START, ROTATE or the end)`);
  if (state.made) throw new BlkError(ExitCode.REMOTE, 'protocol error: START after ROTATE make');
  if (state.passes >= MAX_PASSES) throw new BlkError(ExitCode.REMOTE, `protocol error: more than ${MAX_PASSES} passes in one incremental session`);
  state.passes++;
  return 'start';
}

/**
 * Serves one incremental pull on S (see the header). `pending`: the client's first frame after
 * WELCOME, already being read while the session waited for a slot.
 */
export async function incrementalPull(conn: Conn, req: SnapshotRequest, ask: BaseAsk, cfg: ServerConfig, signal: AbortSignal | undefined, input: Readable,
  pending?: Promise<Frame | null>): Promise<void> {
  const spec = { vg: req.vg, lv: req.lv, job: req.job, poolMaxFillPct: req.policy.poolMaxFill, markerDir: cfg.stateDir ?? DEFAULT_STATE_DIR };
  const snapExtra = { cowSize: req.policy.size, maxFillPct: req.policy.maxFill };
  await withBaseSnapshot(spec, ask, signal ?? new AbortController().signal, snapExtra, async (device, sig, snap, delta, rotation) => {
    const stop = () => input.destroy(sig.reason as Error);
    sig.addEventListener('abort', stop, { once: true });
    const dev = openSource(device);
    try {
      await conn.writer.sendJson(Msg.WELCOME, {
        magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], kind: dev.kind, size: dev.size,
        sourceSnapshot: snapshotInfo(snap), incremental: incrementalInfo(delta),
      } satisfies Welcome);
      await passesAndRotation(conn, dev, sig, rotation, pending);
    } finally {
      dev.close();
      sig.removeEventListener('abort', stop);
    }
  });
}

/** The loop after WELCOME: STARTs (passes on S), ROTATE make / drop, until drop or the client's EOF. */
async function passesAndRotation(conn: Conn, dev: ReturnType<typeof openSource>, signal: AbortSignal, rotation: Rotation, pending?: Promise<Frame | null>): Promise<void> {
  const state = { passes: 0, made: false };
  for (let f = await (pending ?? conn.reader.next()); f; f = await conn.reader.next()) {
    const step = sessionStep(f, state);
    if (step === 'start') {
      const start = parseObject(f, 64 * 1024 * 1024) as unknown as Start;
      checkStart(start, dev, 'source');
      await conn.writer.send(Msg.READY);
      await runSourceSide(dev, conn, start, start.recordsToPeer ? new PeerSink(conn) : null, { maxDiffs: 10, signal });
    } else if (step === 'drop') {
      await rotation.dropOld();
      return;
    } else {
      const made = await rotation.makeBase();
      state.made = true;
      await conn.writer.sendJson(Msg.BASE, made satisfies NewBase);
    }
  }
}
