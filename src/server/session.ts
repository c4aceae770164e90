// `blkdelta server`: the far end of a sync, speaking the protocol on stdin/stdout (spawned by
// LocalTransport, or run by sshd for an SSH transport). One session per process:
//   HELLO (role, device path, write?) → policy check (allow, read-only, snapshot request)
//   → max_concurrent slot (slots.ts; WAIT frames to clients with the wait cap; the client's EOF or
//     SIGTERM ends the wait) → open the device → WELCOME (kind, size)
//   START (geometry) → checks, grow a file target → READY → run the role → wait for stdin EOF
// Target snapshots follow the server's [server.target_snapshot] only: a client may ask for one
// (HELLO.policySnapshot, naming the job), never set its size or retention.
// The device path only ever travels inside the protocol, never through a shell.
// Errors go back as an ERROR frame (exit code + message) and to stderr; the process exits when
// its stdin closes, so no server outlives its client.
import fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { loadHasher } from '../hash.js';
import { log } from '../log.js';
import { Conn, checkFields, checkMagic, CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Hello, type Start, type Wait, type Welcome } from '../proto/messages.js';
import { Msg, type Frame } from '../proto/wire.js';
import { openSource, openTarget, type Device } from '../engine/device.js';
import { checkStart, geometryOf, runSourceSide } from '../engine/session.js';
import { DeviceWriter, PeerSink } from '../engine/sinks.js';
import { runTarget, type TargetSink } from '../engine/target.js';
import { checkJobName } from '../lvm/argv.js';
import { jobNameOf } from '../lvm/sync-options.js';
import { DEFAULT_STATE_DIR, DEFAULT_WAIT_TIMEOUT } from './config.js';
import { checkDevice, OPEN_POLICY, type ServerConfig } from './policy.js';
import { acquireSlot, type Slot } from './slots.js';

export interface ServerOptions {
  /** The server's policy (`--config` and flags); absent: any path, no limit, no snapshots. */
  config?: ServerConfig;
  /** Aborted by SIGINT/SIGTERM: ends a wait for a slot. */
  signal?: AbortSignal;
}

/** What the server's policy makes of a snapshot request: the job, the COW size, how many to keep. */
interface SnapshotPlan { job: string; size: string; keep: number }

export async function serve(input: Readable, output: Writable, opts: ServerOptions = {}): Promise<number> {
  const conn = new Conn({ input, output, stderrTail: () => '', close: async () => null }, 'client');
  let dev: Device | undefined;
  let slot: Slot | undefined;
  try {
    const first = await conn.reader.next();
    if (!first) return ExitCode.OK;
    if (first.type !== Msg.HELLO) throw new BlkError(ExitCode.REMOTE, 'protocol error: the client did not start with HELLO');
    const hello = JSON.parse(first.payload.toString('utf8')) as Hello;
    checkMagic('client', hello);
    checkFields('HELLO', hello, { role: 'string', path: 'string', write: 'boolean' });
    if (hello.role !== 'source' && hello.role !== 'target') throw new BlkError(ExitCode.REMOTE, `protocol error: unknown role ${hello.role}`);
    const cfg: ServerConfig = opts.config ?? OPEN_POLICY;
    checkDevice(cfg, hello.path, hello.write);
    const plan = snapshotPlan(hello, cfg);
    let pending: Promise<Frame | null> | undefined;
    if (cfg.maxConcurrent) ({ slot, pending } = await takeSlot(cfg, conn, hello, opts.signal));
    dev = hello.role === 'source' ? openSource(hello.path) : openTarget(hello.path, { write: hello.write });
    await conn.writer.sendJson(Msg.WELCOME, { magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], kind: dev.kind, size: dev.size } satisfies Welcome);

    const start = await conn.expectJson<Start>(Msg.START, pending);
    checkStart(start, dev, hello.role);
    const targetSize = dev.size;
    if (hello.role === 'target' && hello.write && start.resultSize > dev.size) grow(dev, start.resultSize);
    await conn.writer.send(Msg.READY);

    if (hello.role === 'source') {
      await runSourceSide(dev, conn, start, start.recordsToPeer ? new PeerSink(conn) : null, { maxDiffs: 10 });
    } else {
      const h = await loadHasher();
      const writer = hello.write ? new DeviceWriter(dev, geometryOf(start, targetSize), h, { verify: start.verify }) : null;
      await runTarget(dev, conn, start, writer && plan ? await withTargetSnapshot(writer, dev.path, plan) : writer);
    }
    const extra = await conn.reader.next();
    if (extra) throw new BlkError(ExitCode.REMOTE, 'protocol error: data after the end of the session');
    return ExitCode.OK;
  } catch (err) {
    const code = exitCodeOf(err);
    const message = code === ExitCode.INTERNAL ? `internal error: ${describe(err)}` : describe(err);
    log.error(message);
    await conn.sendError(code, message).catch(() => { /* the client is gone */ });
    return code;
  } finally {
    dev?.close();
    if (slot) log.info(`slot ${slot.index} released`); // before the release: a log shows sessions in order
    slot?.release();
    output.end();
    input.destroy(); // stop reading: a client still sending gets EPIPE, and this process can exit
  }
}

/**
 * The snapshot this session takes, by the server's policy; undefined when the client asks none.
 * A client setting keep/size itself (HELLO.targetSnapshot of protocol 1 before policy-snapshot)
 * and a request to a server without [server.target_snapshot] are refused (PERMISSION).
 */
function snapshotPlan(hello: Hello, cfg: ServerConfig): SnapshotPlan | undefined {
  if ((hello as { targetSnapshot?: unknown }).targetSnapshot !== undefined) {
    throw new BlkError(ExitCode.PERMISSION, 'refused by the server: this client sets the target snapshot\'s retention and size itself (HELLO.targetSnapshot); ' +
      'this server keeps target snapshots by its own [server.target_snapshot] policy: upgrade blkdelta on the client (it then only asks for a snapshot)');
  }
  const req = hello.policySnapshot;
  if (req === undefined) return undefined;
  if (typeof req !== 'object' || req === null || Array.isArray(req) || (req.job !== undefined && typeof req.job !== 'string')) {
    throw new BlkError(ExitCode.REMOTE, 'malformed HELLO: field policySnapshot must be an object {job?: string}');
  }
  if (hello.role !== 'target' || !hello.write) throw new BlkError(ExitCode.REMOTE, 'malformed HELLO: policySnapshot is only for a target that is written');
  const policy = cfg.targetSnapshot;
  if (!policy) {
    throw new BlkError(ExitCode.PERMISSION, 'refused by the server: the client asks for a target snapshot, but this server has no [server.target_snapshot] policy (blkdelta server --config FILE)');
  }
  let job: string;
  try {
    job = req.job !== undefined ? checkJobName(req.job) : jobNameOf({}, hello.path);
  } catch (err) {
    throw new BlkError(ExitCode.REMOTE, `malformed HELLO: policySnapshot.job: ${(err as Error).message}`);
  }
  return { job, size: policy.size, keep: policy.retention.keepLast ?? 1 };
}

/**
 * max_concurrent: a slot, waiting up to wait_timeout (BUSY naming the limit). While it waits the
 * client's next frame (its START, after WELCOME) is already being read: its EOF ends the wait.
 */
async function takeSlot(cfg: ServerConfig, conn: Conn, hello: Hello, signal?: AbortSignal): Promise<{ slot: Slot; pending: Promise<Frame | null> }> {
  const pending = conn.reader.next();
  const gone = new AbortController();
  const onSignal = () => gone.abort(signal!.reason);
  signal?.addEventListener('abort', onSignal, { once: true });
  pending.then((f) => f || gone.abort(new BlkError(ExitCode.REMOTE, 'the client went away while waiting for a slot')), (err) => gone.abort(err));
  const max = cfg.maxConcurrent!;
  const waitTimeout = cfg.waitTimeout ?? DEFAULT_WAIT_TIMEOUT;
  try {
    const slot = await acquireSlot({
      stateDir: cfg.stateDir ?? DEFAULT_STATE_DIR, max, waitTimeout, prefix: 'server-slot', job: hello.path,
      limitName: `the server's max_concurrent = ${max}`, signal: signal?.aborted ? signal : gone.signal,
      onWait: (holders) => {
        log.info(`waiting for a slot (max_concurrent ${max}, ${holders}) for ${hello.path}`);
        if (hello.caps?.includes('wait')) void conn.writer.sendJson(Msg.WAIT, { maxConcurrent: max, waitTimeout, holders } satisfies Wait).catch(() => undefined);
      },
    });
    log.info(`slot ${slot.index} of ${max} taken for ${hello.path}`);
    return { slot, pending };
  } finally {
    signal?.removeEventListener('abort', onSignal);
  }
}

/**
 * A target snapshot for this (remote) target, as the server's policy says: snapshot the LV now,
 * before the first write; after a successful finish, rotate the job's snapshots. A failed run
 * prunes nothing.
 */
async function withTargetSnapshot(inner: TargetSink, device: string, spec: SnapshotPlan): Promise<TargetSink> {
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
