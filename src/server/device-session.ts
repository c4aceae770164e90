// The server's session on a device, after HELLO and the policy checks (session.ts): WELCOME
// (kind, size), START validated against the device and checkGrowth, a file target grown,
// READY, the role run (engine/), then the client's EOF. A target snapshot by the server's policy
// is taken before the first write and rotated after a successful finish.
// session.ts loads this module (and with it the engine, the device layer and xxhash) only once
// a HELLO asks for a session: a server that is refused, or whose client goes away before its
// first frame, never loads them.
// Memory: the engine's (its chunk buffers); this module holds nothing of its own.
// Interrupted: a session that fails after growing its target truncates it back to its size
// before the session; the device is closed in every case.
import { BlkError, ExitCode } from '../errors.js';
import { loadHasher } from '../hash.js';
import { CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Conn, type Done, type Hello, type HistoryCopyInfo, type Start, type Welcome } from '../proto/messages.js';
import { Msg, type Frame } from '../proto/wire.js';
import { grow, openSource, openTarget, shrinkTo, type Device, type OpenOptions } from '../io/device.js';
import { askResident } from '../io/direct.js';
import { makeFingerprint } from '../engine/fingerprint.js';
import { checkStart, geometryOf, runSourceSide } from '../engine/session.js';
import { DeviceWriter, PeerSink } from '../engine/sinks.js';
import { runTarget, type TargetSink } from '../engine/target.js';
import { checkAllowed, type Retention, type ServerPolicy } from './policy.js';
import type { OnSnapshot } from './snapshots.js';
import { checkGrowth } from './validate.js';

export { openSource, precheck } from '../io/device.js';

/** What the server's policy makes of a target snapshot request: the job, the COW size, the retention. */
export interface SnapshotPlan { job: string; size: string; retention: Retention; poolMaxFill?: number }

export interface SessionOptions {
  plan?: SnapshotPlan;
  /** A history read: the kept copy this session serves (described in WELCOME). */
  copy?: HistoryCopyInfo;
  /** The client's next frame, already being read while the session waited for a slot. */
  pending?: Promise<Frame | null>;
  snap?: OnSnapshot;
}

/**
 * One session on dev (the HELLO's device, or a source snapshot made here) until the client's EOF.
 * A session that fails after growing its target truncates it back to its size before the session.
 */
export async function session(conn: Conn, hello: Hello, dev: Device, o: SessionOptions): Promise<void> {
  let sizeBefore: number | undefined; // set while a grown target must be truncated back on failure
  const asked = askResident(dev); // fincore runs during the handshake: awaited before the role opens the device
  try {
    await conn.writer.sendJson(Msg.WELCOME, {
      magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], kind: dev.kind, size: dev.size,
      ...(o.snap ? { sourceSnapshot: o.snap.info } : {}), ...(o.copy ? { historyCopy: o.copy } : {}),
      ...(o.plan ? await labelSeedOf(dev.path) : {}),
      ...(hello.role === 'source' && dev.mountedRw?.length ? { mountedRw: dev.mountedRw } : {}),
    } satisfies Welcome);

    const start = await conn.expectJson<Start>(Msg.START, o.pending);
    checkStart(start, dev, hello.role);
    const targetSize = dev.size;
    if (hello.role === 'target') checkGrowth(start, dev, hello.write);
    if (hello.role === 'target' && hello.write && start.resultSize > dev.size) {
      sizeBefore = dev.size;
      grow(dev, start.resultSize);
    }
    await conn.writer.send(Msg.READY);
    await asked;

    if (hello.role === 'source') {
      await runSourceSide(dev, conn, start, start.recordsToPeer ? new PeerSink(conn) : null, { maxDiffs: 10, signal: o.snap?.signal });
    } else {
      const h = await loadHasher();
      const writer = hello.write ? new DeviceWriter(dev, geometryOf(start, targetSize), h, { verify: start.verify }) : null;
      await runTarget(dev, conn, start, writer && o.plan ? await withTargetSnapshot(writer, dev.path, o.plan, start) : writer);
    }
    sizeBefore = undefined; // RESULT is sent: the sync is complete
    if (o.snap) return; // the caller removes the snapshot, then ends the output: the client waits for that
    const extra = await conn.reader.next();
    if (extra) throw new BlkError(ExitCode.REMOTE, 'protocol error: data after the end of the session');
  } catch (err) {
    const undo = sizeBefore !== undefined ? shrinkTo(dev, sizeBefore) : undefined;
    if (undo && err instanceof Error) err.message += `; ${undo}`;
    throw err;
  } finally {
    await asked; // no fincore outlives the session
    dev.close();
  }
}


/**
 * A target snapshot for this (remote) target, as the server's policy says: snapshot the LV now,
 * before the first write; after a successful finish, label the copies with what this run left
 * (its DONE's fingerprints) and prune by the policy's retention. A failed run prunes nothing.
 */
async function withTargetSnapshot(inner: TargetSink, device: string, plan: SnapshotPlan, start: Start): Promise<TargetSink> {
  const lvm = await import('../lvm/target-snapshot.js');
  const taken = await lvm.takeTargetSnapshot(device, { job: plan.job, size: plan.size, poolMaxFill: plan.poolMaxFill });
  return {
    record: (frame, at, placed) => inner.record(frame, at, placed),
    place: inner.place && ((head, length, at) => inner.place!(head, length, at)),
    dispose: () => inner.dispose?.(),
    io: inner.io,
    async finish(done?: Done) {
      const r = await inner.finish(done);
      const fp = (d: string | undefined) => (d ? makeFingerprint(start.seed, start.blockSize, start.compareSize, d) : undefined);
      const content = { dataTime: Date.now(), fingerprint: fp(done?.fingerprint), baseFingerprint: fp(done?.baseFingerprint), copy: taken.reused ? undefined : taken.name };
      const rotated = await lvm.rotateTargetSnapshots(device, { job: plan.job, retention: plan.retention, poolMaxFill: plan.poolMaxFill, content });
      return { ...r, targetSnapshot: { name: taken.name, reused: taken.reused, kept: rotated.kept, removed: rotated.removed } };
    },
  };
}

/** WELCOME.labelSeed for a session that will snapshot its target: the live target's label, if any. */
async function labelSeedOf(device: string): Promise<Pick<Welcome, 'labelSeed'>> {
  const { targetLv } = await import('../lvm/target-snapshot.js');
  const { labelsOf } = await import('../lvm/copy-tags.js');
  const fp = labelsOf((await targetLv(device)).lv.tags).fingerprint;
  return fp ? { labelSeed: { seed: fp.seed, blockSize: fp.blockSize } } : {};
}

/** Opens the device of a HELLO under the policy: the path as given, then what it resolves to. */
export function openDevice(hello: Hello, policy: ServerPolicy): Device {
  const o: OpenOptions = { allow: (names) => checkAllowed(policy, names, hello.path) };
  return hello.role === 'source' ? openSource(hello.path, o) : openTarget(hello.path, { ...o, write: hello.write });
}
