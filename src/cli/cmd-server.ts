// `blkdelta server`: the remote end, speaking the protocol on stdin/stdout. Hidden from the main
// help; run by LocalTransport and by sshd (see docs/ssh.md for the authorized_keys line).
import type { CommandModule } from 'yargs';
import { ExitCode, exitStatusText } from '../errors.js';
import { checkDevice, makePolicy } from '../server-policy.js';
import { serve } from '../server.js';
import { cli } from './context.js';

interface Args {
  allow?: string[];
  'read-only'?: boolean;
}

export const serverCommand: CommandModule<object, Args> = {
  command: 'server',
  describe: false,
  builder: (y) =>
    y
      .option('allow', { type: 'string', array: true, describe: 'only these device paths (globs, * does not cross /); repeatable' })
      .option('read-only', { type: 'boolean', describe: 'refuse every write' })
      .example("blkdelta server --allow '/dev/backup/*'", 'in authorized_keys: restrict,command="..." ssh-ed25519 AAAA...')
      .epilogue('Speaks the blkdelta protocol on stdin/stdout and exits when stdin closes.\n\n' +
        exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.SOURCE, ExitCode.TARGET_REFUSED, ExitCode.IO, ExitCode.REMOTE, ExitCode.PERMISSION])),
  handler: async (argv) => {
    const policy = makePolicy(argv.allow, argv['read-only']);
    cli.exitCode = await serve(process.stdin, process.stdout, { checkDevice: (p, write) => checkDevice(policy, p, write) });
  },
};
