// A job with a remote end, run by `blkdelta run` over a real OpenSSH sshd on 127.0.0.1 (its own
// host key, user key and known_hosts; the remote command is this checkout's bin/blkdelta).
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { ExitCode } from '../src/errors.js';
import { jobsEnv, readState, runBlkdelta } from './helpers/jobs.js';
import { BLKDELTA_BIN, startSshd } from './helpers/sshd.js';

test('push and pull jobs over ssh: records say success, images equal; a wrong host key fails HOST_KEY', async (t) => {
  const sshd = await startSshd();
  t.teardown(() => sshd.stop());
  const env = jobsEnv(t, ['push', 'pull'], { size: 1024 * 1024 });
  const ssh = `ssh = { port = ${sshd.port}, identity = "${sshd.userKey.privatePath}", known_hosts = "${sshd.knownHosts}", remote_cmd = "${BLKDELTA_BIN}" }`;
  let toml = readFileSync(env.config, 'utf8');
  toml = toml.replace(`target = "${env.image('push', 'dst')}"`, `target = "${sshd.user}@127.0.0.1:${env.image('push', 'dst')}"\n${ssh}`);
  toml = toml.replace(`source = "${env.image('pull', 'src')}"`, `source = "${sshd.user}@127.0.0.1:${env.image('pull', 'src')}"\n${ssh}`);
  writeFileSync(env.config, toml);

  for (const job of ['push', 'pull']) {
    const r = await runBlkdelta(['run', job, '--config', env.config]);
    t.is(r.code, ExitCode.OK, r.stderr);
    const rec = readState(env, job).runs[0]!;
    t.is(rec.outcome, 'success');
    t.is(rec.bytes!.compared, 1024 * 1024);
    t.deepEqual(readFileSync(env.image(job, 'dst')), readFileSync(env.image(job, 'src')));
  }

  writeFileSync(sshd.knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.userKey.publicLine.split(' ').slice(0, 2).join(' ')}\n`);
  const bad = await runBlkdelta(['run', 'push', '--config', env.config]);
  t.is(bad.code, ExitCode.HOST_KEY, bad.stderr);
  const rec = readState(env, 'push').runs[0]!;
  t.is(rec.outcome, 'failed');
  t.is(rec.exitCode, ExitCode.HOST_KEY);
  t.is(rec.targetState, 'consistent');
});
