// What the server accepts from a client, checked before any of it is used (docs/protocol.md,
// "Validation"). Every refusal is BlkError REMOTE (exit 9) naming the message and the field.
//   HELLO: at most MAX_HELLO bytes of JSON, an object; magic and version; caps a short list of
//          short strings; role source|target; path a string of at most PATH_MAX bytes; write a
//          boolean; targetSnapshot, when present, {job, keep, size?} of the right types; history,
//          when present, {op, job, id?, dryRun?, dest?} (checkHistory).
//   START: engine/session.ts checkStart (geometry, sizes against the device), then the growth
//          rule of this server: checkGrowth.
// Unknown fields are ignored (a newer client may send more). Pure, except checkGrowth's statfs.
import fs from 'node:fs';
import { BlkError, ExitCode } from '../errors.js';
import { checkMagic, HISTORY_OPS, type Hello, type Start } from '../proto/messages.js';
import { Msg, checkJsonNodes, msgName, type Frame } from '../proto/wire.js';
import type { Device } from '../io/device.js';

/** Largest HELLO payload; a real one is a few hundred bytes. */
export const MAX_HELLO = 64 * 1024;
/** Longest device path (Linux PATH_MAX, NUL included). */
export const PATH_MAX = 4096;
const MAX_CAPS = 64;
const MAX_CAP_LEN = 64;

const malformed = (what: string, why: string) => new BlkError(ExitCode.REMOTE, `malformed ${what}: ${why}`);

/** A JSON control frame as a plain object (not null, not an array), or REMOTE naming the message. */
export function parseObject(f: Frame, max: number): Record<string, unknown> {
  const what = msgName(f.type);
  if (f.payload.length > max) throw malformed(what, `${f.payload.length} bytes exceeds the limit of ${max}`);
  checkJsonNodes(f);
  let v: unknown;
  try {
    v = JSON.parse(f.payload.toString('utf8'));
  } catch {
    throw malformed(what, `not JSON (${f.payload.length} bytes)`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(what, `not a JSON object (got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v})`);
  return v as Record<string, unknown>;
}

function str(what: string, o: Record<string, unknown>, k: string, max: number, optional = false): void {
  const v = o[k];
  if (optional && v === undefined) return;
  if (typeof v !== 'string') throw malformed(what, `field ${k} must be a string`);
  if (Buffer.byteLength(v) > max) throw malformed(what, `field ${k} is ${Buffer.byteLength(v)} bytes long, more than ${max}`);
}

/** The client's HELLO frame, validated; see the header. */
export function parseHello(f: Frame): Hello {
  if (f.type !== Msg.HELLO) throw new BlkError(ExitCode.REMOTE, `protocol error: the client did not start with HELLO (got ${msgName(f.type)})`);
  const o = parseObject(f, MAX_HELLO);
  checkMagic('client', o);
  if (!Array.isArray(o.caps) || o.caps.length > MAX_CAPS || !o.caps.every((c) => typeof c === 'string' && c.length <= MAX_CAP_LEN)) {
    throw malformed('HELLO', `field caps must be a list of at most ${MAX_CAPS} strings of at most ${MAX_CAP_LEN} characters`);
  }
  if (o.role !== 'source' && o.role !== 'target') throw malformed('HELLO', `field role must be "source" or "target", got ${JSON.stringify(o.role)?.slice(0, 40)}`);
  str('HELLO', o, 'path', PATH_MAX - 1);
  if (typeof o.write !== 'boolean') throw malformed('HELLO', 'field write must be a boolean');
  if (o.write && o.role !== 'target') throw malformed('HELLO', 'field write is true for a source');
  if (o.targetSnapshot !== undefined) checkTargetSnapshot(o.targetSnapshot);
  if (o.history !== undefined) checkHistory(o.history, o);
  return o as unknown as Hello;
}

/**
 * HELLO.history: the types of its fields, and the session it asks for: read is a source session,
 * the other operations a target one; none writes through the session (write false).
 */
function checkHistory(v: unknown, hello: Record<string, unknown>): void {
  const what = 'HELLO';
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(what, 'field history must be an object {op, job, id?, dryRun?, dest?}');
  const o = v as Record<string, unknown>;
  if (!HISTORY_OPS.includes(o.op as never)) throw malformed(what, `field history.op must be one of ${HISTORY_OPS.join(', ')}, got ${JSON.stringify(o.op)?.slice(0, 40)}`);
  str(what, o, 'job', 64);
  str(what, o, 'id', 128, true);
  str(what, o, 'dest', PATH_MAX - 1, true);
  if (o.dryRun !== undefined && typeof o.dryRun !== 'boolean') throw malformed(what, 'field history.dryRun must be a boolean');
  if ((o.op === 'read' || o.op === 'restore') && o.id === undefined) throw malformed(what, `history.${String(o.op)} needs field history.id`);
  if ((o.op === 'restore') !== (o.dest !== undefined)) throw malformed(what, 'field history.dest is for history.restore, which needs it');
  const role = o.op === 'read' ? 'source' : 'target';
  if (hello.role !== role || hello.write !== false) throw malformed(what, `history.${String(o.op)} needs role ${role} and write false`);
  if (hello.sourceSnapshot !== undefined || hello.policySnapshot !== undefined) throw malformed(what, 'history cannot be combined with a snapshot request');
}

function checkTargetSnapshot(v: unknown): void {
  const what = 'HELLO';
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(what, 'field targetSnapshot must be an object');
  const o = v as Record<string, unknown>;
  str(what, o, 'job', 64);
  if (!Number.isSafeInteger(o.keep) || (o.keep as number) < 0) throw malformed(what, 'field targetSnapshot.keep must be a whole number >= 0');
  str(what, o, 'size', 64, true);
}

/**
 * Checks that this server may grow a target to start.resultSize (nothing to check when it need
 * not grow). The rule: a file target grows only in a session that writes it (not a dry run,
 * verify or patch output, and so never on a --read-only server), only when the whole new range is
 * compared (compareSize = resultSize, as --size-policy grow plans it; else REMOTE), and never
 * beyond the size of the file system that holds it (SIZE_MISMATCH). A block device never grows
 * (SIZE_MISMATCH). The session truncates a grown target back when it fails.
 */
export function checkGrowth(start: Start, dev: Device, write: boolean): void {
  if (!write || start.resultSize <= dev.size) return;
  const size = (why: string) => new BlkError(ExitCode.SIZE_MISMATCH, `target ${dev.path} cannot grow to resultSize ${start.resultSize}: ${why}`);
  if (dev.kind !== 'file') throw size(`it is a ${dev.size}-byte block device, and a block device cannot grow`);
  if (start.compareSize !== start.resultSize) throw malformed('START', `field compareSize ${start.compareSize} must equal resultSize ${start.resultSize} when the target grows`);
  const fsBytes = fileSystemBytes(dev);
  if (fsBytes === undefined) throw size('the size of its file system cannot be read');
  if (start.resultSize > fsBytes) throw size(`that is more than its whole file system (${fsBytes} bytes)`);
}

function fileSystemBytes(dev: Device): number | undefined {
  try {
    const s = fs.statfsSync(dev.realPath);
    return s.blocks * s.bsize;
  } catch {
    return undefined;
  }
}
