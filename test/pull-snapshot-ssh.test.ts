// A pull job with `snapshot = true` over a real OpenSSH sshd on 127.0.0.1: the HELLO asking the
// server for a source snapshot crosses real ssh, and the server refuses before it creates
// anything (this host has no device-mapper; the snapshot itself is tested in test/pool-vm.test.ts).
// Each refusal is recorded by the job with its exit code, the target is untouched, check is CRITICAL.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { ExitCode } from '../src/errors.js';
import { jobsEnv, readState, runBlkdelta } from './helpers/jobs.js';
import { BLKDELTA_BIN, startSshd } from './helpers/sshd.js';

const refusal = test.macro({
  async exec(t: ExecutionContext, forced: string, code: number, words: RegExp) {
    const sshd = await startSshd();
    t.teardown(() => sshd.stop());
    if (forced) sshd.setAuthorized([`restrict,command="${process.execPath} ${BLKDELTA_BIN} server ${forced}"`]);
    const env = jobsEnv(t, ['pull'], { size: 256 * 1024 });
    const ssh = `ssh = { port = ${sshd.port}, identity = "${sshd.userKey.privatePath}", known_hosts = "${sshd.knownHosts}", remote_cmd = "${process.execPath} ${BLKDELTA_BIN}" }`;
    const toml = readFileSync(env.config, 'utf8')
      .replace(`source = "${env.image('pull', 'src')}"`, `source = "${sshd.user}@127.0.0.1:/dev/blkdelta-test-novg/data"\nsnapshot = true\n${ssh}`);
    writeFileSync(env.config, toml);
    const before = readFileSync(env.image('pull', 'dst'));

    const r = await runBlkdelta(['run', 'pull', '--config', env.config]);
    t.is(r.code, code, r.stderr);
    t.regex(r.stderr, words);
    const rec = readState(env, 'pull').runs[0]!;
    t.like(rec, { outcome: 'failed', exitCode: code, targetState: 'consistent' });
    t.regex(rec.error ?? '', words);
    t.is(rec.snapshot, undefined, 'no snapshot was made, so none is recorded');
    t.deepEqual(readFileSync(env.image('pull', 'dst')), before, 'the target is untouched');
    const check = await runBlkdelta(['check', 'pull', '--config', env.config]);
    t.is(check.code, 2, check.stdout);
    t.regex(check.stdout, new RegExp(`^BLKDELTA CRITICAL - pull: last run failed .*\\(exit ${code}\\)`, 's')); // lvs stderr may span lines
  },
  title: (title) => `pull job with snapshot = true over ssh: ${title}`,
});

test('a forced command with --allow and no [server.source_snapshot] refuses (exit 12)', refusal,
  "--allow '/dev/blkdelta-test-novg/*'", ExitCode.PERMISSION,
  /refused by the server: it has no \[server.source_snapshot\] policy, so a pull cannot snapshot \/dev\/blkdelta-test-novg\/data here/);
test('a forced command whose --allow list leaves the origin out refuses (exit 12)', refusal,
  "--allow '/dev/backup/*'", ExitCode.PERMISSION, /device \/dev\/blkdelta-test-novg\/data is outside the server's --allow list/);
test('a plain server without that volume group refuses (exit 4)', refusal,
  '', ExitCode.SOURCE, /source volume group blkdelta-test-novg not found/);
