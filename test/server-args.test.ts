// `blkdelta server` parses its few options without yargs (it starts for every sync): same grammar.
import test from 'ava';
import { parseServerArgs } from '../src/cli/cmd-server.js';
import { ExitCode } from '../src/errors.js';

const ok = test.macro({
  exec: (t, args: string[], want: { allow: string[]; readOnly: boolean }) => t.deepEqual(parseServerArgs(args), want),
  title: (_p, args: string[]) => `server ${args.join(' ') || '(no options)'}`,
});
test(ok, [], { allow: [], readOnly: false });
test(ok, ['--read-only'], { allow: [], readOnly: true });
test(ok, ['--allow', '/dev/backup/*'], { allow: ['/dev/backup/*'], readOnly: false });
test(ok, ['--allow', '/dev/a/*', '/dev/b/*', '--read-only'], { allow: ['/dev/a/*', '/dev/b/*'], readOnly: true });
test(ok, ['--allow=/dev/a/*', '--allow', '/dev/b/x'], { allow: ['/dev/a/*', '/dev/b/x'], readOnly: false });

const bad = test.macro({
  exec(t, args: string[], message: RegExp) {
    const err = t.throws(() => parseServerArgs(args));
    t.is((err as { code?: number }).code, ExitCode.USAGE);
    t.regex(err!.message, message);
  },
  title: (_p, args: string[]) => `server ${args.join(' ')} is a usage error`,
});
test(bad, ['--frob'], /unknown argument "--frob"/);
test(bad, ['/dev/sda'], /unknown argument "\/dev\/sda"/);
test(bad, ['--allow'], /--allow needs a device path glob/);
test(bad, ['--allow', '--read-only'], /--allow needs a device path glob/);
