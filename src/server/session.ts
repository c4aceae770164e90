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
// What runs on the device (device-session.ts, with the engine) and history, pulls and
// incremental sessions load after the HELLO that asks for them: before its first frame a server
// has loaded only the protocol, the validation and the policy.
import type { Readable, Writable } from 'node:stream';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { log } from '../log.js';
import { Conn, type Hello, type Wait } from '../proto/messages.js';
import { Msg, type Frame } from '../proto/wire.js';
import { OnreadSource } from '../proto/byte-source.js';
import { checkJobName, jobNameOfPath } from '../lvm/argv.js';
import { DEFAULT_STATE_DIR } from '../paths.js';
import { checkAllowed, checkRequest, DEFAULT_WAIT_TIMEOUT, OPEN_POLICY, type ServerConfig } from './policy.js';
import type { HistoryPlan } from './history.js';
import type { Slot } from '../locks/slots.js';
import type { SnapshotRequest } from './snapshots.js';
import type { Lock } from '../locks/lock.js';
import type { SnapshotPlan } from './device-session.js';
import { parseHello } from './validate.js';

// History (history.ts) and a pull's source snapshot (snapshots.ts) load on first use: a plain
// session does neither, and their modules (LVM, the history engine) were most of the server's
// start-up CPU.
let snapshotsLoaded: typeof import('./snapshots.js') | undefined;
async function snapshots(): Promise<typeof import('./snapshots.js')> {
  return (snapshotsLoaded ??= await import('./snapshots.js'));
}

// The session on a device (device-session.ts: the engine, the device layer, xxhash) loads once
// a HELLO asks for one: a server refused by its policy, or whose client leaves before its first
// frame, never loads it (about half of the modules a server loaded at start-up). A failed load
// (an incomplete install) is a session error like any other: an ERROR frame and exit 1.
let deviceSessionLoad: Promise<typeof import('./device-session.js')> | undefined;
function deviceSession(): Promise<typeof import('./device-session.js')> {
  deviceSessionLoad ??= import('./device-session.js').catch((err: unknown) => {
    throw new BlkError(ExitCode.INTERNAL, `the server cannot load its session module: ${describe(err)} (an incomplete install? npm run build)`, { cause: err });
  });
  return deviceSessionLoad;
}

export interface ServerOptions {
  /** The server's policy (`--config` and flags); absent: any path, no limit, no target snapshots. */
  config?: ServerConfig;
  /** Aborted by SIGINT/SIGTERM: ends a wait for a slot; a session on a source snapshot stops, and the snapshot is removed. */
  signal?: AbortSignal;
}

/**
 * Serves one session on input/output. input: a Readable, or the stdin socket read into one
 * reused buffer (byte-source.ts: openStdin), whose socket is then the stream ended and destroyed.
 */
export async function serve(from: Readable | OnreadSource, output: Writable, opts: ServerOptions = {}): Promise<number> {
  const stdin = from instanceof OnreadSource ? from : undefined;
  const input = stdin?.socket ?? (from as Readable);
  const conn = new Conn({ input, output, stderrTail: () => '', close: async () => null }, 'client', stdin);
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
      const { session, openDevice } = await deviceSession();
      await session(conn, hello, openDevice(hello, cfg), { plan, pending });
    } else {
      const { session, openSource } = await deviceSession();
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
  const { session, openSource } = await deviceSession();
  return withHistoryCopy(plan, (device, copy) => session(conn, hello, openSource(device), { pending, copy }));
}

/** A pull's source snapshot request (HELLO.sourceSnapshot), its origin checked against the allow list; undefined when none. */
async function pullRequest(hello: Hello, cfg: ServerConfig): Promise<SnapshotRequest | undefined> {
  if (hello.sourceSnapshot === undefined) return undefined;
  const { precheck } = await deviceSession();
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
