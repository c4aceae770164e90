// The Transport contract: how the client reaches the other end of a sync, which is always
// `blkdelta server` speaking the wire protocol (docs/protocol.md) over a pair of byte streams.
// LocalTransport spawns it as a child process; SshTransport runs it over an ssh2 exec channel;
// RshTransport runs it through an external command such as `ssh -p 2222 host`.
import type { Readable, Writable } from 'node:stream';

/**
 * How long close() waits for the server's exit status after the end of its input, unless the
 * caller sets closeTimeoutMs. The server has nothing left to do by then but exit, yet a loaded
 * host can take seconds to schedule it: 10 s proved too short on a loaded 2-core machine.
 */
export const CLOSE_TIMEOUT_MS = 30_000;

/**
 * p, or undefined after ms. The timer is not unref'd on purpose: a close() awaiting it must keep
 * the process alive (an empty event loop would end the process with status 0 mid-cleanup).
 * A loaded host can stall this process for longer than ms; when it runs again, timers fire before
 * pending I/O is read. So the time is up only after one more turn of the loop (setImmediate runs
 * after the poll phase): an exit status that arrived during the stall wins over the timer.
 */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let turn: NodeJS.Immediate | undefined;
  const late = new Promise<undefined>((r) => (timer = setTimeout(() => (turn = setImmediate(() => r(undefined))), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
    clearImmediate(turn);
  }
}

export interface Channel {
  /** Bytes from the server (its stdout). Ends when the server exits or the connection drops. */
  readonly input: Readable;
  /** Bytes to the server (its stdin). Ending it tells the server to exit. */
  readonly output: Writable;
  /** The last few KiB the server wrote to stderr: shown when the server fails. */
  stderrTail(): string;
  /**
   * Ends the server's stdin and waits for it to exit (the server exits on stdin EOF), then
   * releases the connection. Kills the server / drops the connection after a grace period.
   * Never throws; safe to call twice. Resolves to the server's exit code (null if unknown).
   */
  close(): Promise<number | null>;
}

export interface Transport {
  /** A short description for messages, e.g. "local" or "ssh backup@host:22". */
  readonly label: string;
  /**
   * Starts the server end and returns its channel. Throws BlkError: REMOTE when the server
   * cannot be started, HOST_KEY / AUTH for SSH refusals. The signal aborts a pending open.
   */
  open(signal?: AbortSignal): Promise<Channel>;
}
