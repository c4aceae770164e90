// State shared by the command handlers and main(): the run's abort signal (SIGINT/SIGTERM abort
// it so that every finally block runs), and the writers of results on stdout. A handler returns
// its exit code (or nothing for 0) or throws; main() alone turns that into the process's status.
import type { ArgumentsCamelCase, CommandModule } from 'yargs';
import { EXIT_TABLE, type ExitCode } from '../errors.js';

/** A command module whose handler returns its exit code (nothing: 0) or throws. */
export type Command<A> = Omit<CommandModule<object, A>, 'handler'> & {
  handler(argv: ArgumentsCamelCase<A>): number | void | Promise<number | void>;
};

export const cli = {
  abort: new AbortController(),
};

/** Prints a line to stdout (results; logs go to stderr). */
export function out(line: string): void {
  process.stdout.write(line + '\n');
}

/** The version of every JSON document blkdelta prints (docs/json.md); raised on incompatible changes. */
export const JSON_VERSION = 1;

/** A JSON result on stdout: `{"version": 1, ...body}`, pretty-printed. */
export function outJson(body: object): void {
  out(JSON.stringify({ version: JSON_VERSION, ...body }, null, 2));
}

/** What --json prints on stdout when a command fails (docs/json.md, "error"). */
export function jsonError(code: ExitCode | number, message: string) {
  const meaning = EXIT_TABLE.find(([c]) => c === code)?.[1];
  return { version: JSON_VERSION, error: { exitCode: code, message, meaning } };
}

/** A summary for JSON: durations in seconds (`durationS`, like the records), never milliseconds. */
export function inSeconds<T extends { durationMs: number }>(s: T): Omit<T, 'durationMs'> & { durationS: number } {
  const { durationMs, ...rest } = s;
  return { ...rest, durationS: Math.round(durationMs) / 1000 };
}
