import test from 'ava';
import type { ExecutionContext } from 'ava';
import { parseEndpoint, formatRemote, type Endpoint } from '../src/transport/address.js';
import { BlkError, ExitCode } from '../src/errors.js';

const parses = test.macro({
  exec(t: ExecutionContext, input: string, expected: Endpoint) {
    t.deepEqual(parseEndpoint(input), expected);
  },
  title: (given, input: string) => given ?? `parses ${JSON.stringify(input)}`,
});

const rejects = test.macro({
  exec(t: ExecutionContext, input: string, fragment: string) {
    const err = t.throws(() => parseEndpoint(input), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.USAGE);
    t.true(err?.message.includes(fragment), err?.message);
    t.true(err?.message.includes(input), 'the message names the address');
  },
  title: (given, input: string) => given ?? `rejects ${JSON.stringify(input)}`,
});

const local = (path: string): Endpoint => ({ kind: 'local', path });

test(parses, '/dev/vg/lv', local('/dev/vg/lv'));
test(parses, './img:with:colons', local('./img:with:colons'));
test(parses, '../a:b', local('../a:b'));
test(parses, '/tmp/x:y', local('/tmp/x:y'));
test(parses, 'image.raw', local('image.raw'));
test(parses, 'dir/a:b', local('dir/a:b'));
test(parses, 'user@nohost', local('user@nohost'));
test(parses, 'host:/dev/x', { kind: 'remote', host: 'host', path: '/dev/x' });
test(parses, 'backup@store2:/dev/backup/lv', { kind: 'remote', user: 'backup', host: 'store2', path: '/dev/backup/lv' });
test(parses, 'me@host:/a:b', { kind: 'remote', user: 'me', host: 'host', path: '/a:b' });
test(parses, '[::1]:/dev/x', { kind: 'remote', host: '::1', path: '/dev/x' });
test(parses, 'root@[fe80::1]:/dev/x', { kind: 'remote', user: 'root', host: 'fe80::1', path: '/dev/x' });
test(parses, '127.0.0.1:/tmp/a;touch pwned', { kind: 'remote', host: '127.0.0.1', path: '/tmp/a;touch pwned' });
test(parses, 'ssh://backup@store2:2222/dev/backup/lv', { kind: 'remote', user: 'backup', host: 'store2', port: 2222, path: '/dev/backup/lv' });
test(parses, 'ssh://store2/dev/x', { kind: 'remote', host: 'store2', path: '/dev/x' });
test(parses, 'ssh://[::1]:22/dev/x', { kind: 'remote', host: '::1', port: 22, path: '/dev/x' });
test(parses, 'ssh://[::1]/dev/x', { kind: 'remote', host: '::1', path: '/dev/x' });
test(parses, 'ssh://u@h/dev/with%20space', { kind: 'remote', user: 'u', host: 'h', path: '/dev/with space' });

test(rejects, '', 'empty');
test(rejects, 'host:', 'no device path');
test(rejects, 'host:relative/img', 'must be absolute');
test(rejects, '@host:/dev/x', 'empty user');
test(rejects, '[::1/dev/x', "missing ']'");
test(rejects, '[::1]/dev/x', "expected ':'");
test(rejects, 'ssh://host', 'no device path');
test(rejects, 'ssh://host:99999/dev/x', 'bad port');
test(rejects, 'ssh://host:abc/dev/x', 'bad port');
test(rejects, 'ssh://:22/dev/x', 'empty host');
test(rejects, '-oProxyCommand=x:/dev/x', "bad host name \"-oProxyCommand=x\" (it starts with '-'");
test(rejects, '-oProxyCommand=x@host:/dev/x', "bad user name \"-oProxyCommand=x\": it starts with '-'");
test(rejects, 'ssh://-oProxyCommand=x@host/x', "bad user name \"-oProxyCommand=x\"");
test(rejects, 'ssh://%2DoProxyCommand=x@host/x', "bad user name \"-oProxyCommand=x\"");
test(rejects, 'ssh://u@-oProxyCommand=x/x', "bad host name \"-oProxyCommand=x\"");
test(rejects, 'u@-h:/dev/x', "bad host name \"-h\"");
test(rejects, '-l:/dev/x', "bad host name \"-l\"");
test(rejects, 'ssh://h/dev/%zz', 'bad %-escape');

test('formatRemote brackets IPv6 and shows user and port', (t) => {
  t.is(formatRemote({ kind: 'remote', user: 'b', host: '::1', port: 2222, path: '/x' }), 'b@[::1]:2222');
  t.is(formatRemote({ kind: 'remote', host: 'h', path: '/x' }), 'h');
});
