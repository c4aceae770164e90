// `blkdelta server`: the far end of a sync, speaking the protocol on stdin/stdout (spawned by
// LocalTransport, or run by sshd for an SSH transport). One session per process:
//   HELLO validated (validate.ts) → policy check of the path as given (allow, read-only) and of
//   the snapshot requests (a target snapshot by [server.target_snapshot] only, a pull's source
//   snapshot by [server.source_snapshot]) or of a history request (history.ts)
//   → max_concurrent slot (locks/slots.ts; WAIT frames to clients with the wait cap; the client's EOF
//     or SIGTERM ends the wait)
//   → open the device, the allow list matched on what it resolves to (io/device.ts), or make the
//     pull's source snapshot and open that (snapshots.ts) → WELCOME (kind, size)
//   START validated against the device and checkGrowth → grow a file target → READY
//   (a history request: one HISTORY frame instead, or a read session on a kept copy)
//   → run the role → wait for stdin EOF (a source snapshot: remove it after RESULT, then end the
//     output; the client waits for that)
//   (HELLO.incremental with a source snapshot: server/incremental.ts runs the whole session: the
//     job's base kept here, several passes, the ROTATE frames)
// The device path only ever travels inside the protocol, never through a shell. A client may ask
// for a target snapshot (HELLO.policySnapshot, naming the job), never set its size or retention.
// A session that fails after growing its target truncates it back to its size before the session.
// Errors go back as an ERROR frame (exit code + message) and to stderr; the process exits when
// its stdin closes, so no server outlives its client.
import type { Readable, Writable } from 'node:stream';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { loadHasher } from '../hash.js';
import { log } from '../log.js';
import { Conn, CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Done, type Hello, type HistoryCopyInfo, type Start, type Wait, type Welcome } from '../proto/messages.js';
import { Msg, type Frame } from '../proto/wire.js';
import { grow, openSource, precheck, openTarget, shrinkTo, type Device, type OpenOptions } from '../io/device.js';
import { makeFingerprint } from '../engine/fingerprint.js';
import { checkStart, geometryOf, runSourceSide } from '../engine/session.js';
import { DeviceWriter, PeerSink } from '../engine/sinks.js';
import { runTarget, type TargetSink } from '../engine/target.js';
import { checkJobName, jobNameOfPath } from '../lvm/argv.js';
import { DEFAULT_STATE_DIR, DEFAULT_WAIT_TIMEOUT } from './config.js';
import { checkAllowed, checkRequest, OPEN_POLICY, type Retention, type ServerConfig, type ServerPolicy } from './policy.js';
import type { HistoryPlan } from './history.js';
import type { Slot } from '../locks/slots.js';
import type { OnSnapshot, SnapshotRequest } from './snapshots.js';
import type { Lock } from '../locks/lock.js';
import { checkGrowth, parseHello } from './validate.js';

// History (history.ts) and a pull's source snapshot (snapshots.ts) load on first use: a plain
// session does neither, and their modules (LVM, the history engine) were most of the server's
// start-up CPU.
let snapshotsLoaded: typeof import('./snapshots.js') | undefined;
async function snapshots(): Promise<typeof import('./snapshots.js')> {
  return (snapshotsLoaded ??= await import('./snapshots.js'));
}

export interface ServerOptions {
  /** The server's policy (`--config` and flags); absent: any path, no limit, no target snapshots. */
  config?: ServerConfig;
  /** Aborted by SIGINT/SIGTERM: ends a wait for a slot; a session on a source snapshot stops, and the snapshot is removed. */
  signal?: AbortSignal;
}

/** What the server's policy makes of a target snapshot request: the job, the COW size, the retention. */
interface SnapshotPlan { job: string; size: string; retention: Retention; poolMaxFill?: number }

export async function serve(input: Readable, output: Writable, opts: ServerOptions = {}): Promise<number> {
  const conn = new Conn({ input, output, stderrTail: () => '', close: async () => null }, 'client');
  const cfg: ServerConfig = opts.config ?? OPEN_POLICY;
  let slot: Slot | undefined;
  let jobLock: Lock | undefined;
  try {
    const first = await conn.reader.next();
    if (!first) return ExitCode.OK;
    const hello = parseHello(first);
    checkRequest(cfg, hello.path, hello.write);
    const history = hello.history ? (await import('./history.js')).historyPlan(hello, cfg) : undefined;
    const plan = snapshotPlan(hello, cfg);
    const pull = await pullRequest(hello, cfg);
    const incremental = hello.incremental !== undefined ? await import('./incremental.js') : undefined;
    const inc = incremental?.incrementalAsk(hello); // after pullRequest: its refusal (no policy) comes first
    if (inc && pull) incremental!.checkIncrementalPolicy(pull);
    let pending: Promise<Frame | null> | undefined;
    if (cfg.maxConcurrent) ({ slot, pending } = await takeSlot(cfg, conn, hello, opts.signal));
    jobLock = await lockServerJob(cfg, lockedJob(history, plan, pull), hello);
    if (history) {
      await historySession(conn, hello, history, opts.signal, pending);
    } else if (pull && inc) {
      await incremental!.incrementalPull(conn, pull, inc, cfg, opts.signal, input, pending);
    } else if (!pull) {
      await session(conn, hello, open(hello, cfg), { plan, pending });
    } else {
      await (await snapshots()).withServerSnapshot(pull, opts.signal, input, (device, snap) => session(conn, hello, openSource(device), { pending, snap }));
    }
    return ExitCode.OK;
  } catch (err) {
    const code = exitCodeOf(err);
    const snap = snapshotsLoaded?.snapshotOutcome(err); // only a pull's snapshot (snapshots.ts) has an outcome
    const left = snap && !snap.removed ? `; snapshot ${snap.name} was NOT removed: ${snap.removeError ?? 'see the server log'}` : '';
    const message = (code === ExitCode.INTERNAL ? `internal error: ${describe(err)}` : describe(err)) + left;
    log.error(message);
    await conn.sendError(code, message, snap).catch(() => { /* the client is gone */ });
    return snap && !snap.removed ? ExitCode.SNAPSHOT : code; // the client reads a left snapshot from this
  } finally {
    if (slot) log.info(`slot ${slot.index} released`); // before the release: a log shows sessions in order
    jobLock?.release();
    slot?.release();
    output.end();
    input.destroy(); // stop reading: a client still sending gets EPIPE, and this process can exit
  }
}

/** A history request: one HISTORY frame, or (read) a session whose source is the kept copy. */
async function historySession(conn: Conn, hello: Hello, plan: HistoryPlan, signal: AbortSignal | undefined, pending?: Promise<Frame | null>): Promise<void> {
  const { answerHistory, withHistoryCopy } = await import('./history.js');
  if (plan.op !== 'read') return answerHistory(conn, plan, signal, pending);
  return withHistoryCopy(plan, (device, copy) => session(conn, hello, openSource(device), { pending, copy }));
}

interface SessionOptions {
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
async function session(conn: Conn, hello: Hello, dev: Device, o: SessionOptions): Promise<void> {
  let sizeBefore: number | undefined; // set while a grown target must be truncated back on failure
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
    dev.close();
  }
}

/** A pull's source snapshot request (HELLO.sourceSnapshot), its origin checked against the allow list; undefined when none. */
async function pullRequest(hello: Hello, cfg: ServerConfig): Promise<SnapshotRequest | undefined> {
  if (hello.sourceSnapshot === undefined) return undefined;
  precheck(hello.path, (names) => checkAllowed(cfg, names, hello.path)); // the origin is what the allow list must name
  return (await snapshots()).snapshotRequest(hello, cfg.sourceSnapshot);
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
    job = req.job !== undefined ? checkJobName(req.job) : jobNameOfPath(hello.path);
  } catch (err) {
    throw new BlkError(ExitCode.REMOTE, `malformed HELLO: policySnapshot.job: ${(err as Error).message}`);
  }
  return { job, size: policy.size, retention: policy.retention, poolMaxFill: policy.poolMaxFill };
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
  const { acquireSlot } = await import('../locks/slots.js'); // with max_concurrent only (it loads child_process for flock)
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

/** The job whose LVs this session makes, rotates, removes or reads (listing and a dry-run prune: none). */
function lockedJob(history: HistoryPlan | undefined, plan: SnapshotPlan | undefined, pull: SnapshotRequest | undefined): string | undefined {
  if (history) return history.op === 'list' || (history.op === 'prune' && history.dryRun) ? undefined : history.job;
  return plan?.job ?? pull?.job;
}

/**
 * The job's lock on this server (<state_dir>/locks/server-job-JOB.lock) for what makes, rotates,
 * removes or reads its LVs: a push that snapshots the target, a pull from a source snapshot (plain
 * or incremental: its stale snapshots and bases are removed by job), history verify, restore and
 * prune. A second one is refused at once (exit 16) instead of removing the snapshot another
 * session reads, pruning a copy being verified, or rotating copies under a restore.
 */
async function lockServerJob(cfg: ServerConfig, job: string | undefined, hello: Hello): Promise<Lock | undefined> {
  if (job === undefined) return undefined;
  const { lockJob } = await import('../locks/lock.js'); // only for what touches a job's LVs (it loads child_process for flock)
  const dir = cfg.stateDir ?? DEFAULT_STATE_DIR;
  try {
    return lockJob(dir, `server-job-${job}`, new Date());
  } catch (err) {
    if (exitCodeOf(err) === ExitCode.LOCKED) {
      const what = hello.history ? `history ${hello.history.op}` : hello.sourceSnapshot ? 'this pull from a source snapshot' : 'this push with a target snapshot';
      throw new BlkError(ExitCode.LOCKED, `refused by the server: job ${job} is busy here, ${what} must wait: ${(err as Error).message.replace(/^job \S+ is already running: /, '')}; ` +
        'pushes with a target snapshot, pulls from a source snapshot and history verify, restore and prune of one job run one at a time on the server');
    }
    throw new BlkError(ExitCode.IO, `the server cannot take job ${job}'s lock in ${dir}/locks: ${describe(err)} (set state_dir in the server's config)`, { cause: err });
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
function open(hello: Hello, policy: ServerPolicy): Device {
  const o: OpenOptions = { allow: (names) => checkAllowed(policy, names, hello.path) };
  return hello.role === 'source' ? openSource(hello.path, o) : openTarget(hello.path, { ...o, write: hello.write });
}
