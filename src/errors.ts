// Errors and exit codes: one table, used by every command and shown under EXIT STATUS in --help.
// A BlkError carries the exit code of its kind and, where there is one, the underlying cause.
// Messages are short lower-case context plus the cause: "cannot open target /dev/x: device is mounted at /srv".

export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  DIFFERENT: 3,
  SOURCE: 4,
  TARGET_REFUSED: 5,
  SIZE_MISMATCH: 6,
  PATCH_INVALID: 7,
  IO: 8,
  REMOTE: 9,
  HOST_KEY: 10,
  AUTH: 11,
  PERMISSION: 12,
  SNAPSHOT: 13,
  SNAPSHOT_OVERFLOW: 14,
  CONFIG: 15,
  LOCKED: 16,
  BUSY: 17,
  VERIFY_FAILED: 18,
  HOOK: 19,
  INTERRUPTED: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** What each code means, in the order of the table; printed under EXIT STATUS. */
export const EXIT_TABLE: ReadonlyArray<[ExitCode, string]> = [
  [ExitCode.OK, 'success (verify: devices are identical)'],
  [ExitCode.INTERNAL, 'internal error (a bug: please report it)'],
  [ExitCode.USAGE, 'bad command line: unknown option, missing or invalid argument'],
  [ExitCode.DIFFERENT, 'verify / dry-run: source and target differ'],
  [ExitCode.SOURCE, 'source missing, unreadable or not a file or block device'],
  [ExitCode.TARGET_REFUSED, 'target refused: missing, mounted, busy, read-only (a file without write permission bits too), its state unreadable, or the same as the source'],
  [ExitCode.SIZE_MISMATCH, 'source and target sizes differ and the size policy does not allow it'],
  [ExitCode.PATCH_INVALID, 'patch file corrupt, truncated, or made for another target; nothing was written'],
  [ExitCode.IO, 'read or write error on a device, file or patch'],
  [ExitCode.REMOTE, 'connection or remote end failed (protocol error, remote exited, connection lost)'],
  [ExitCode.HOST_KEY, 'ssh host key unknown or changed'],
  [ExitCode.AUTH, 'ssh authentication failed'],
  [ExitCode.PERMISSION, 'refused by the server: device outside --allow, or a write with --read-only'],
  [ExitCode.SNAPSHOT, 'lvm snapshot could not be created or removed'],
  [ExitCode.SNAPSHOT_OVERFLOW, 'snapshot overflowed or became invalid: the copy is torn'],
  [ExitCode.CONFIG, 'configuration file invalid or job unknown'],
  [ExitCode.LOCKED, 'the job is already running (another process holds its lock)'],
  [ExitCode.BUSY, 'max_concurrent operations reached and --wait-timeout expired'],
  [ExitCode.VERIFY_FAILED, 're-reading a written block did not match what was sent'],
  [ExitCode.HOOK, 'a pre_run hook failed or timed out: the run was not started'],
  [ExitCode.INTERRUPTED, 'interrupted by SIGINT or SIGTERM (cleanup ran)'],
];

export class BlkError extends Error {
  readonly code: ExitCode;
  constructor(code: ExitCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlkError';
    this.code = code;
  }
}

/** A corrupt or mismatched patch/protocol input: names the field and the byte offset. */
export class FormatError extends BlkError {
  readonly field: string;
  readonly offset: number;
  constructor(field: string, offset: number, detail: string, code: ExitCode = ExitCode.PATCH_INVALID) {
    super(code, `invalid ${field} at byte ${offset}: ${detail}`);
    this.name = 'FormatError';
    this.field = field;
    this.offset = offset;
  }
}

/** The exit code for any thrown value: BlkError carries its own; anything else is a bug. */
export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof BlkError) return err.code;
  return ExitCode.INTERNAL;
}

/** A code a peer sent (ERROR frame): one of the table's failure codes, anything else REMOTE. */
export function peerExitCode(code: unknown): ExitCode {
  const known = EXIT_TABLE.some(([c]) => c === code && c !== ExitCode.OK);
  return known ? (code as ExitCode) : ExitCode.REMOTE;
}

/**
 * Text from the other host (ERROR messages, stderr tails) made safe to print: control characters
 * (terminal escapes, carriage returns that hide a line, newlines that forge one) are escaped.
 */
export function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

/** "context: cause" for system errors, keeping the errno name (ENOENT, EBUSY...) visible. */
export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const msg = err.message.replace(/^[A-Z]+: /, '');
    return typeof code === 'string' && !msg.includes(code) ? `${code}, ${msg}` : msg;
  }
  return String(err);
}

/** Formats EXIT STATUS for a command's --help epilogue. */
export function exitStatusText(codes?: readonly ExitCode[]): string {
  const rows = EXIT_TABLE.filter(([c]) => !codes || codes.includes(c));
  return 'EXIT STATUS\n' + rows.map(([c, t]) => `  ${String(c).padStart(3)}  ${t}`).join('\n');
}
