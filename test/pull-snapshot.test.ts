// Thin-pool guards and pull with a source snapshot, the parts that run without device-mapper:
// table tests of the pure helpers (--snapshot parsing, the server's request check, the pool
// guard and the held-snapshot check on real lvs outputs, the client's removal bookkeeping, the
// job keys), and the real CLI pulling through a real `blkdelta server` (via --rsh) that refuses
// before anything is created. Real LVM: test/pool-vm.test.ts.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { BlkError, ExitCode } from '../src/errors.js';
import { parseConfig } from '../src/jobs/config.js';
import { parseLvs, type LvRow } from '../src/lvm/report.js';
import { heldProblem, poolGuard, snapshotReportOf, type SnapshotReport } from '../src/lvm/snapshot.js';
import { parseSnapshotSpec, remoteSnapshotOf, snapshotEnds, type SnapshotArgs } from '../src/lvm/sync-options.js';
import { reportFromWelcome, removalOutcome, settlePull, snapshotReleased } from '../src/engine/pull-snapshot.js';
import { Conn, type Hello } from '../src/proto/messages.js';
import { Msg, encodeFrameHeader, type MsgType } from '../src/proto/wire.js';
import { DEFAULT_SOURCE_SNAPSHOT, snapshotRequest } from '../src/server/snapshots.js';
import { BIN, runBlkdelta } from './helpers/jobs.js';

// ---- --snapshot [user@]host:VG/LV ----

const spec = test.macro({
  exec(t: ExecutionContext, s: string, want: object) {
    t.deepEqual(parseSnapshotSpec(s), want);
  },
  title: (_g, s: string) => `--snapshot ${s}`,
});
const remote = (host: string, extra: object = {}) => ({ vg: 'vg0', lv: 'data', remote: { kind: 'remote', host, path: '/dev/vg0/data', ...extra } });
test(spec, 'vg0/data', { vg: 'vg0', lv: 'data' });
test(spec, '/dev/vg0/data', { vg: 'vg0', lv: 'data' });
test(spec, 'store1:vg0/data', remote('store1'));
test(spec, 'root@store1:vg0/data', remote('store1', { user: 'root' }));
test(spec, 'store1:/dev/vg0/data', remote('store1'));
test(spec, 'ssh://bk@store1:2222/vg0/data', remote('store1', { user: 'bk', port: 2222 }));
test(spec, 'ssh://store1/dev/vg0/data', remote('store1'));
test(spec, '[::1]:vg0/data', remote('::1'));
test(spec, 'bk@[fe80::1]:vg0/data', remote('fe80::1', { user: 'bk' }));

const specFails = test.macro({
  exec(t: ExecutionContext, s: string, words: string) {
    const err = t.throws(() => parseSnapshotSpec(s), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (_g, s: string, words: string) => `--snapshot ${JSON.stringify(s)} refused (exit 2): ${words}`,
});
test(specFails, '', 'expects VG/LV');
test(specFails, 'store1:', 'expects VG/LV');
test(specFails, 'store1:vg0', 'expects VG/LV');
test(specFails, 'store1:vg0/a/b', 'expects VG/LV');
test(specFails, 'vg0/a/b', 'expects VG/LV');
test(specFails, '-oProxyCommand=x:vg0/data', 'bad host name');
test(specFails, 'ssh://store1:99999/vg0/data', 'bad port');
test(specFails, 'ssh://store1:0/vg0/data', 'bad port');
test(specFails, '@store1:vg0/data', 'empty user name');
test(specFails, 'store1:vg0/snapshot1', 'may not start with snapshot');
test(specFails, 'store1:vg0/x_tmeta', 'may not contain "_tmeta"');
test(specFails, 'store1:v g/data', 'may only contain');

type A = SnapshotArgs & { src?: string; dst?: string };
const ends = test.macro({
  exec(t: ExecutionContext, a: A, want: { src: string; dst: string }, job?: string) {
    t.deepEqual(snapshotEnds(a), want);
    t.deepEqual(remoteSnapshotOf(a), job === undefined ? undefined : { job });
  },
  title: (_g, a: A) => `ends ${JSON.stringify(a)}`,
});
test(ends, { snapshot: 'store1:vg0/data', src: '/dev/bk/data' }, { src: 'ssh://store1/dev/vg0/data', dst: '/dev/bk/data' }, 'vg0-data');
test(ends, { snapshot: 'bk@store1:vg0/data', src: 'd.img', job: 'nightly' }, { src: 'ssh://bk@store1/dev/vg0/data', dst: 'd.img' }, 'nightly');
test(ends, { snapshot: 'ssh://bk@[::1]:2222/vg0/data', src: 'd.img' }, { src: 'ssh://bk@[::1]:2222/dev/vg0/data', dst: 'd.img' }, 'vg0-data');
test(ends, { snapshot: 'store1:vg0/data', src: '/dev/bk/data', 'target-snapshot': true, 'pool-max-fill': 80 }, { src: 'ssh://store1/dev/vg0/data', dst: '/dev/bk/data' }, 'vg0-data');
test(ends, { snapshot: 'vg0/data', src: '/dev/bk/data', 'pool-max-fill': 80 }, { src: '/dev/vg0/data', dst: '/dev/bk/data' });
test(ends, { src: 'a', dst: 'b', 'target-snapshot': true, 'pool-max-fill': 100 }, { src: 'a', dst: 'b' });

const endsFail = test.macro({
  exec(t: ExecutionContext, a: A, words: string) {
    const err = t.throws(() => snapshotEnds(a), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (_g, a: A, words: string) => `ends ${JSON.stringify(a)} refused (exit 2): ${words}`,
});
const pull = { snapshot: 'store1:vg0/data', src: '/dev/bk/data' };
test(endsFail, { ...pull, 'snapshot-size': '1G' }, '--snapshot-size cannot be used with --snapshot store1:vg0/data: the server on store1 snapshots under its own policy');
test(endsFail, { ...pull, 'snapshot-max-fill': 50 }, '--snapshot-max-fill cannot be used');
test(endsFail, { ...pull, 'pool-max-fill': 50 }, '--pool-max-fill cannot be used');
test(endsFail, { ...pull, dst: 'x.img' }, 'give only DST');
test(endsFail, { snapshot: 'store1:vg0/data' }, 'name the target DST');
test(endsFail, { ...pull, 'pool-max-fill': 0 }, '--pool-max-fill must be a percentage in (0, 100], got 0');
test(endsFail, { ...pull, 'pool-max-fill': -5 }, 'got -5');
test(endsFail, { ...pull, 'pool-max-fill': 101 }, 'got 101');
test(endsFail, { ...pull, 'pool-max-fill': Number.NaN }, 'got NaN');
test(endsFail, { ...pull, 'pool-max-fill': 1e308 }, 'got 1e+308');
test(endsFail, { ...pull, 'pool-max-fill': '90' as unknown as number }, 'got 90');
test(endsFail, { src: 'a', dst: 'b', 'pool-max-fill': 80 }, '--pool-max-fill needs --snapshot VG/LV or --target-snapshot');

// ---- the server's check of a HELLO asking for a source snapshot ----

type H = Pick<Hello, 'role' | 'path' | 'sourceSnapshot'>;
const hello = (o: Record<string, unknown>): H => ({ role: 'source', path: '/dev/vg0/data', sourceSnapshot: { job: 'j1' }, ...o }) as H;

test('snapshotRequest: a valid request under the default policy', (t) => {
  t.deepEqual(snapshotRequest(hello({}), DEFAULT_SOURCE_SNAPSHOT), { vg: 'vg0', lv: 'data', job: 'j1', policy: DEFAULT_SOURCE_SNAPSHOT });
  t.deepEqual(DEFAULT_SOURCE_SNAPSHOT, { size: '20%ORIGIN', maxFill: 100, poolMaxFill: 90 });
});

const refused = test.macro({
  exec(t: ExecutionContext, h: H, withPolicy: boolean, code: number, words: string) {
    const err = t.throws(() => snapshotRequest(h, withPolicy ? DEFAULT_SOURCE_SNAPSHOT : undefined), { instanceOf: BlkError });
    t.is(err?.code as number, code, err?.message);
    t.true(err?.message.includes(words), err?.message);
  },
  title: (title) => `snapshotRequest refuses ${title}`,
});
test('no policy (exit 12)', refused, hello({}), false, ExitCode.PERMISSION, 'refused by the server: it has no [server.source_snapshot] policy, so a pull cannot snapshot /dev/vg0/data here');
test('sourceSnapshot null (exit 9)', refused, hello({ sourceSnapshot: null }), true, ExitCode.REMOTE, 'HELLO field sourceSnapshot must be an object {job}');
test('sourceSnapshot a string', refused, hello({ sourceSnapshot: 'yes' }), true, ExitCode.REMOTE, 'must be an object');
test('sourceSnapshot an array', refused, hello({ sourceSnapshot: [] }), true, ExitCode.REMOTE, 'must be an object');
test('sourceSnapshot true', refused, hello({ sourceSnapshot: true }), true, ExitCode.REMOTE, 'must be an object');
test('job missing', refused, hello({ sourceSnapshot: {} }), true, ExitCode.REMOTE, 'sourceSnapshot.job must be a string');
test('job a number', refused, hello({ sourceSnapshot: { job: 7 } }), true, ExitCode.REMOTE, 'sourceSnapshot.job must be a string');
test('job empty', refused, hello({ sourceSnapshot: { job: '' } }), true, ExitCode.REMOTE, 'job name "" is invalid');
test('job starting with -', refused, hello({ sourceSnapshot: { job: '-x' } }), true, ExitCode.REMOTE, 'job name "-x" is invalid');
test('job of 65 characters', refused, hello({ sourceSnapshot: { job: 'a'.repeat(65) } }), true, ExitCode.REMOTE, 'is invalid');
test('job with a comma (tag injection)', refused, hello({ sourceSnapshot: { job: 'a,blkdelta-target' } }), true, ExitCode.REMOTE, 'is invalid');
test('role target', refused, hello({ role: 'target' }), true, ExitCode.REMOTE, 'asks for a source snapshot with role target');
test('an image file', refused, hello({ path: '/srv/a.img' }), true, ExitCode.SOURCE, 'cannot snapshot /srv/a.img: a source snapshot needs an LVM path /dev/VG/LV');
test('a partition', refused, hello({ path: '/dev/sda1' }), true, ExitCode.SOURCE, 'needs an LVM path');
test('a /dev/mapper name', refused, hello({ path: '/dev/mapper/vg0-data' }), true, ExitCode.SOURCE, 'not /dev/mapper');
test('a bad VG name', refused, hello({ path: '/dev/v g/data' }), true, ExitCode.SOURCE, 'VG name "v g"');
test('a reserved LV name', refused, hello({ path: '/dev/vg0/pool_tdata' }), true, ExitCode.SOURCE, 'may not contain "_tdata"');

// ---- the pool guard before, and the check while held, on real lvs outputs ----

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/lvm/${name}.json`, import.meta.url), 'utf8');
/** thin-all.json in vg0, its pool at the given data / metadata fill. */
function thinRows(data: number | null, metadata: number | null): LvRow[] {
  return parseLvs(fixture('thin-all')).map((r) => ({ ...r, vg: 'vg0', ...(r.name === 'pool' ? { dataPercent: data, metadataPercent: metadata } : {}) }));
}
const origin = (rows: LvRow[]) => rows.find((r) => r.name === 'thin')!;

const guard = test.macro({
  exec(t: ExecutionContext, data: number | null, metadata: number | null, thin: boolean, max: number | undefined, want: string | null) {
    const rows = thinRows(data, metadata);
    const got = poolGuard(rows, origin(rows), thin, max);
    if (want === null) t.is(got, null);
    else {
      t.true(got?.startsWith('cannot snapshot vg0/thin: '), got ?? 'null');
      t.true(got?.includes(want), got ?? 'null');
      t.true(got?.includes('nothing was created'), got ?? 'null');
    }
  },
  title: (_g, data, metadata, thin, max) => `pool guard: data ${data}% metadata ${metadata}% ${thin ? 'thin' : 'cow'} snapshot, max ${max ?? 'default'}`,
});
test(guard, 3.12, 11.13, true, undefined, null);
test(guard, 89.99, 89.99, true, undefined, null);
test(guard, 90, 10, true, undefined, 'thin pool vg0/pool data is 90% full, at or above pool_max_fill 90%');
test(guard, 10, 90, true, undefined, 'thin pool vg0/pool metadata is 90% full, at or above pool_max_fill 90%');
test(guard, 100, 100, true, undefined, 'data is 100% full');
test(guard, 0, 0, true, 100, null);
test(guard, 100, 0, true, 100, 'data is 100% full, at or above pool_max_fill 100%');
test(guard, 49.5, 1, true, 50, null);
test(guard, 50, 1, true, 50, 'at or above pool_max_fill 50%');
test(guard, null, 1, true, undefined, 'lvs reports no data fill (is the pool active?)');
test(guard, 1, null, true, undefined, 'lvs reports no metadata fill');
test(guard, 99, 99, false, undefined, null); // a COW snapshot of a thin origin keeps its copies outside the pool

const emptyReport = (): SnapshotReport => ({ vg: 'vg0', origin: 'thin', job: 'j', name: 'tsnap', kind: 'thin', device: '/dev/vg0/tsnap', createdAt: '', removed: false, fillPct: null, staleRemoved: [] });

const held = test.macro({
  exec(t: ExecutionContext, rows: LvRow[], name: string, o: { max?: number; pool?: number }, want: string | null) {
    const report = emptyReport();
    const got = heldProblem({ vg: 'vg0', maxFillPct: o.max, poolMaxFillPct: o.pool }, rows, name, report);
    if (want === null) return t.is(got, null);
    t.is(got?.code, ExitCode.SNAPSHOT_OVERFLOW);
    t.true(got?.message.includes(want), got?.message);
    t.true(got?.message.includes('NOT consistent'), got?.message);
  },
  title: (title) => `held snapshot: ${title}`,
});
const inVg0 = (file: string) => parseLvs(fixture(file)).map((r) => ({ ...r, vg: 'vg0' }));
test('thin, pool below the limit', held, thinRows(50, 20), 'tsnap', {}, null);
test('thin, pool data at the limit', held, thinRows(90, 20), 'tsnap', {},
  'thin pool vg0/pool data is 90% full, at or above pool_max_fill 90%: the run was stopped part-way and the snapshot removed so that the origin keeps the pool\'s space');
test('thin, pool metadata over a custom limit', held, thinRows(10, 61), 'tsnap', { pool: 60 }, 'metadata is 61% full, at or above pool_max_fill 60%');
test('thin, pool fill unknown', held, thinRows(null, null), 'tsnap', {}, 'lvs reports no data fill');
test('COW, healthy', held, inVg0('healthy-cow'), 'snap', { max: 50 }, null);
test('COW, over --snapshot-max-fill', held, inVg0('healthy-cow'), 'snap', { max: 0.1 }, 'over --snapshot-max-fill 0.1%');
test('COW, overflowed', held, inVg0('overflowed-cow'), 'snap', {}, 'overflowed and is invalid');
test('gone', held, inVg0('healthy-cow'), 'other', {}, 'snapshot vg0/other disappeared');

test('held snapshot: the report keeps the pool fill it last saw', (t) => {
  const report = emptyReport();
  heldProblem({ vg: 'vg0' }, thinRows(42.5, 7), 'tsnap', report);
  t.deepEqual(report.pool, { name: 'vg0/pool', data: 42.5, metadata: 7 });
});

// ---- the client's bookkeeping of the server's snapshot ----

test('reportFromWelcome: an older server that made no snapshot is refused (exit 9)', (t) => {
  for (const info of [undefined, null, {}, { name: 5, vg: 'vg0' }]) {
    const err = t.throws(() => reportFromWelcome(info as never, 'ssh root@store1'), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.REMOTE);
    t.regex(err!.message, /^ssh root@store1 did not make a source snapshot \(its WELCOME has none\): it is an older blkdelta/);
  }
  const r = reportFromWelcome({ vg: 'vg0', origin: 'data', job: 'j', name: 'data-blkdelta-j-20261127T000000Z', kind: 'thin', device: '/dev/vg0/x', createdAt: 't', staleRemoved: ['old'] }, 'x');
  t.like(r, { vg: 'vg0', name: 'data-blkdelta-j-20261127T000000Z', kind: 'thin', removed: false, staleRemoved: ['old'] });
});

/** An error as Conn.peerError builds it from an ERROR frame with this body. */
function peerError(body: object): BlkError {
  const conn = new Conn({ input: new PassThrough(), output: new PassThrough(), stderrTail: () => '', close: async () => null }, 'ssh root@store1');
  return conn.peerError({ type: Msg.ERROR, payload: Buffer.from(JSON.stringify(body)) });
}

const outcome = test.macro({
  exec(t: ExecutionContext, exit: number | null, failure: unknown, want: { removed: boolean; removeError?: RegExp }) {
    const got = removalOutcome(exit, failure);
    t.is(got.removed, want.removed);
    if (want.removeError) t.regex(got.removeError ?? '', want.removeError);
    else t.is(got.removeError, undefined);
  },
  title: (title) => `removal outcome: ${title}`,
});
test('success, server exit 0', outcome, 0, undefined, { removed: true });
test('success, server exit 13', outcome, 13, undefined, { removed: false, removeError: /exited 13: it could not remove/ });
test('no exit status (server killed)', outcome, null, undefined, { removed: false, removeError: /next run of the job removes/ });
test('failure, server exit 14', outcome, 14, new BlkError(ExitCode.SNAPSHOT_OVERFLOW, 'x'), { removed: true });
test('failure, the ERROR frame says removed', outcome, null, peerError({ code: 14, message: 'pool', sourceSnapshot: { name: 'vg0/s', removed: true } }), { removed: true });
test('failure, the ERROR frame says NOT removed', outcome, 14, peerError({ code: 14, message: 'pool', sourceSnapshot: { name: 'vg0/s', removed: false, removeError: 'busy' } }), { removed: false, removeError: /^busy$/ });
test('failure, an ERROR frame without a snapshot', outcome, 9, peerError({ code: 9, message: 'x' }), { removed: true });

test('settlePull: a success whose snapshot stayed fails with SNAPSHOT and carries the report', (t) => {
  const report = emptyReport();
  const ok = settlePull(report, 0, { ok: true, value: { n: 1 } as { n: number; sourceSnapshot?: SnapshotReport } }, 'ssh h', '');
  t.like(ok, { n: 1, sourceSnapshot: { name: 'tsnap', removed: true } });
  const err = t.throws(() => settlePull(report, 13, { ok: true, value: {} }, 'ssh h', 'lvremove failed'), { instanceOf: BlkError });
  t.is(err?.code, ExitCode.SNAPSHOT);
  t.regex(err!.message, /^the sync succeeded but ssh h did not remove snapshot vg0\/tsnap \(the server exited 13.*\): lvremove failed$/);
  t.like(snapshotReportOf(err), { removed: false, name: 'tsnap' });
  const own = new BlkError(ExitCode.SNAPSHOT_OVERFLOW, 'pool full');
  t.is(t.throws(() => settlePull(report, 14, { ok: false, error: own }, 'ssh h', '')), own, 'a failure keeps its own error');
  t.like(snapshotReportOf(own), { removed: true });
});

/** A Conn whose input holds these frames, then ends. */
function connWith(frames: [MsgType, Buffer][]): Conn {
  const input = new PassThrough();
  for (const [type, payload] of frames) input.write(Buffer.concat([encodeFrameHeader(type, payload.length), payload]));
  input.end();
  return new Conn({ input, output: new PassThrough(), stderrTail: () => '', close: async () => null }, 'sh localhost');
}

test('snapshotReleased: the server ends its output once the snapshot is removed', async (t) => {
  await t.notThrowsAsync(snapshotReleased(connWith([])));
});

test('snapshotReleased: an ERROR after RESULT (removal failed) is thrown with its code and what it says of the snapshot', async (t) => {
  const body = { code: ExitCode.SNAPSHOT, message: 'snapshot vg0/s could not be removed', sourceSnapshot: { name: 'vg0/s', removed: false, removeError: 'in use' } };
  const err = await t.throwsAsync(snapshotReleased(connWith([[Msg.ERROR, Buffer.from(JSON.stringify(body))]])), { instanceOf: BlkError });
  t.is(err?.code, ExitCode.SNAPSHOT);
  t.is(err?.message, 'sh localhost: snapshot vg0/s could not be removed');
  t.deepEqual(removalOutcome(13, err), { removed: false, removeError: 'in use' });
});

test('snapshotReleased: any other frame after RESULT is a protocol error (exit 9)', async (t) => {
  const err = await t.throwsAsync(snapshotReleased(connWith([[Msg.READY, Buffer.alloc(0)]])), { instanceOf: BlkError });
  t.is(err?.code, ExitCode.REMOTE);
  t.regex(err!.message, /^protocol error: READY from sh localhost after RESULT$/);
});

// ---- job keys ----

const jobError = test.macro({
  exec(t: ExecutionContext, body: string, want: string) {
    const err = t.throws(() => parseConfig(`state_dir = "/x"\n[jobs.p]\n${body}`, 'b.toml'), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.CONFIG);
    t.true(err?.message.includes(want), err?.message);
  },
  title: (title) => `job config refused: ${title}`,
});
const PULL = 'source = "root@store1:/dev/vg0/data"\ntarget = "/dev/bk/data"\nsnapshot = true\n';
test('pool_max_fill 0', jobError, `${PULL}pool_max_fill = 0\n`, 'b.toml:6:1: jobs.p.pool_max_fill: 0 is below the minimum 1');
test('pool_max_fill 101', jobError, `${PULL}pool_max_fill = 101\n`, 'jobs.p.pool_max_fill: 101 is above the maximum 100');
test('pool_max_fill as a string', jobError, `${PULL}pool_max_fill = "90"\n`, 'jobs.p.pool_max_fill: expected a number from 1 to 100, got string "90"');
test('pool_max_fill negative', jobError, `${PULL}pool_max_fill = -1\n`, 'is below the minimum 1');
test('pool_max_fill misspelt', jobError, `${PULL}pool_maxfill = 80\n`, 'unknown key (did you mean pool_max_fill?)');
test('remote snapshot of another LV', jobError, PULL.replace('snapshot = true', 'snapshot = "vg0/other"'),
  'b.toml:5:1: jobs.p.snapshot: a remote source is snapshotted by its server: the source must be /dev/vg0/other (write snapshot = true)');
test('remote snapshot of an image', jobError, PULL.replace('/dev/vg0/data', '/srv/a.img'), 'cannot tell the LV from source "/srv/a.img"');
test('remote snapshot with snapshot_size', jobError, `${PULL}snapshot_size = "1G"\n`,
  "jobs.p.snapshot_size: the source host's server sets this for a remote source ([server.source_snapshot] in its --config)");
test('remote snapshot with snapshot_max_fill', jobError, `${PULL}snapshot_max_fill = 50\n`, "jobs.p.snapshot_max_fill: the source host's server sets this");

test('job config: a pull with snapshot = true, and pool_max_fill on a local snapshot', (t) => {
  const cfg = parseConfig(`state_dir = "/x"\n[jobs.p]\n${PULL}\n[jobs.l]\nsource = "/dev/vg0/l"\ntarget = "/b"\nsnapshot = true\npool_max_fill = 75\n`, 'b.toml');
  t.deepEqual(cfg.jobs[0]!.snapshot, { lv: 'vg0/data', remote: true });
  t.deepEqual(cfg.jobs[1]!.snapshot, { lv: 'vg0/l', size: undefined, maxFill: undefined, poolMaxFill: 75 });
});

// ---- the real CLI pulling through a real server (--rsh runs it here), refused before anything ----

function images(t: ExecutionContext): { dir: string; dst: string; content: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-pull-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const content = randomBytes(256 * 1024);
  writeFileSync(join(dir, 'dst.img'), content);
  return { dir, dst: join(dir, 'dst.img'), content };
}

const cliRefusal = test.macro({
  async exec(t: ExecutionContext, serverArgs: string, args: string[], code: number, words: RegExp) {
    const { dst, content } = images(t);
    // --rsh drops "--" and the host and runs the server command here, with serverArgs appended (its
    // globs name no file here, so the shell passes them on as they are)
    const r = await runBlkdelta(['sync', '--no-progress', '--rsh', `sh -c 'shift 2; exec sh -c "$1 ${serverArgs}"' rsh`,
      '--remote-cmd', `${process.execPath} ${BIN}`, ...args, dst]);
    t.is(r.code, code, r.stderr);
    t.regex(r.stderr, words);
    t.true(readFileSync(dst).equals(content), 'the target is untouched');
  },
  title: (title) => `pull --snapshot refused end to end: ${title}`,
});
test('a server with --allow and no [server.source_snapshot] (exit 12)', cliRefusal, '--allow /dev/vg0/*', ['--snapshot', 'localhost:vg0/data'], ExitCode.PERMISSION,
  /refused by the server: it has no \[server.source_snapshot\] policy, so a pull cannot snapshot \/dev\/vg0\/data here/);
test('an origin outside the --allow list (exit 12)', cliRefusal, '--allow /dev/backup/*', ['--snapshot', 'localhost:vg0/data'], ExitCode.PERMISSION,
  /device \/dev\/vg0\/data is outside the server's --allow list/);
test('a volume group the server does not have (exit 4)', cliRefusal, '', ['--snapshot', 'localhost:blkdelta-test-novg/data'], ExitCode.SOURCE,
  /source volume group blkdelta-test-novg not found/);
test('--snapshot-size with a remote snapshot (exit 2, nothing started)', cliRefusal, '', ['--snapshot', 'localhost:vg0/data', '--snapshot-size', '1G'], ExitCode.USAGE,
  /--snapshot-size cannot be used with --snapshot localhost:vg0\/data/);
