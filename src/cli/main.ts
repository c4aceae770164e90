// Entry point: parses the command line with yargs, runs one command, maps errors to exit codes.
// SIGINT/SIGTERM abort cli.abort instead of exiting, so cleanup (snapshots, locks) always runs.
import type { CommandModule } from 'yargs';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { log } from '../log.js';
import { cli } from './context.js';
import { commandsFor } from './commands.js';

/**
 * A reader that went away (`blkdelta status | head -1`) is no failure of the command: the rest of
 * its output is dropped and the exit status stays the command's. Other stdout errors are logged.
 */
function onStdoutError(err: NodeJS.ErrnoException): void {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') log.error(`cannot write to stdout: ${err.message}`);
}

export async function main(args: string[]): Promise<number> {
  const onSignal = (sig: NodeJS.Signals) => {
    if (cli.abort.signal.aborted) {
      log.warn(`${sig} again: cleanup is still running; SIGKILL forces exit and may leave a snapshot`);
      return;
    }
    log.warn(`${sig} received: aborting, cleaning up`);
    cli.abort.abort(new BlkError(ExitCode.INTERRUPTED, `interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (args[0] === 'server' && !args.includes('--help')) return await (await import('./cmd-server.js')).serverMain(args.slice(1));
    process.stdout.on('error', onStdoutError); // not for the server: stdout is its protocol channel
    const { default: yargs } = await import('yargs');
    let parser = yargs(args)
      .scriptName('blkdelta')
      .usage('blkdelta <command> [options]\n\nBlock-device delta replication: both ends hash their blocks, only differing blocks travel.')
      .strict()
      .demandCommand(1, 'name a command')
      .recommendCommands()
      .wrap(Math.min(110, process.stdout.columns || 100))
      .fail((msg, err) => {
        throw err ?? new BlkError(ExitCode.USAGE, msg);
      })
      .help()
      .version()
      .exitProcess(false);
    for (const c of (await commandsFor(args)) as CommandModule[]) parser = parser.command(c);
    await parser.parseAsync();
    return cli.exitCode;
  } catch (err) {
    const code = exitCodeOf(err);
    if (code === ExitCode.INTERNAL) log.error(`internal error: ${(err as Error)?.stack ?? String(err)}`);
    else log.error(describe(err));
    if (code === ExitCode.USAGE) log.info('see blkdelta --help, or blkdelta <command> --help');
    return code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
