// Logging to stderr. Under systemd (JOURNAL_STREAM set, stderr not a TTY) each line carries a
// sd-daemon priority prefix (<3> error, <4> warning, <6> info, <7> debug) so the journal keeps
// levels; elsewhere lines start with "blkdelta: ". One event per line, never multi-line.

let quiet = false;
let debugOn = !!process.env.BLKDELTA_DEBUG;

export function setLogLevel(opts: { quiet?: boolean; debug?: boolean }): void {
  quiet = !!opts.quiet;
  debugOn = !!opts.debug || debugOn;
}

function journald(): boolean {
  return !!process.env.JOURNAL_STREAM && !process.stderr.isTTY;
}

let beforeLine: (() => void) | undefined;

/** A function run before each log line (the TTY progress bar clears itself); undefined to remove. */
export function setBeforeLog(fn: (() => void) | undefined): void {
  beforeLine = fn;
}

function emit(prio: number, label: string, msg: string): void {
  beforeLine?.();
  const oneLine = msg.replace(/\s*\n\s*/g, ' | ');
  process.stderr.write(journald() ? `<${prio}>${oneLine}\n` : `blkdelta: ${label}${oneLine}\n`);
}

export const log = {
  error: (msg: string) => emit(3, 'error: ', msg),
  warn: (msg: string) => emit(4, 'warning: ', msg),
  info: (msg: string) => { if (!quiet) emit(6, '', msg); },
  debug: (msg: string) => { if (debugOn) emit(7, 'debug: ', msg); },
};
