// runSync: the client end of every sync, dry-run, verify and patch output.
//   open the local end (source, or target when the source is remote)
//   start the other end (`blkdelta server`, spawned locally or over SSH) and handshake:
//     HELLO → WELCOME (its size) ; plan sizes by policy ; START → READY
//   run the local role while the server runs the other; collect DONE/RESULT into a summary
// The local case spawns a server too, so it exercises exactly the protocol SSH carries.
// Interrupted or failed: the server is told (its stdin closes) and exits; a patch being written
// is removed; a target being written is left incomplete and the error says so.
// A pull with sourceSnapshot: the server reads a snapshot it made; once it has exited, its exit
// status says whether it removed it (pull-snapshot.ts).
import path from 'node:path';
import { BlkError, ExitCode, exitCodeOf, printable } from '../errors.js';
import { loadHasher, randomSeed } from '../hash.js';
import { log } from '../log.js';
import { Conn, checkWelcome, historyCopyOf, welcomeLabelSeed, welcomeMountedRw, CAPS, PROTOCOL_MAGIC, PROTOCOL_VERSION, type Done, type Hello, type HistoryCopyInfo, type Role, type Start, type Wait, type Welcome } from '../proto/messages.js';
import { Msg, parseJson } from '../proto/wire.js';
import { formatAge } from '../units.js';
import { LocalTransport } from '../transport/local.js';
import { withTimeout } from '../transport/transport.js';
import { grow, openSource, openTarget, shrinkTo, type Device } from '../io/device.js';
import { askResident } from '../io/direct.js';
import { chunkSizeFor, checkBlockSize, geometryOf, planSizes, runSourceSide } from './session.js';
import { DeviceWriter, PatchFromPeerSink, PatchSink, PeerSink } from './sinks.js';
import { runTarget } from './target.js';
import { SampleDiffers } from './source.js';
import { makeFingerprint } from './fingerprint.js';
import { reportFromWelcome, settlePull, snapshotReleased } from './pull-snapshot.js';
import type { SnapshotReport } from '../lvm/snapshot.js';
import type { SyncOptions, SyncSummary } from './types.js';
import { mergeRanges, rangeBlocks, type BlockRange } from '../ranges.js';

export async function runSync(options: SyncOptions): Promise<SyncSummary> {
  // paths on this host are made absolute (the local server may not take relative ones)
  const opts = { ...options };
  if (opts.remote?.side !== 'source') opts.source = path.resolve(opts.source);
  if (opts.remote?.side !== 'target') opts.target = path.resolve(opts.target);
  checkBlockSize(opts.blockSize);
  if (opts.targetSnapshot && opts.remote?.side !== 'target') throw new BlkError(ExitCode.INTERNAL, 'targetSnapshot is for a remote target; wrap a local one in withTargetSnapshot');
  if (opts.sourceSnapshot && opts.remote?.side !== 'source') throw new BlkError(ExitCode.INTERNAL, 'sourceSnapshot is for a remote source; wrap a local one in withSourceSnapshot');
  if (opts.mode === 'patch' && !opts.patchOut) throw new BlkError(ExitCode.USAGE, 'patch mode needs a patch file (--patch-out)');
  if (opts.ranges && opts.mode === 'patch') throw new BlkError(ExitCode.USAGE, 'a patch file covers the whole device: it cannot be made from block ranges (an incremental run)');
  const t0 = Date.now();
  const localRole: Role = opts.remote?.side === 'source' ? 'target' : 'source';
  const write = opts.mode === 'write';
  const local = localRole === 'source' ? openSource(opts.source) : openTarget(opts.target, { write });
  const asked = askResident(local); // fincore runs while the server starts and answers: runPass awaits it
  try {
    if (!opts.remote) refuseSameDevice(local, opts.target);
    const transport = opts.remote?.transport ?? opts.localTransport ?? new LocalTransport();
    const channel = await transport.open(opts.signal);
    const onAbort = () => {
      // Before the first read nothing listens for 'error': the destroy would crash the process.
      channel.input.on('error', () => { /* the abort reason is what runSync throws */ });
      channel.input.destroy(opts.signal!.reason as Error);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const pull: PullState = {};
    let outcome: { ok: true; value: SyncSummary } | { ok: false; error: unknown };
    let exit: number | null = null;
    try {
      outcome = { ok: true, value: await session(opts, local, localRole, new Conn(channel, transport.label), t0, pull) };
    } catch (err) {
      outcome = { ok: false, error: opts.signal?.aborted ? (opts.signal.reason as Error) : err };
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      log.debug(`session's exchange ended after ${Date.now() - t0} ms; closing ${transport.label}`);
      exit = await channel.close();
      log.debug(`session with ${transport.label} ended after ${Date.now() - t0} ms`);
    }
    if (pull.snapshot) return settlePull(pull.snapshot, exit, outcome, transport.label, channel.stderrTail());
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  } finally {
    await asked; // no fincore outlives the run
    local.close();
  }
}

/** The source's read-write mounts (local, or as the server reported them: at most 16, printable). */
function mountedRwOf(at: unknown): { sourceMountedRw?: string[] } {
  const m = welcomeMountedRw(at);
  return m ? { sourceMountedRw: m } : {};
}

/** Two local paths naming the same storage (same file, same device, a loop device over the file). */
function refuseSameDevice(source: Device, targetPath: string): void {
  let target: Device;
  try {
    target = openTarget(targetPath, { write: false });
  } catch {
    return; // the server reports a missing or unusable target with the right code
  }
  target.close();
  if (source.ids.some((id) => target.ids.includes(id))) {
    throw new BlkError(ExitCode.TARGET_REFUSED, `target ${targetPath} refused: it is the same device or file as the source ${source.path}`);
  }
}

/** A pull's source snapshot, once the server's WELCOME described it. */
interface PullState { snapshot?: SnapshotReport }

async function session(opts: SyncOptions, local: Device, localRole: Role, conn: Conn, t0: number, pull: PullState): Promise<SyncSummary> {
  const hello = helloOf(opts, localRole);
  const welcome = await handshake(conn, opts, hello);
  if (opts.sourceSnapshot) pull.snapshot = reportFromWelcome(welcome.sourceSnapshot, conn.peerLabel);
  const historyCopy = opts.historyCopy ? historyCopyOf(welcome, conn.peerLabel) : undefined;
  const summary = await runPass(opts, local, localRole, conn, { hello, welcome, historyCopy }, t0);
  if (opts.sourceSnapshot) await snapshotReleased(conn); // the copy is complete; the server removes its snapshot
  return summary;
}

/** The HELLO of a run (the peer's role is the other one). */
export function helloOf(opts: SyncOptions, localRole: Role): Hello {
  const write = opts.mode === 'write';
  const peerRole: Role = localRole === 'source' ? 'target' : 'source';
  return {
    magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, caps: [...CAPS], role: peerRole,
    path: peerRole === 'source' ? opts.source : opts.target, write: peerRole === 'target' && write,
    ...(peerRole === 'target' && write && opts.targetSnapshot ? { policySnapshot: opts.targetSnapshot } : {}),
    ...(opts.sourceSnapshot ? { sourceSnapshot: opts.sourceSnapshot } : {}),
    ...(opts.historyCopy ? { history: { op: 'read', ...opts.historyCopy } } : {}),
  };
}

/** HELLO → WELCOME (after any WAIT), checked: its magic, fields and the capabilities this run needs. */
export async function handshake(conn: Conn, opts: SyncOptions, hello: Hello): Promise<Welcome> {
  await conn.writer.sendJson(Msg.HELLO, hello).catch(async () => {
    throw await conn.closedAfterExit('before the handshake'); // e.g. its command was not found: say what it printed
  });
  const welcome = await welcomeAfterWaits(conn, opts);
  checkWelcome(conn.peerLabel, welcome);
  if (hello.policySnapshot && !welcome.caps?.includes('policy-snapshot')) {
    throw new BlkError(ExitCode.REMOTE, `${conn.peerLabel}: the server is an older blkdelta without the policy-snapshot capability: it would take no target snapshot; upgrade blkdelta on the server (nothing was written)`);
  }
  return welcome;
}

/** What the handshake settled, for the passes of its session. */
export interface Handshake { hello: Hello; welcome: Welcome; historyCopy?: HistoryCopyInfo }

/** One pass of a session: START → READY, the local role to the end, DONE/RESULT into a summary. */
export async function runPass(opts: SyncOptions, local: Device, localRole: Role, conn: Conn, hs: Handshake, t0: number): Promise<SyncSummary> {
  const { hello, welcome, historyCopy } = hs;
  const h = await loadHasher();
  const write = opts.mode === 'write';
  if (opts.ranges && !welcome.caps?.includes('ranges')) {
    throw new BlkError(ExitCode.REMOTE, `${conn.peerLabel}: the server is an older blkdelta without the ranges capability: it cannot compare only the changed blocks of an incremental run; upgrade blkdelta on the server (nothing was written)`);
  }
  if (opts.ranges && opts.sample && !welcome.caps?.includes('sample')) {
    throw new BlkError(ExitCode.REMOTE, `${conn.peerLabel}: the server is an older blkdelta without the sample capability: it cannot check an incremental run's sample in the same session; upgrade blkdelta on the server (nothing was written)`);
  }
  const [srcSize, tgt] = localRole === 'source' ? [local.size, welcome] : [welcome.size, local];
  const targetSize = tgt.size; // before grow changes a local target's size
  const plan = planSizes(srcSize, targetSize, tgt.kind, opts.sizePolicy);
  const start: Start = {
    blockSize: opts.blockSize, seed: opts.seed ?? welcomeLabelSeed(!!hello.policySnapshot, welcome.labelSeed, opts.blockSize) ?? randomSeed().toString(), ...plan, chunkSize: chunkSizeFor(opts.blockSize),
    recordsToPeer: localRole === 'source' ? write : write || opts.mode === 'patch',
    compress: opts.compress ?? true, verify: !!opts.verify,
    ...(opts.ranges ? { ranges: clipRanges(opts.ranges, plan.compareSize, opts.blockSize) } : {}),
    ...(opts.ranges && opts.sample ? { sample: clipRanges(opts.sample, plan.compareSize, opts.blockSize) } : {}),
  };
  const ranged = start.ranges ? rangeBlocks(start.ranges) + rangeBlocks(start.sample ?? []) : 0;
  await conn.writer.sendJson(Msg.START, start);
  await conn.expect(Msg.READY);
  log.debug(`${conn.peerLabel} ready after ${Date.now() - t0} ms`);

  const fingerprint = sourceFingerprint(h, opts.sourceLabel ?? `${opts.source}|${srcSize}|${t0}`);
  const geometry = geometryOf(start, targetSize, fingerprint);
  const patchHeader = { ...geometry, state: { seed: BigInt(start.seed), regionSize: start.chunkSize, compareSize: plan.compareSize } };
  const patch = opts.mode === 'patch' ? await (await import('../patch/writer.js')).PatchWriter.create(opts.patchOut!, patchHeader, h, { overwrite: opts.patchOverwrite }) : undefined; // loaded only for a patch
  let summary: SyncSummary;
  const progress = (bytesDone: number, bytesDiffering: number) =>
    opts.onProgress?.({ bytesDone, bytesTotal: start.ranges ? ranged * start.blockSize : plan.compareSize, bytesDiffering, elapsedMs: Date.now() - t0, bytesExchanged: conn.writer.bytes + conn.reader.bytes });
  const growing = localRole === 'target' && write && plan.resultSize > local.size;
  try {
    if (growing) grow(local, plan.resultSize);
    await askResident(local); // started by runSync: what DirectIo.open decides by
    const { done, result } = localRole === 'source'
      ? await runSourceSide(local, conn, start, write ? new PeerSink(conn) : patch ? new PatchSink(patch) : null, { signal: opts.signal, maxDiffs: opts.maxDiffsReported ?? 10, onChunk: progress })
      : await runTarget(local, conn, start, write ? new DeviceWriter(local, geometry, h, { verify: !!opts.verify }) : patch ? await PatchFromPeerSink.create(patch, patchHeader, h, local) : null, opts.signal, progress);
    const patchBytes = patch ? (await patch.finish(patchFingerprints(done))).bytes : undefined;
    summary = {
      mode: opts.mode, source: opts.source, target: opts.target, blockSize: opts.blockSize,
      sourceSize: srcSize, targetSize, comparedBytes: start.ranges ? Math.min(ranged * start.blockSize, plan.compareSize) : plan.compareSize,
      blocksCompared: done.blocksCompared, blocksDiffering: done.blocksDiffering, blocksWritten: result.blocksWritten,
      blocksZero: done.blocksZero, bytesReadSource: done.bytesRead, bytesReadTarget: result.bytesRead,
      bytesSent: conn.writer.bytes, bytesReceived: conn.reader.bytes, bytesWritten: patch ? done.dataBytes : result.bytesWritten,
      patchBytes, records: done.records, firstDiffs: done.firstDiffs, identical: done.blocksDiffering === 0,
      verified: result.verified, grown: plan.resultSize > targetSize && write, durationMs: Date.now() - t0,
      ...(result.targetSnapshot ? { targetSnapshot: result.targetSnapshot } : {}),
      ...(historyCopy ? { historyCopy } : {}),
      ...(start.sample ? { sampleDiffering: Number(done.sampleDiffering ?? 0) } : {}),
      ...(done.fingerprint && done.baseFingerprint ? {
        fingerprint: makeFingerprint(start.seed, start.blockSize, plan.compareSize, done.fingerprint),
        baseFingerprint: makeFingerprint(start.seed, start.blockSize, plan.compareSize, done.baseFingerprint),
      } : {}),
      ...mountedRwOf(localRole === 'source' ? local.mountedRw : welcome.mountedRw),
      ...(done.io !== undefined ? { sourceIo: printable(String(done.io)).slice(0, 200) } : {}),
      ...(result.io !== undefined ? { targetIo: printable(String(result.io)).slice(0, 200) } : {}),
    };
  } catch (caught) {
    patch?.abort();
    const undo = growing ? shrinkTo(local, targetSize) : undefined; // a failed run never leaves the target grown
    // Aborted: runSync throws the abort reason, so the note below must go on that error.
    if (caught instanceof SampleDiffers) await conn.sendError(caught.code, `nothing was written: ${caught.message}`).catch(() => { /* it may be gone */ });
    const err: unknown = opts.signal?.aborted ? opts.signal.reason : localRole === 'source' ? await peerErrorOr(conn, caught) : caught;
    if (write && !(err instanceof SampleDiffers) && exitCodeOf(err) !== ExitCode.TARGET_REFUSED && exitCodeOf(err) !== ExitCode.PERMISSION && err instanceof Error) {
      err.message += `; target ${opts.target} may be incomplete: run the sync again to complete it`;
    }
    if (undo && err instanceof Error) err.message += `; ${undo}`;
    throw err;
  }
  return summary;
}


/**
 * WELCOME, after any WAIT frames (the server is at its max_concurrent): each is reported once
 * through opts.onWait, or logged as "waiting for a slot on HOST".
 */
async function welcomeAfterWaits(conn: Conn, opts: SyncOptions): Promise<Welcome> {
  for (;;) {
    const f = await conn.reader.next();
    if (!f || f.type !== Msg.WAIT) return conn.expectJson<Welcome>(Msg.WELCOME, Promise.resolve(f));
    const w = parseJson<Wait>(f);
    const msg = `waiting for a slot on ${conn.peerLabel} (the server's max_concurrent = ${Number(w.maxConcurrent)}, ` +
      `wait_timeout ${formatAge(Number(w.waitTimeout))}; ${String(w.holders).replace(/[\x00-\x1f\x7f]/g, '?')})`;
    if (opts.onWait) opts.onWait(msg);
    else log.info(msg);
  }
}

/**
 * A send that failed because the peer quit (EPIPE) hides why it quit: its ERROR frame (e.g. a
 * write error on the target) is still in the pipe. Reads on for up to 5 s and returns that error,
 * else the original. Source role only: its reads and sends alternate, so no read is pending here.
 */
async function peerErrorOr(conn: Conn, err: unknown): Promise<unknown> {
  if (exitCodeOf(err) !== ExitCode.REMOTE) return err;
  const find = async (): Promise<unknown> => {
    for (let f = await conn.reader.next(); f; f = await conn.reader.next()) if (f.type === Msg.ERROR) return conn.peerError(f);
    return err;
  };
  return (await withTimeout(find().catch(() => err), 5000)) ?? err;
}

/** A version 2 patch's trailer carries the content before and after (the DONE's digests). */
function patchFingerprints(done: Done): { base: bigint; result: bigint } {
  if (!done.fingerprint || !done.baseFingerprint) {
    throw new BlkError(ExitCode.REMOTE, 'the source end sent no fingerprints (an older blkdelta): cannot write a version 2 patch; upgrade it');
  }
  return { base: BigInt('0x' + done.baseFingerprint), result: BigInt('0x' + done.fingerprint) };
}

/** Ranges cut to the compared blocks (a size policy min may compare less than the source). */
function clipRanges(ranges: readonly BlockRange[], compareSize: number, bs: number): BlockRange[] {
  const total = Math.ceil(compareSize / bs);
  return mergeRanges(ranges.map(([a, n]): BlockRange => [a, Math.max(0, Math.min(a + n, total) - a)]));
}

function sourceFingerprint(h: Awaited<ReturnType<typeof loadHasher>>, label: string): Buffer<ArrayBuffer> {
  const b = Buffer.alloc(16);
  const data = Buffer.from(label);
  b.writeBigUInt64LE(h.h64(data, 0n), 0);
  b.writeBigUInt64LE(h.h64(data, 1n), 8);
  return b;
}
