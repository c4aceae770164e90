// An incremental pull, the client's side: the SourceEnd (lvm/incremental.ts) whose bases live on
// the source host, kept by its server (server/incremental.ts). One session carries the whole run:
//   HELLO (sourceSnapshot {job}, incremental {base the record names, delta?, blockSize})
//   → WELCOME: the server's snapshot S and what it found (checked: incrementalOf)
//   → passes on the same connection (the sample dry-run, then the write): runPass each
//   → ROTATE make → BASE (checked: newBaseOf) → the record names B' (lvm/incremental.ts)
//   → ROTATE drop → end of our output → the server removes S and ends its output (we wait)
// A server without the incremental capability ignored HELLO.incremental and serves one plain
// pull: the run is a full compare saying so, and no base is recorded.
// What this side trusts: nothing in WELCOME.incremental or BASE beyond its checked shape; the
// ranges only narrow what is compared, and the sample outside them (and full_compare_every)
// catches a server that reports too few. Interrupted: as runSync (the server removes S; the
// record keeps the old base named). Memory: the changed ranges of one run.
import path from 'node:path';
import { BlkError, ExitCode, printable } from '../errors.js';
import { openTarget } from '../io/device.js';
import type { BaseAsk, Rotation, SourceDelta } from '../lvm/base-lvm.js';
import type { BaseRef } from '../lvm/base-record.js';
import type { Pass, SourceEnd } from '../lvm/incremental.js';
import type { SnapshotReport } from '../lvm/snapshot.js';
import { MAX_RANGES } from '../lvm/base-lvm.js';
import { Conn, type Welcome } from '../proto/messages.js';
import { Msg, parseJson } from '../proto/wire.js';
import { rangesProblem } from '../ranges.js';
import { LocalTransport } from '../transport/local.js';
import { reportFromWelcome, settlePull, snapshotReleased } from './pull-snapshot.js';
import { handshake, helloOf, runPass } from './sync.js';
import type { SyncOptions, SyncSummary } from './types.js';

/** Runs one pass; `wrap` may put it inside a target snapshot (the write pass: run(seed)). */
export type PassWrap = (pass: Pass, run: (seed?: string) => Promise<SyncSummary>) => Promise<SyncSummary>;

/** The source end of an incremental pull of opts.source (/dev/VG/LV on the server) into opts.target. */
export function pullSourceEnd(opts: SyncOptions, wrap: PassWrap = (_p, run) => run()): SourceEnd<SyncSummary> {
  return { within: (ask, body) => withPull(opts, ask, wrap, body) };
}

const noIncremental = (where: string) =>
  `${where} is an older blkdelta server without the incremental capability: it keeps no base, so every pull compares in full; upgrade blkdelta there`;

/** WELCOME.incremental checked: its shape, the reason's text, the ranges inside the source's blocks. */
export function incrementalOf(welcome: Pick<Welcome, 'caps' | 'size' | 'incremental'>, blockSize: number, where: string): SourceDelta {
  const size = welcome.size;
  if (!welcome.caps?.includes('incremental')) return { thin: false, size, reason: noIncremental(where), removedBases: [] };
  const v = welcome.incremental as unknown;
  const bad = (why: string) => new BlkError(ExitCode.REMOTE, `protocol error: WELCOME from ${where}: field incremental${why}`);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(' must be an object');
  const o = v as Record<string, unknown>;
  if (typeof o.thin !== 'boolean') throw bad('.thin must be a boolean');
  const removed = o.removedBases;
  if (!Array.isArray(removed) || removed.length > 64 || !removed.every((n) => typeof n === 'string' && n.length <= 128)) throw bad('.removedBases must be a list of at most 64 LV names');
  const text = (k: 'reason' | 'dropped'): string | undefined => {
    if (o[k] === undefined) return undefined;
    if (typeof o[k] !== 'string') throw bad(`.${k} must be a string`);
    return printable(o[k]).slice(0, 4096);
  };
  const d: SourceDelta = { thin: o.thin, size, removedBases: removed.map((n) => printable(n)) };
  const [reason, dropped] = [text('reason'), text('dropped')];
  if (reason !== undefined) d.reason = reason;
  if (dropped !== undefined) d.dropped = dropped;
  if (o.ranges !== undefined) {
    const problem = Array.isArray(o.ranges) && o.ranges.length > MAX_RANGES ? `has more than ${MAX_RANGES} ranges` : rangesProblem(o.ranges, Math.ceil(size / blockSize));
    if (problem) throw bad(`.ranges: ${problem}`);
    d.ranges = o.ranges as SourceDelta['ranges'];
  }
  if (!d.thin && d.reason === undefined) throw bad('.reason is missing for a source that is not thin');
  return d;
}

/** BASE checked: the new base the record will name. */
export function newBaseOf(body: unknown, where: string): { base: BaseRef; pinnedBytes?: number } {
  const bad = (why: string) => new BlkError(ExitCode.REMOTE, `protocol error: BASE from ${where}: ${why}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('not an object');
  const { base, pinnedBytes } = body as Record<string, unknown>;
  if (typeof base !== 'object' || base === null) throw bad('field base must be {name, uuid, thinId}');
  const { name, uuid, thinId } = base as Record<string, unknown>;
  if (typeof name !== 'string' || !/^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,127}$/.test(name)) throw bad('field base.name must be an LV name');
  if (typeof uuid !== 'string' || uuid.length > 64 || !/^[A-Za-z0-9-]+$/.test(uuid)) throw bad('field base.uuid must be an LVM uuid');
  if (typeof thinId !== 'number' || !Number.isSafeInteger(thinId) || thinId < 0) throw bad('field base.thinId must be a whole number');
  if (pinnedBytes !== undefined && (typeof pinnedBytes !== 'number' || !Number.isSafeInteger(pinnedBytes) || pinnedBytes < 0)) throw bad('field pinnedBytes must be a whole number');
  return { base: { name, uuid, thinId }, ...(pinnedBytes !== undefined ? { pinnedBytes } : {}) };
}

/** One session: handshake, body (the passes and the rotation), our end, the server's end. */
async function withPull<R>(options: SyncOptions, ask: BaseAsk, wrap: PassWrap,
  body: (delta: SourceDelta, run: (pass: Pass) => Promise<SyncSummary>, rotation: Rotation) => Promise<R>): Promise<{ value: R; snapshot: SnapshotReport }> {
  const opts = { ...options, target: path.resolve(options.target) };
  if (opts.remote?.side !== 'source' || !opts.sourceSnapshot) throw new BlkError(ExitCode.INTERNAL, 'an incremental pull needs a remote source with sourceSnapshot');
  const local = openTarget(opts.target, { write: true });
  try {
    const transport = opts.remote.transport ?? new LocalTransport();
    const channel = await transport.open(opts.signal);
    const onAbort = () => {
      channel.input.on('error', () => { /* the abort reason is what the run throws */ });
      channel.input.destroy(opts.signal!.reason as Error);
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const conn = new Conn(channel, transport.label);
    let report: SnapshotReport | undefined;
    let outcome: { ok: true; value: { value: R; sourceSnapshot?: SnapshotReport } } | { ok: false; error: unknown };
    let exit: number | null = null;
    try {
      const hello = { ...helloOf(opts, 'target'), incremental: { base: ask.named, delta: ask.delta, blockSize: ask.blockSize } };
      const welcome = await handshake(conn, opts, hello);
      report = reportFromWelcome(welcome.sourceSnapshot, conn.peerLabel);
      const delta = incrementalOf(welcome, ask.blockSize, conn.peerLabel);
      if (delta.dropped) ask.onDropped?.(delta.dropped);
      const offered = !!welcome.caps?.includes('incremental');
      let passes = 0;
      const run = (pass: Pass) => {
        if (!offered && passes++) throw new BlkError(ExitCode.INTERNAL, 'a second pass on a server without the incremental capability');
        const o = { ...opts, mode: pass.mode, ranges: pass.ranges, verify: pass.mode === 'write' && opts.verify };
        return wrap(pass, (seed) => runPass({ ...o, seed }, local, 'target', conn, { hello, welcome }, Date.now()));
      };
      const rotation: Rotation = {
        makeBase: async () => {
          await conn.writer.sendJson(Msg.ROTATE, { step: 'make' });
          return newBaseOf(parseJson(await conn.expect(Msg.BASE)), conn.peerLabel);
        },
        dropOld: async () => {
          await conn.writer.sendJson(Msg.ROTATE, { step: 'drop' });
          return ask.named?.name;
        },
      };
      const value = await body(delta, run, rotation);
      channel.output.end();
      await snapshotReleased(conn); // the server drops the old base, removes S, then ends its output
      if (ask.named && delta.thin && offered) delta.removedBases.push(ask.named.name);
      outcome = { ok: true, value: { value } };
    } catch (err) {
      outcome = { ok: false, error: opts.signal?.aborted ? (opts.signal.reason as Error) : err };
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      exit = await channel.close();
    }
    if (!report) {
      if (!outcome.ok) throw outcome.error;
      throw new BlkError(ExitCode.INTERNAL, 'an incremental pull without a snapshot report');
    }
    const settled = settlePull(report, exit, outcome, transport.label, channel.stderrTail());
    return { value: settled.value, snapshot: settled.sourceSnapshot! };
  } finally {
    local.close();
  }
}
