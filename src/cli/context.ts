// State shared by the command handlers and main(): the run's abort signal (SIGINT/SIGTERM abort
// it so that every finally block runs) and the exit code a handler chose.
import { ExitCode } from '../errors.js';

export const cli = {
  exitCode: ExitCode.OK as number,
  abort: new AbortController(),
};

/** Prints a line to stdout (results; logs go to stderr). */
export function out(line: string): void {
  process.stdout.write(line + '\n');
}
