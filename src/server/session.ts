// `blkdelta server`: the far end of a sync, speaking the protocol on stdin/stdout (spawned by
// LocalTransport, or run by sshd for an SSH transport). One session per process:
//   HELLO (role, device path, write?) → policy check → open the device → WELCOME (kind, size)
//   (HELLO.sourceSnapshot: the device opened is a snapshot made here, see snapshots.ts)
//   START (geometry) → checks, grow a file target → READY → run the role → wait for stdin EOF
//   (on a source snapshot: remove it after RESULT, then end the output; the client waits for that)
// The device path only ever travels inside the protocol, never through a shell.
// Errors go back as an ERROR frame (exit code + message) and to stderr; the process exits when
// its stdin closes, so no server outlives its client.
import fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { loadHasher } from '../hash.js';
import { log } from '../log.js';
import { Conn, checkFields, checkMagic, CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Hello, type Start, type Welcome } from '../proto/messages.js';
import { Msg } from '../proto/wire.js';
import { openSource, openTarget, type Device } from '../engine/device.js';
import { checkStart, geometryOf, runSourceSide } from '../engine/session.js';
import { DeviceWriter, PeerSink } from '../engine/sinks.js';
import { runTarget, type TargetSink } from '../engine/target.js';
import type { TargetSnapshotSpec } from '../engine/types.js';
import { snapshotOutcome, snapshotRequest, withServerSnapshot, type OnSnapshot, type SourceSnapshotPolicy } from './snapshots.js';

export interface ServerOptions {
  /** Throws BlkError PERMISSION when the client may not use this path (or may not write it). */
  checkDevice?: (path: string, write: boolean) => void;
  /** What a pull may snapshot here ([server.source_snapshot]); absent: refused (exit 12). */
  sourceSnapshot?: SourceSnapshotPolicy;
  /** SIGINT/SIGTERM: a session on a source snapshot stops, and the snapshot is removed. */
  signal?: AbortSignal;
}

export async function serve(input: Readable, output: Writable, opts: ServerOptions = {}): Promise<number> {
  const conn = new Conn({ input, output, stderrTail: () => '', close: async () => null }, 'client');
  try {
    const first = await conn.reader.next();
    if (!first) return ExitCode.OK;
    if (first.type !== Msg.HELLO) throw new BlkError(ExitCode.REMOTE, 'protocol error: the client did not start with HELLO');
    const hello = JSON.parse(first.payload.toString('utf8')) as Hello;
    checkMagic('client', hello);
    checkFields('HELLO', hello, { role: 'string', path: 'string', write: 'boolean' });
    if (hello.role !== 'source' && hello.role !== 'target') throw new BlkError(ExitCode.REMOTE, `protocol error: unknown role ${hello.role}`);
    opts.checkDevice?.(hello.path, hello.write);
    if (hello.sourceSnapshot === undefined) await session(conn, hello, hello.path);
    else await withServerSnapshot(snapshotRequest(hello, opts.sourceSnapshot), opts.signal, input, (dev, snap) => session(conn, hello, dev, snap));
    return ExitCode.OK;
  } catch (err) {
    const code = exitCodeOf(err);
    const snap = snapshotOutcome(err);
    const left = snap && !snap.removed ? `; snapshot ${snap.name} was NOT removed: ${snap.removeError ?? 'see the server log'}` : '';
    const message = (code === ExitCode.INTERNAL ? `internal error: ${describe(err)}` : describe(err)) + left;
    log.error(message);
    await conn.sendError(code, message, snap).catch(() => { /* the client is gone */ });
    return snap && !snap.removed ? ExitCode.SNAPSHOT : code; // the client reads a left snapshot from this
  } finally {
    output.end();
    input.destroy(); // stop reading: a client still sending gets EPIPE, and this process can exit
  }
}

/** One session on `path` (the HELLO's, or a source snapshot's device) until the client's EOF. */
async function session(conn: Conn, hello: Hello, path: string, snap?: OnSnapshot): Promise<void> {
  const dev: Device = hello.role === 'source' ? openSource(path) : openTarget(path, { write: hello.write });
  try {
    await conn.writer.sendJson(Msg.WELCOME, {
      magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], kind: dev.kind, size: dev.size,
      ...(snap ? { sourceSnapshot: snap.info } : {}),
    } satisfies Welcome);

    const start = await conn.expectJson<Start>(Msg.START);
    checkStart(start, dev, hello.role);
    const targetSize = dev.size;
    if (hello.role === 'target' && hello.write && start.resultSize > dev.size) grow(dev, start.resultSize);
    await conn.writer.send(Msg.READY);

    if (hello.role === 'source') {
      await runSourceSide(dev, conn, start, start.recordsToPeer ? new PeerSink(conn) : null, { maxDiffs: 10, signal: snap?.signal });
    } else {
      const h = await loadHasher();
      const writer = hello.write ? new DeviceWriter(dev, geometryOf(start, targetSize), h, { verify: start.verify }) : null;
      await runTarget(dev, conn, start, writer && hello.targetSnapshot ? await withTargetSnapshot(writer, dev.path, hello.targetSnapshot) : writer);
    }
    if (snap) return; // the caller removes the snapshot, then ends the output: the client waits for that
    const extra = await conn.reader.next();
    if (extra) throw new BlkError(ExitCode.REMOTE, 'protocol error: data after the end of the session');
  } finally {
    dev.close();
  }
}

/**
 * --target-snapshot for this (remote) target: snapshot the LV now, before the first write; after
 * a successful finish, rotate the job's snapshots. A failed run prunes nothing.
 */
async function withTargetSnapshot(inner: TargetSink, device: string, spec: TargetSnapshotSpec): Promise<TargetSink> {
  const lvm = await import('../lvm/target-snapshot.js');
  const taken = await lvm.takeTargetSnapshot(device, spec);
  return {
    record: (frame, at) => inner.record(frame, at),
    async finish() {
      const r = await inner.finish();
      const rotated = await lvm.rotateTargetSnapshots(device, spec);
      return { ...r, targetSnapshot: { name: taken.name, reused: taken.reused, ...rotated } };
    },
  };
}

function grow(dev: Device, size: number): void {
  if (dev.kind !== 'file') throw new BlkError(ExitCode.SIZE_MISMATCH, `target ${dev.path} is a block device and cannot grow`);
  try {
    fs.ftruncateSync(dev.fd, size);
  } catch (err) {
    throw new BlkError(ExitCode.IO, `cannot grow ${dev.path} to ${size} bytes: ${describe(err)}`, { cause: err });
  }
  dev.size = size;
}
