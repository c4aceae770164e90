// `blkdelta history` for a job whose target is remote: the copies live on the target's host and
// its `blkdelta server` answers (server/history.ts, docs/protocol.md "History"). The client asks;
// the server's policy decides (allow list, read_only, its own retention for prune).
//   askServer: HELLO {history: {op, job, ...}, role target, write false} -> WAIT* -> HISTORY
//     (checked: types, then every string made printable) | ERROR (the server's refusal) |
//     WELCOME (an older server: "does not support history; upgrade it", REMOTE)
//   restoreFromServer: a pull (engine runSync, remote source) whose source is the copy (HELLO
//     history.read), to a local DEST opened and refused as any sync target, --verify; then DEST
//     re-read against the copy's fingerprint.
// Interrupted: the channel is closed (the server aborts a verify or restore on EOF); a local DEST
// is left part-written, as by any sync. Memory: one HISTORY frame (at most MAX_FRAME).
import { BlkError, ExitCode, printable } from '../errors.js';
import type { JobConfig } from '../jobs/config.js';
import { remoteTransport } from '../jobs/sync-job.js';
import { log } from '../log.js';
import { CAPS, Conn, PROTOCOL_MAGIC, PROTOCOL_VERSION, checkFields, noHistory, type Hello, type HistoryReply, type HistoryRequest, type Wait } from '../proto/messages.js';
import { Msg, msgName, parseJson, type Frame } from '../proto/wire.js';
import { runSync } from '../engine/sync.js';
import { formatRemote, type RemoteEndpoint } from '../transport/address.js';
import { RshTransport, splitWords } from '../transport/rsh.js';
import type { Transport } from '../transport/transport.js';
import { matchesFingerprint } from './restore.js';

/** The server of a job's remote target and how to reach it. */
export interface HistoryServer { transport: Transport; host: string; path: string }

/** Command-line overrides of the job's [ssh] settings. */
export interface ServerArgs { rsh?: string; remoteCmd?: string }

/** The job's target server: through --rsh when given, else the job's own SSH settings (as `run`). */
export function historyServer(job: JobConfig, a: ServerArgs): HistoryServer | undefined {
  const e = job.target;
  if (e.kind !== 'remote') {
    if (a.rsh !== undefined || a.remoteCmd !== undefined) throw new BlkError(ExitCode.USAGE, `--rsh and --remote-cmd are for a job whose target is remote; ${job.name}'s target ${job.targetText} is local`);
    return undefined;
  }
  const remoteCmd = a.remoteCmd ?? job.ssh.remoteCmd;
  const transport = a.rsh !== undefined
    ? (splitWords(a.rsh), new RshTransport({ rsh: a.rsh, host: e.host, user: e.user, port: job.ssh.port ?? e.port, remoteCmd }))
    : remoteTransport({ ...job, ssh: { ...job.ssh, remoteCmd } }, e);
  return { transport, host: formatRemote(e as RemoteEndpoint), path: e.path };
}

/** Sends one history request and returns the server's checked HISTORY reply; see the header. */
export async function askServer(s: HistoryServer, req: HistoryRequest, signal?: AbortSignal): Promise<HistoryReply> {
  const channel = await s.transport.open(signal);
  const conn = new Conn(channel, s.transport.label);
  const onAbort = () => void channel.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const hello: Hello = { magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], role: 'target', path: s.path, write: false, history: req };
    await conn.writer.sendJson(Msg.HELLO, hello).catch(async () => {
      throw await conn.closedAfterExit('before the handshake');
    });
    const f = await replyFrame(conn);
    signal?.throwIfAborted();
    if (f.type === Msg.WELCOME) throw noHistory(s.host);
    return checkReply(parseJson<unknown>(f), req.op, conn.peerLabel);
  } catch (err) {
    throw signal?.aborted ? signal.reason : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await channel.close();
  }
}

/** The first frame after any WAITs: HISTORY, or WELCOME from an older server; ERROR is thrown. */
async function replyFrame(conn: Conn): Promise<Frame> {
  for (;;) {
    const f = await conn.reader.next();
    if (!f) throw await conn.closedAfterExit('before answering the history request');
    if (f.type === Msg.ERROR) throw conn.peerError(f);
    if (f.type === Msg.HISTORY || f.type === Msg.WELCOME) return f;
    if (f.type !== Msg.WAIT) throw new BlkError(ExitCode.REMOTE, `protocol error: expected HISTORY from ${conn.peerLabel}, got ${msgName(f.type)}`);
    const w = parseJson<Wait>(f);
    log.info(`waiting for a slot on ${conn.peerLabel} (the server's max_concurrent = ${Number(w.maxConcurrent)}; ${printable(String(w.holders))})`);
  }
}

const FIELDS: Record<string, Record<string, 'string' | 'number' | 'boolean' | 'object'>> = {
  entries: { id: 'string', lv: 'string', kind: 'string', state: 'string' },
  checks: { id: 'string', lv: 'string', result: 'string', detail: 'string' },
  verdicts: { id: 'string', keep: 'boolean', reasons: 'object' },
};

/** The reply's fields for op checked (REMOTE naming the field), its strings made printable. */
export function checkReply(v: unknown, op: HistoryRequest['op'], peer: string): HistoryReply {
  checkFields('HISTORY', v, { version: 'number', op: 'string' });
  const r = v as HistoryReply;
  if (r.version !== 1 || r.op !== op) throw new BlkError(ExitCode.REMOTE, `malformed HISTORY from ${peer}: expected version 1 and op ${op}`);
  const key = ({ list: 'entries', verify: 'checks', prune: 'prune', restore: 'restore' } as Record<string, keyof HistoryReply>)[op]!;
  const body = r[key] as unknown;
  if (key === 'entries' || key === 'checks') listOf(key, body);
  if (key === 'prune') {
    checkFields('HISTORY.prune', body, { kept: 'object', removed: 'object', verdicts: 'object', retention: 'object' });
    listOf('verdicts', (body as { verdicts: unknown }).verdicts);
  }
  if (key === 'restore') checkFields('HISTORY.restore', body, { copy: 'string', dest: 'string', bytesWritten: 'number' });
  return cleaned(r) as HistoryReply;
}

function listOf(key: string, v: unknown): void {
  if (!Array.isArray(v)) throw new BlkError(ExitCode.REMOTE, `malformed HISTORY: field ${key} must be a list`);
  for (const x of v) checkFields(`HISTORY.${key}`, x, FIELDS[key]!);
}

/** A JSON value with every string made printable (the other host's text reaches a terminal). */
function cleaned(v: unknown): unknown {
  if (typeof v === 'string') return printable(v);
  if (Array.isArray(v)) return v.map(cleaned);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cleaned(x)]));
  return v;
}

export interface RemoteRestore { copy: string; dest: string; bytesWritten: number; fingerprintMatches: boolean | null }

/** history restore to a local DEST: pulls the copy from the server through the engine; see the header. */
export async function restoreFromServer(s: HistoryServer, job: JobConfig, id: string, dest: string, signal: AbortSignal): Promise<RemoteRestore> {
  const summary = await runSync({
    source: s.path, target: dest, remote: { side: 'source', transport: s.transport }, mode: 'write', blockSize: job.blockSize,
    sizePolicy: 'strict', verify: true, compress: job.compress, signal, historyCopy: { job: job.name, id },
    sourceLabel: `history restore ${s.host}:${id}`,
  });
  const c = summary.historyCopy!;
  const copy = `${s.host}:${c.lv}`;
  return { copy, dest, bytesWritten: summary.bytesWritten, fingerprintMatches: await matchesFingerprint(copy, dest, c.fingerprint, signal) };
}
