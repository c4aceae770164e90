// One table of scenarios (sync, dry-run, patch-out, verify, --verify) run over every way of
// reaching the other end: the local transport, SSH push and pull (ssh2 against a real sshd on
// 127.0.0.1), and --rsh push and pull (OpenSSH's ssh against the same sshd). Targets must be
// byte-identical to the source afterwards (sha256), and untouched where nothing is written.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { applyPatch } from '../src/engine/apply.js';
import { runSync } from '../src/engine/sync.js';
import type { SyncMode, SyncOptions } from '../src/engine/types.js';
import { RshTransport } from '../src/transport/rsh.js';
import { SshTransport } from '../src/transport/ssh.js';
import { BS, makePair, sha256, type ImagePair } from './helpers/images.js';
import { BLKDELTA_BIN, startSshd, type TestSshd } from './helpers/sshd.js';

let sshd: TestSshd;
const root = mkdtempSync(join(tmpdir(), 'blkdelta-conf-'));
test.before(async () => {
  sshd = await startSshd();
});
test.after.always(async () => {
  await sshd?.stop();
  rmSync(root, { recursive: true, force: true });
});

type Ends = Pick<SyncOptions, 'source' | 'target' | 'remote'>;
interface Way {
  name: string;
  ends(p: ImagePair): Ends;
}

const ssh = () => new SshTransport({
  host: sshd.host, port: sshd.port, identityFiles: [sshd.userKey.privatePath], knownHostsFiles: [sshd.knownHosts],
  agent: false, remoteCmd: BLKDELTA_BIN,
});
const quote = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;
const rsh = () => new RshTransport({ rsh: sshd.rshArgv().map(quote).join(' '), host: sshd.host, remoteCmd: BLKDELTA_BIN });

const WAYS: Way[] = [
  { name: 'local', ends: (p) => ({ source: p.source, target: p.target }) },
  { name: 'ssh push', ends: (p) => ({ source: p.source, target: p.target, remote: { side: 'target', transport: ssh() } }) },
  { name: 'ssh pull', ends: (p) => ({ source: p.source, target: p.target, remote: { side: 'source', transport: ssh() } }) },
  { name: 'rsh push', ends: (p) => ({ source: p.source, target: p.target, remote: { side: 'target', transport: rsh() } }) },
  { name: 'rsh pull', ends: (p) => ({ source: p.source, target: p.target, remote: { side: 'source', transport: rsh() } }) },
];

function fresh(): ImagePair {
  return makePair(mkdtempSync(join(root, 'pair-')));
}

async function run(way: Way, p: ImagePair, mode: SyncMode, extra: Partial<SyncOptions> = {}) {
  return runSync({ ...way.ends(p), mode, blockSize: BS, sizePolicy: 'strict', ...extra });
}

const scenarios: Record<string, (t: ExecutionContext, way: Way) => Promise<void>> = {
  async sync(t, way) {
    const p = fresh();
    const s = await run(way, p, 'write');
    t.is(s.blocksDiffering, p.differing);
    t.is(s.blocksWritten, p.differing);
    t.true(s.blocksZero >= 1, 'the zero block travelled as a zero record');
    t.is(sha256(p.target), sha256(p.source));
    const again = await run(way, p, 'write');
    t.is(again.blocksDiffering, 0, 'a second run finds nothing to do');
  },
  async 'dry-run'(t, way) {
    const p = fresh();
    const before = sha256(p.target);
    const s = await run(way, p, 'dry-run');
    t.false(s.identical);
    t.is(s.blocksDiffering, p.differing);
    t.is(s.blocksWritten, 0);
    t.is(sha256(p.target), before);
  },
  async 'patch-out'(t, way) {
    const p = fresh();
    const before = sha256(p.target);
    const patch = join(dirname(p.target), 'delta.patch');
    const s = await run(way, p, 'patch', { patchOut: patch });
    t.is(s.blocksDiffering, p.differing);
    t.is(sha256(p.target), before, 'the target is untouched');
    t.is(statSync(patch).size, s.patchBytes ?? -1, 'the patch landed locally');
    const applied = await applyPatch({ patch, target: p.target });
    t.true(applied.records > 0);
    t.is(sha256(p.target), sha256(p.source));
  },
  async verify(t, way) {
    const p = fresh();
    const before = sha256(p.target);
    const s = await run(way, p, 'compare');
    t.false(s.identical);
    t.is(s.blocksDiffering, p.differing);
    t.is(s.firstDiffs[0], BS, 'block 1 is the first that differs');
    t.is(sha256(p.target), before);
    await run(way, p, 'write');
    t.true((await run(way, p, 'compare')).identical);
  },
  async '--verify'(t, way) {
    const p = fresh();
    const s = await run(way, p, 'write', { verify: true });
    t.true(s.verified);
    t.is(s.blocksWritten, p.differing);
    t.is(sha256(p.target), sha256(p.source));
  },
};

const scenario = test.macro({
  exec: (t: ExecutionContext, name: string, way: Way) => scenarios[name](t, way),
  title: (_g, name: string, way: Way) => `${name} over ${way.name}`,
});

for (const way of WAYS) for (const name of Object.keys(scenarios)) test.serial(scenario, name, way);
