// Entry point: parses the command line with yargs, runs one command, maps errors to exit codes.
// SIGINT/SIGTERM abort cli.abort instead of exiting, so cleanup (snapshots, locks) always runs.
// The command table and yargs (yargs-load.ts, with node:assert and node:util) load only when a
// command line is parsed: `blkdelta server` parses its own and never loads them.
import type { CommandModule } from 'yargs';
import { BlkError, ExitCode, describe, exitCodeOf } from '../errors.js';
import { log } from '../log.js';
import { cli, jsonError, out } from './context.js';
import { asksHelp, explainUsage, notANumber } from './usage.js';
import type { YargsFn } from './yargs-load.js';

/**
 * A reader that went away (`blkdelta status | head -1`) is no failure of the command: the rest of
 * its output is dropped and the exit status stays the command's. Other stdout errors are logged.
 */
function onStdoutError(err: NodeJS.ErrnoException): void {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') log.error(`cannot write to stdout: ${err.message}`);
}

export async function main(args: string[]): Promise<number> {
  let settled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (settled) return; // the command is over: its exit status stands
    if (cli.abort.signal.aborted) {
      log.warn(`${sig} again: cleanup is still running; SIGKILL forces exit and may leave a snapshot`);
      return;
    }
    log.warn(`${sig} received: aborting, cleaning up`);
    cli.abort.abort(new BlkError(ExitCode.INTERRUPTED, `interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const local = prestartsServer(args) ? await import('../transport/local.js') : undefined;
  local?.prestartServer();
  try {
    if (args[0] === 'server' && !args.some((a) => a === '--help' || a === '-h')) return await (await import('./cmd-server.js')).serverMain(args.slice(1));
    process.stdout.on('error', onStdoutError); // not for the server: stdout is its protocol channel
    return await parse(args);
  } catch (err) {
    return report(err, args);
  } finally {
    await local?.dropPrestarted();
    // The handlers stay installed: removing the last one restores the default action, and a
    // SIGTERM in the moment before bin/blkdelta installed its own killed a finished run with no
    // exit status (its record said success; seen in jobs-run's random kills on a loaded machine).
    settled = true;
  }
}

/**
 * Whether this command line is a local sync, whose server can start while this process loads:
 * `sync` with no "host:" anywhere (a remote end, --snapshot host:VG/LV) and no help asked. A
 * doubt only costs the overlap.
 */
export function prestartsServer(args: readonly string[]): boolean {
  return args[0] === 'sync' && !args.some((a) => a.includes(':') || a === '--version' || a === '-V') && !asksHelp(args);
}

/**
 * Runs the command the args name and returns its exit code: a handler returns its code (or
 * nothing for 0) or throws; this is the only place that turns either into the process's status.
 */
async function parse(args: string[]): Promise<number> {
  const { COMMANDS, commandsFor } = await import('./commands.js');
  const name = args.find((a) => !a.startsWith('-'));
  if (name !== undefined && args[0] === name && !(name in COMMANDS)) {
    throw new BlkError(ExitCode.USAGE, `unknown command "${name}" (commands: ${Object.keys(COMMANDS).filter((c) => c !== 'server').join(', ')})`);
  }
  const yargsLoad = import('./yargs-load.js'); // while the command's module loads
  yargsLoad.catch(() => undefined); // awaited below; a command module that fails first must not leave it unhandled
  const commands = (await commandsFor(args)) as CommandModule[];
  const spec = commands.length === 1 ? specOf(commands[0]!, args) : undefined;
  const help = asksHelp(args);
  const { HelpNeeded, loadYargs } = await yargsLoad;
  let started = false;
  try {
    return await parseWith(await loadYargs(help), args, commands, spec, () => (started = true));
  } catch (err) {
    // The light yargs met a way of asking for help that asksHelp() missed: no handler has run
    // (help is rendered instead of one), so the same command line is parsed with the full yargs.
    if (!(err instanceof HelpNeeded) || help) throw err;
    if (started) throw new Error('yargs asked for its help text after the command had started', { cause: err });
    return parseWith(await loadYargs(true), args, commands, spec, () => undefined);
  }
}

async function parseWith(yargs: YargsFn, args: string[], commands: CommandModule[], spec: string | undefined, onStart: () => void): Promise<number> {
  let code: number = ExitCode.OK;
  let parser = yargs(args)
    .scriptName('blkdelta')
    .usage('blkdelta <command> [options]\n\nBlock-device delta replication: both ends hash their blocks, only differing blocks travel.')
    .strict()
    .demandCommand(1, 'name a command (blkdelta --help lists them)')
    .recommendCommands()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // yargs' own validation errors (YError) are the command line's fault, like its messages
      throw err && err.name !== 'YError' ? err : new BlkError(ExitCode.USAGE, explainUsage(err?.message ?? msg, { args, spec }));
    })
    .middleware((argv) => {
      const nan = notANumber(argv, args);
      if (nan) throw new BlkError(ExitCode.USAGE, nan);
    }, false)
    .help().alias('help', 'h')
    .version().alias('version', 'V')
    .exitProcess(false);
  for (const c of commands) parser = parser.command(withResult(c, onStart, (r) => { code = r; }));
  // yargs would render its help text for its cache once the handler has started: light, too late
  const { HelpNeeded, isLight, skipHelpCache } = await import('./yargs-load.js'); // loaded by parse() already
  if (!skipHelpCache(parser) && isLight(yargs)) throw new HelpNeeded();
  await parser.parseAsync();
  return code;
}

/** The command with its handler's returned exit code (undefined: 0) handed to `done`; `start` when the handler begins. */
function withResult(c: CommandModule, start: () => void, done: (code: number) => void): CommandModule {
  const handler = c.handler;
  return {
    ...c,
    handler: async (argv) => {
      start();
      done(((await handler(argv)) as unknown as number | undefined) ?? ExitCode.OK);
    },
  };
}

/**
 * The spec of the command being run ("verify <src> <dst>"); for a command with actions (history,
 * snapshots) the action's ("history list <job>"). An action it does not have is refused here,
 * naming the actions, before yargs mistakes the words after it for unknown options.
 */
function specOf(c: CommandModule, args: readonly string[]): string | undefined {
  const spec = typeof c.command === 'string' ? c.command : undefined;
  const actions = (c as { actions?: readonly string[] }).actions;
  if (!spec || !actions) return spec;
  const word = args[1];
  const action = actions.find((a) => a.split(' ')[0] === word);
  if (action) return `${spec} ${action}`;
  if (word !== undefined && !word.startsWith('-')) {
    throw new BlkError(ExitCode.USAGE, `${spec}: unknown action "${word}" (actions: ${actions.map((a) => a.split(' ')[0]).join(', ')})`);
  }
  return spec;
}

/** The error on stderr (and as an object on stdout with --json); returns its exit code. */
function report(err: unknown, args: readonly string[]): number {
  const code = exitCodeOf(err);
  if (code === ExitCode.INTERNAL) log.error(`internal error: ${(err as Error)?.stack ?? String(err)}`);
  else log.error(describe(err));
  if (code === ExitCode.USAGE) log.info('see blkdelta --help, or blkdelta <command> --help');
  if (args.includes('--json')) out(JSON.stringify(jsonError(code, describe(err))));
  return code;
}
