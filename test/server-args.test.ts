// `blkdelta server` parses its few options without yargs (it starts for every sync): same grammar.
import test from 'ava';
import { parseServerArgs, type ServerArgs } from '../src/cli/cmd-server.js';
import { ExitCode } from '../src/errors.js';

const ok = test.macro({
  exec: (t, args: string[], want: ServerArgs) => t.deepEqual(parseServerArgs(args), want),
  title: (_p, args: string[]) => `server ${args.join(' ') || '(no options)'}`,
});
test(ok, [], { allow: [], readOnly: false });
test(ok, ['--read-only'], { allow: [], readOnly: true });
test(ok, ['--allow', '/dev/backup/*'], { allow: ['/dev/backup/*'], readOnly: false });
test(ok, ['--allow', '/dev/a/*', '/dev/b/*', '--read-only'], { allow: ['/dev/a/*', '/dev/b/*'], readOnly: true });
test(ok, ['--allow=/dev/a/*', '--allow', '/dev/b/x'], { allow: ['/dev/a/*', '/dev/b/x'], readOnly: false });
test(ok, ['--config', '/etc/blkdelta/server.toml'], { config: '/etc/blkdelta/server.toml', allow: [], readOnly: false });
test(ok, ['--config=s.toml', '--read-only'], { config: 's.toml', allow: [], readOnly: true });
test(ok, ['--max-concurrent', '1', '--wait-timeout', '0'], { allow: [], readOnly: false, maxConcurrent: 1, waitTimeout: 0 });
test(ok, ['--max-concurrent=64', '--wait-timeout=1h30m', '--state-dir=/run/b'], { allow: [], readOnly: false, maxConcurrent: 64, waitTimeout: 5400, stateDir: '/run/b' });
test(ok, ['--wait-timeout', '7d'], { allow: [], readOnly: false, waitTimeout: 604800 });

const bad = test.macro({
  exec(t, args: string[], message: RegExp) {
    const err = t.throws(() => parseServerArgs(args));
    t.is((err as { code?: number }).code, ExitCode.USAGE);
    t.regex(err!.message, message);
  },
  title: (_p, args: string[]) => `server ${JSON.stringify(args)} is a usage error`,
});
test(bad, ['--frob'], /unknown argument "--frob"/);
test(bad, ['/dev/sda'], /unknown argument "\/dev\/sda"/);
test(bad, ['--allow'], /--allow needs a device path glob/);
test(bad, ['--allow', '--read-only'], /--allow needs a device path glob/);
test(bad, ['--allow='], /an empty --allow glob is an error/);
test(bad, ['--allow', ''], /an empty --allow glob is an error/);
test(bad, ['--allow', '/dev/a/*', ''], /an empty --allow glob is an error/);
test(bad, ['--config'], /--config needs a value/);
test(bad, ['--config='], /--config needs a value/);
test(bad, ['--config', '--read-only'], /--config needs a value/);
test(bad, ['--max-concurrent'], /--max-concurrent needs a value/);
test(bad, ['--max-concurrent', '0'], /--max-concurrent must be a whole number from 1 to 64, got "0"/);
test(bad, ['--max-concurrent', '-1'], /--max-concurrent must be a whole number from 1 to 64, got "-1"/);
test(bad, ['--max-concurrent', '65'], /--max-concurrent must be a whole number from 1 to 64, got "65"/);
test(bad, ['--max-concurrent', '1.5'], /--max-concurrent must be a whole number from 1 to 64, got "1.5"/);
test(bad, ['--max-concurrent', 'two'], /--max-concurrent must be a whole number from 1 to 64, got "two"/);
test(bad, ['--max-concurrent', '99999999999999999999'], /--max-concurrent must be a whole number from 1 to 64/);
test(bad, ['--wait-timeout', 'soon'], /--wait-timeout: "soon" is not a duration/);
test(bad, ['--wait-timeout', '-5'], /--wait-timeout: "-5" is not a duration/);
test(bad, ['--wait-timeout=-5'], /--wait-timeout: "-5" is not a duration/);
test(bad, ['--wait-timeout', '8d'], /--wait-timeout "8d" is above the maximum of 7 days/);
test(bad, ['--wait-timeout='], /--wait-timeout: "" is not a duration/);
test(bad, ['--state-dir', 'var/lib'], /--state-dir "var\/lib" is not an absolute path/);
test(bad, ['--state-dir='], /--state-dir needs a value/);
test(bad, ['--read-only=yes'], /unknown argument "--read-only=yes"/);
