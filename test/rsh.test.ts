import test from 'ava';
import type { ExecutionContext } from 'ava';
import { BlkError, ExitCode } from '../src/errors.js';
import { transportFor, type RemoteArgs } from '../src/transport/connect.js';
import { RshTransport, rshArgv, splitWords } from '../src/transport/rsh.js';
import { SshTransport } from '../src/transport/ssh.js';
import { serverCommand } from '../src/transport/remote-end.js';
import { runBlkdelta } from './helpers/jobs.js';

const splits = test.macro({
  exec(t: ExecutionContext, line: string, words: string[]) {
    t.deepEqual(splitWords(line), words);
  },
  title: (_g, line: string) => `splitWords(${JSON.stringify(line)})`,
});
const splitFails = test.macro({
  exec(t: ExecutionContext, line: string, fragment: string) {
    const err = t.throws(() => splitWords(line), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes('--rsh'), err?.message);
    t.true(err?.message.includes(fragment), err?.message);
  },
  title: (_g, line: string) => `splitWords rejects ${JSON.stringify(line)}`,
});

test(splits, 'ssh', ['ssh']);
test(splits, '  ssh   -p 2222  ', ['ssh', '-p', '2222']);
test(splits, 'ssh -o "ProxyJump=admin@gw" -i ~/.ssh/k', ['ssh', '-o', 'ProxyJump=admin@gw', '-i', '~/.ssh/k']);
test(splits, "ssh -o 'ProxyCommand=nc -X 5 %h %p'", ['ssh', '-o', 'ProxyCommand=nc -X 5 %h %p']);
test(splits, 'ssh -F "/etc/my ssh/config"', ['ssh', '-F', '/etc/my ssh/config']);
test(splits, 'a"b c"d', ['ab cd']);
test(splits, "a''", ['a']);
test(splits, "'' x", ['', 'x']);
test(splits, 'a\\ b', ['a b']);
test(splits, '"say \\"hi\\" \\$HOME \\n"', ['say "hi" $HOME \\n']);
test(splits, "'$(rm -rf /)' ;", ['$(rm -rf /)', ';']);
test(splits, 'ssh\t-p\n2222', ['ssh', '-p', '2222']);
test(splitFails, '', 'empty');
test(splitFails, '   ', 'empty');
test(splitFails, 'ssh -o "unterminated', 'unterminated');
test(splitFails, "ssh 'x", 'unterminated');
test(splitFails, 'ssh \\', 'backslash');

test('rshArgv puts port, user@host and the server command last, the path nowhere', (t) => {
  t.deepEqual(rshArgv({ rsh: 'ssh -o BatchMode=yes', host: 'store2', user: 'backup', port: 2222, remoteCmd: '/opt/blkdelta/bin/blkdelta' }),
    ['ssh', '-o', 'BatchMode=yes', '-p', '2222', '--', 'backup@store2', '/opt/blkdelta/bin/blkdelta server']);
  t.deepEqual(rshArgv({ rsh: 'ssh', host: 'h' }), ['ssh', '--', 'h', 'blkdelta server']);
  t.is(serverCommand(), 'blkdelta server');
});

const remote = { kind: 'remote' as const, host: 'store2', user: 'backup', port: 2222, path: '/dev/backup/vm1' };

test('transportFor: ssh2 by default, --rsh when given', async (t) => {
  const ssh = await transportFor(remote, { 'connect-timeout': 5 });
  t.true(ssh instanceof SshTransport);
  t.is(ssh.label, 'ssh backup@store2:2222');
  const rsh = await transportFor(remote, { rsh: 'ssh -o BatchMode=yes' });
  t.true(rsh instanceof RshTransport);
  t.is(rsh.label, 'ssh backup@store2');
  t.is((await transportFor({ kind: 'remote', host: '::1', path: '/x' }, {})).label.endsWith('@[::1]:22'), true);
});

const usage = test.macro({
  async exec(t: ExecutionContext, args: RemoteArgs, fragment: string) {
    const err = await t.throwsAsync(() => transportFor(remote, args), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes(fragment), err?.message);
  },
  title: (_g, args: RemoteArgs) => `transportFor rejects ${JSON.stringify(args)}`,
});

test(usage, { bwlimit: 'fast' }, '--bwlimit "fast"');
test(usage, { bwlimit: '-1' }, '--bwlimit');
test(usage, { rsh: 'ssh "x' }, '--rsh');
test(usage, { 'remote-cmd': '  ' }, '--remote-cmd');
test(usage, { 'connect-timeout': 0 }, '--connect-timeout');
test(usage, { 'connect-timeout': Number.NaN }, '--connect-timeout');

test('CLI: bad --bwlimit, bad --rsh quoting and --rsh with --identity are usage errors (exit 2)', async (t) => {
  const cases: [string[], string][] = [
    [['--bwlimit', 'fast'], '--bwlimit'],
    [['--rsh', 'ssh "x'], '--rsh'],
    [['--rsh', 'ssh', '-i', '/k'], 'cannot be used together'],
  ];
  for (const [args, fragment] of cases) {
    const r = await runBlkdelta(['sync', ...args, '/tmp/none-src.img', 'store2:/dev/backup/x']);
    t.is(r.code, ExitCode.USAGE, `${args.join(' ')}: ${r.stderr}`);
    t.true(r.stderr.includes(fragment), r.stderr);
  }
});
