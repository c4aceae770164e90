// `blkdelta history` through the server: a HELLO with `history: {op, job, ...}` asks about the
// kept copies of the target LV that HELLO.path names, which the server's [server.target_snapshot]
// made for that job. The server decides, the client only asks:
//   historyPlan (before any slot or lvs): job and id well-formed (REMOTE); the path as any request
//   (checkRequest) and on the allow list by what it resolves to; prune needs the server's
//   [server.target_snapshot] (its retention, never the client's) and a server that is not
//   read_only; restore writes dest on this host: dest checked as any written target (allow list,
//   read_only) -> PERMISSION
//   answerHistory: lvs -> the job's copies of that LV -> list | verify | prune | restore -> one
//   HISTORY frame -> the client's EOF
//   withHistoryCopy (read): the copy made readable (history/readable.ts) for a session that serves
//   it as a sync source; deactivated after, on every path.
// The client's EOF while a verify or restore runs aborts it (list and prune answer a half-closed client). Interrupted: as the local operations
// (a prune removes what it removed so far; a restore leaves dest part-written; copies unchanged).
// Memory: the VG's lvs rows, and the chunk buffer of a verify or restore.
import { BlkError, ExitCode } from '../errors.js';
import { precheck } from '../io/device.js';
import { checkJobName, lvmNameProblem } from '../lvm/argv.js';
import { pruneCopies } from '../lvm/copies.js';
import { entriesOf, findCopy, historyOf, type JobHistory } from '../history/copies.js';
import { withReadableCopy } from '../history/readable.js';
import { restoreCopy } from '../history/restore.js';
import { verifyCopies } from '../history/verify.js';
import type { Conn, Hello, HistoryCopyInfo, HistoryReply, HistoryRequest } from '../proto/messages.js';
import { Msg, type Frame } from '../proto/wire.js';
import { checkAllowed, checkRequest, type ServerConfig } from './policy.js';

/** A history request the policy allows: the request, the target LV's path, and for prune the server's policy. */
export interface HistoryPlan extends HistoryRequest { path: string; policy?: ServerConfig['targetSnapshot'] }

/** Block size of a restore on this host when the copy carries no fingerprint. */
const RESTORE_BLOCK_SIZE = 4096;

const malformed = (why: string) => new BlkError(ExitCode.REMOTE, `malformed HELLO: ${why}`);
const refuse = (why: string) => new BlkError(ExitCode.PERMISSION, `refused by the server: ${why}`);

/** Checks HELLO.history (already typed by validate.ts) against the server's policy; see the header. */
export function historyPlan(hello: Hello, cfg: ServerConfig): HistoryPlan {
  const req = hello.history!;
  try {
    checkJobName(req.job);
  } catch (err) {
    throw malformed(`history.job: ${(err as Error).message}`);
  }
  const bad = req.id !== undefined ? lvmNameProblem(req.id, 'LV') : null;
  if (bad) throw malformed(`history.id: ${bad}`);
  checkRequest(cfg, hello.path, false);
  precheck(hello.path, (names) => checkAllowed(cfg, names, hello.path));
  if (req.op === 'prune') {
    if (!cfg.targetSnapshot) throw refuse('history prune applies the server\'s [server.target_snapshot] retention, and this server has none');
    if (cfg.readOnly && req.dryRun !== true) throw refuse(`history prune removes copies of ${hello.path}: the server runs with --read-only`);
  }
  if (req.op === 'restore') {
    checkRequest(cfg, req.dest!, true);
    precheck(req.dest!, (names) => checkAllowed(cfg, names, req.dest!));
  }
  return { op: req.op, job: req.job, id: req.id, dryRun: req.dryRun === true, dest: req.dest, path: hello.path, policy: cfg.targetSnapshot };
}

/** Runs list, verify, prune or restore and sends the one HISTORY frame; then waits for the client's EOF. */
export async function answerHistory(conn: Conn, plan: HistoryPlan, signal: AbortSignal | undefined, pending?: Promise<Frame | null>): Promise<void> {
  const next = pending ?? conn.reader.next();
  const gone = new AbortController();
  next.then((f) => gone.abort(f ? malformed('the client sent a frame after a history request') : new BlkError(ExitCode.REMOTE, 'the client went away')),
    (err) => gone.abort(err));
  const sig = signal ? AbortSignal.any([signal, gone.signal]) : gone.signal;
  const reply = await operate(plan, await historyOf(plan.path, plan.job), sig);
  await conn.writer.sendJson(Msg.HISTORY, reply);
  if (await next) throw malformed('the client sent a frame after a history request');
}

async function operate(plan: HistoryPlan, h: JobHistory, signal: AbortSignal): Promise<HistoryReply> {
  const reply = { version: 1 as const, op: plan.op };
  switch (plan.op) {
    case 'list':
      return { ...reply, entries: entriesOf(h) };
    case 'verify':
      return { ...reply, checks: await verifyCopies(plan.id === undefined ? h.copies : [findCopy(h, plan.id, plan.job)], signal) };
    case 'prune': {
      const { retention, poolMaxFill } = plan.policy!;
      const r = await pruneCopies(h.vg, h.lv.name, { job: plan.job, retention, poolMaxFill, dryRun: plan.dryRun });
      return { ...reply, prune: { ...r, retention, ...(poolMaxFill !== undefined ? { poolMaxFill } : {}) } };
    }
    case 'restore': {
      const r = await restoreCopy(findCopy(h, plan.id!, plan.job), plan.dest!, { blockSize: RESTORE_BLOCK_SIZE, signal });
      return { ...reply, restore: { copy: r.copy, dest: r.dest, bytesWritten: r.summary.bytesWritten, fingerprintMatches: r.fingerprintMatches } };
    }
    default:
      throw new BlkError(ExitCode.INTERNAL, `history.${plan.op} is not answered by a HISTORY frame`);
  }
}

/** history.read: runs session on the copy's device, readable and unchanged, with WELCOME's description of it. */
export async function withHistoryCopy<T>(plan: HistoryPlan, session: (device: string, info: HistoryCopyInfo) => Promise<T>): Promise<T> {
  const h = await historyOf(plan.path, plan.job);
  const c = findCopy(h, plan.id!, plan.job);
  return withReadableCopy(c, (device) => session(device, { id: c.id, lv: `${c.row.vg}/${c.id}`, fingerprint: c.fingerprint }));
}
