// `blkdelta server`: the far end of a sync, speaking the protocol on stdin/stdout (spawned by
// LocalTransport, or run by sshd for an SSH transport). One session per process:
//   HELLO (role, device path, write?) validated (validate.ts) → policy check of the path as
//   given → open the device, the allow list matched on what it resolves to (io/device.ts)
//   → WELCOME (kind, size)
//   START (geometry) validated against the device and checkGrowth → grow a file target → READY
//   → run the role → wait for stdin EOF
//   (HELLO.sourceSnapshot: the device opened is a snapshot made here, see snapshots.ts; after
//   RESULT it is removed, then the output ends: the client waits for that)
// The device path only ever travels inside the protocol, never through a shell. A session that
// fails after growing its target truncates it back to its size before the session.
// Errors go back as an ERROR frame (exit code + message) and to stderr; the process exits when
// its stdin closes, so no server outlives its client.
import type { Readable, Writable } from 'node:stream';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { loadHasher } from '../hash.js';
import { log } from '../log.js';
import { Conn, CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Hello, type SourceSnapshotInfo, type Start, type Welcome } from '../proto/messages.js';
import { Msg } from '../proto/wire.js';
import { grow, openSource, precheck, openTarget, shrinkTo, type Device, type OpenOptions } from '../io/device.js';
import { checkStart, geometryOf, runSourceSide } from '../engine/session.js';
import { DeviceWriter, PeerSink } from '../engine/sinks.js';
import { runTarget, type TargetSink } from '../engine/target.js';
import type { TargetSnapshotSpec } from '../engine/types.js';
import { checkAllowed, checkRequest, OPEN_POLICY, type ServerPolicy } from './policy.js';
import { snapshotOutcome, snapshotRequest, withServerSnapshot, type SourceSnapshotPolicy } from './snapshots.js';
import { checkGrowth, parseHello } from './validate.js';

export interface ServerOptions {
  /** Allow list and read-only (default: OPEN_POLICY, as the local transport runs it). */
  policy?: ServerPolicy;
  /** What a pull may snapshot here ([server.source_snapshot]); absent: refused (exit 12). */
  sourceSnapshot?: SourceSnapshotPolicy;
  /** SIGINT/SIGTERM: a session on a source snapshot stops, and the snapshot is removed. */
  signal?: AbortSignal;
}

export async function serve(input: Readable, output: Writable, opts: ServerOptions = {}): Promise<number> {
  const conn = new Conn({ input, output, stderrTail: () => '', close: async () => null }, 'client');
  const policy = opts.policy ?? OPEN_POLICY;
  try {
    const first = await conn.reader.next();
    if (!first) return ExitCode.OK;
    const hello = parseHello(first);
    if (hello.sourceSnapshot === undefined) {
      await session(conn, hello, open(hello, policy));
    } else {
      checkRequest(policy, hello.path, hello.write); // the origin is what the allow list must name
      precheck(hello.path, (names) => checkAllowed(policy, names, hello.path));
      const req = snapshotRequest(hello, opts.sourceSnapshot);
      await withServerSnapshot(req, opts.signal ?? new AbortController().signal, (device, signal, info) => {
        const stop = () => input.destroy(signal.reason as Error); // a pending read ends with the reason
        signal.addEventListener('abort', stop, { once: true });
        return session(conn, hello, openSource(device), { signal, info }).finally(() => signal.removeEventListener('abort', stop));
      });
    }
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

/**
 * One session on dev (the HELLO's device, or a source snapshot made here) until the client's EOF.
 * A session that fails after growing its target truncates it back to its size before the session.
 */
async function session(conn: Conn, hello: Hello, dev: Device, snap?: { signal: AbortSignal; info: SourceSnapshotInfo }): Promise<void> {
  let sizeBefore: number | undefined; // set while a grown target must be truncated back on failure
  try {
    await conn.writer.sendJson(Msg.WELCOME, {
      magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], kind: dev.kind, size: dev.size,
      ...(snap ? { sourceSnapshot: snap.info } : {}),
    } satisfies Welcome);

    const start = await conn.expectJson<Start>(Msg.START);
    checkStart(start, dev, hello.role);
    const targetSize = dev.size;
    if (hello.role === 'target') checkGrowth(start, dev, hello.write);
    if (hello.role === 'target' && hello.write && start.resultSize > dev.size) {
      sizeBefore = dev.size;
      grow(dev, start.resultSize);
    }
    await conn.writer.send(Msg.READY);

    if (hello.role === 'source') {
      await runSourceSide(dev, conn, start, start.recordsToPeer ? new PeerSink(conn) : null, { maxDiffs: 10, signal: snap?.signal });
    } else {
      const h = await loadHasher();
      const writer = hello.write ? new DeviceWriter(dev, geometryOf(start, targetSize), h, { verify: start.verify }) : null;
      await runTarget(dev, conn, start, writer && hello.targetSnapshot ? await withTargetSnapshot(writer, dev.path, hello.targetSnapshot) : writer);
    }
    sizeBefore = undefined; // RESULT is sent: the sync is complete
    if (snap) return; // the caller removes the snapshot, then ends the output: the client waits for that
    const extra = await conn.reader.next();
    if (extra) throw new BlkError(ExitCode.REMOTE, 'protocol error: data after the end of the session');
  } catch (err) {
    const undo = sizeBefore !== undefined ? shrinkTo(dev, sizeBefore) : undefined;
    if (undo && err instanceof Error) err.message += `; ${undo}`;
    throw err;
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
    dispose: () => inner.dispose?.(),
    async finish() {
      const r = await inner.finish();
      const rotated = await lvm.rotateTargetSnapshots(device, { job: spec.job, retention: { keepLast: spec.keep } });
      return { ...r, targetSnapshot: { name: taken.name, reused: taken.reused, ...rotated } };
    },
  };
}

/** Opens the device of a HELLO under the policy: the path as given, then what it resolves to. */
function open(hello: Hello, policy: ServerPolicy): Device {
  checkRequest(policy, hello.path, hello.write);
  const o: OpenOptions = { allow: (names) => checkAllowed(policy, names, hello.path) };
  return hello.role === 'source' ? openSource(hello.path, o) : openTarget(hello.path, { ...o, write: hello.write });
}
