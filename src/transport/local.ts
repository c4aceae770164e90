// LocalTransport: runs `blkdelta server` as a child process of this one, so that a local sync
// speaks exactly the protocol an SSH sync does, and both ends hash on their own core.
// prestartServer() starts that child as `blkdelta sync` begins, before this process has loaded
// and parsed anything, so both start-ups overlap (~0.2 s of a sync's wall: issue 13); open()
// takes it. One that nothing took is SIGKILLed by dropPrestarted() (it has read no frame, so it
// holds nothing) before this process exits.
// Interrupted: close() ends the child's stdin (the server exits on EOF, after its own cleanup:
// a grown target truncated back, temp files removed), then kills it when it has not exited
// within closeTimeoutMs (the caller's deadline; default CLOSE_TIMEOUT_MS, 30 s); no child outlives the run.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BlkError, ExitCode } from '../errors.js';
import { CLOSE_TIMEOUT_MS, type Channel, type Transport } from './transport.js';

/** bin/blkdelta of this installation (dist/src/transport/local.js → ../../../bin/blkdelta). */
export const BIN_PATH = fileURLToPath(new URL('../../../bin/blkdelta', import.meta.url));
const STDERR_TAIL = 8192;

export interface LocalOptions {
  /** How long close() waits for the server to exit after its stdin ends, then SIGKILL. */
  closeTimeoutMs?: number;
}

export class LocalTransport implements Transport {
  readonly label = 'local server';
  constructor(private readonly args: string[] = [], private readonly opts: LocalOptions = {}) {}

  async open(signal?: AbortSignal): Promise<Channel> {
    signal?.throwIfAborted();
    const server = (this.args.length === 0 && takePrestarted()) || startServer(this.args);
    await server.started;
    return childChannel(server.child, STDERR_TAIL, this.opts.closeTimeoutMs ?? CLOSE_TIMEOUT_MS);
  }
}

interface Started { child: ChildProcess; started: Promise<void> }

function startServer(args: string[]): Started {
  // The server speaks no TLS: without NODE_EXTRA_CA_CERTS, Node does not parse a CA bundle at its start-up (bin/blkdelta).
  const { NODE_EXTRA_CA_CERTS: _unused, ...env } = process.env;
  const child = spawn(process.execPath, ['--max-semi-space-size=1', BIN_PATH, 'server', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  const started = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new BlkError(ExitCode.REMOTE, `cannot start ${BIN_PATH} server: ${err.message}`, { cause: err })));
  });
  started.catch(() => { /* seen by open(), or by no one when the server is never taken */ });
  return { child, started };
}

let prestarted: Started | undefined;

/** Starts the local server of a sync ahead of need; the first LocalTransport without args takes it. */
export function prestartServer(): void {
  prestarted ??= startServer([]);
}

/** The prestarted server, if one is still running and untaken. */
function takePrestarted(): Started | undefined {
  const s = prestarted;
  prestarted = undefined;
  return s && s.child.exitCode === null && s.child.signalCode === null ? s : undefined;
}

/** Kills a prestarted server that nothing took (the command failed before it opened a session) and waits for its end. */
export async function dropPrestarted(): Promise<void> {
  const s = takePrestarted();
  if (!s) return;
  const gone = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGKILL');
  // a spawn that failed (EAGAIN, ENOMEM) has no process and never emits 'exit'
  await s.started.then(() => gone, () => undefined);
}

/**
 * A Channel straight over the child's stdio: no PassThrough or Forwarder (remote-end.ts's
 * ServerEnd, for ssh and --rsh) on the hot path, since a local pipe's write callbacks already
 * fire only once the kernel has the bytes and there is no connection to lose, only a child.
 */
function childChannel(child: ChildProcess, tailBytes: number, closeTimeoutMs: number): Channel {
  let tail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    tail = (tail + s).slice(-tailBytes);
  });
  child.stdin!.on('error', () => { /* EPIPE when the server died: reported by the reader */ });
  const stderrClosed = new Promise<void>((resolve) => child.stderr!.once('close', () => resolve()));
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    // 'exit', not 'close': 'close' waits for stdout to end, which never happens while a frame the
    // client did not read (an ERROR after a client-side refusal) sits in the pipe.
    else child.once('exit', (code) => resolve(code));
  });
  let closing: Promise<number | null> | undefined;
  return {
    input: child.stdout!,
    output: child.stdin!,
    stderrTail: () => tail,
    close: () =>
      (closing ??= (async () => {
        child.stdin!.end();
        child.stdout!.destroy(); // a server blocked writing to us gets EPIPE instead of hanging
        const timer = setTimeout(() => child.kill('SIGKILL'), closeTimeoutMs);
        const code = await exited;
        clearTimeout(timer);
        child.stdout!.destroy();
        // 'exit' can come before the last of its stderr: wait for that (briefly) for error messages.
        await Promise.race([stderrClosed, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
        return code;
      })()),
  };
}
