// Runs one program (no shell) to its end and says how it ended; never throws. Runs lvm and
// dmsetup (lvm/lvm.ts), blockdev, fallocate and the jobs' hooks. (It replaced
// execa, whose ~175 module files cost ~80 ms of CPU at the start of every LVM run on the storage
// server, and seconds in the test VM.) io/direct.ts (fincore, dd), locks/flock.ts and the
// transports spawn their own: synchronous calls, or children whose stdio is the channel.
//   stdin:    ignored (nothing ever waits on a prompt)
//   output:   stdout and stderr captured as text, each up to MAX_CAPTURE bytes (the rest is read
//             and dropped, `truncated` set), one final newline stripped; or, with `merged`, both
//             handed to the caller as one stream as they come, nothing captured
//   timeout:  after timeoutMs, killSignal (default SIGTERM); then, unless forceKillAfterMs is
//             false, SIGKILL that much later. The timer decides only after one more turn of the
//             event loop, so an exit that arrived while this process had no CPU wins (as
//             transport.ts withTimeout)
//   signal:   when it aborts, the same as a timeout, with `canceled` set
// With `merged`, the caller must read `output` to its end (it is not drained otherwise).
// The result comes when the program has exited and its output has ended; when a program it
// started keeps the output open, 5 s after the exit (STDIO_GRACE_MS).
// Memory: at most 2 × MAX_CAPTURE of output per call (lvm's reports are a few KiB).
// Interrupted: a program is not killed when this process exits: callers stop what they started
// through `signal`, and a VG change (lvcreate…) must be left to finish (lvm/lvm.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';

/** Captured output per stream: lvm's JSON reports of a large VG are well under this. */
export const MAX_CAPTURE = 16 * 1024 * 1024;
/** How long to wait for the output to end once the program has exited. */
export const STDIO_GRACE_MS = 5_000;

export interface ProgramOptions {
  /** Variables added to this process's environment. */
  env?: Record<string, string>;
  timeoutMs?: number;
  killSignal?: NodeJS.Signals;
  /** SIGKILL this long after killSignal (default 5 s); false: never. */
  forceKillAfterMs?: number | false;
  signal?: AbortSignal;
  /** stdout and stderr as one stream (ProgramRun.output) instead of captured. */
  merged?: boolean;
}

export interface ProgramResult {
  /** The exit status, when it exited (not when killed by a signal or not started). */
  exitCode?: number;
  /** The signal that ended it. */
  signal?: NodeJS.Signals;
  stdout: string;
  stderr: string;
  truncated: boolean;
  timedOut: boolean;
  canceled: boolean;
  /** It could not be started (ENOENT, EACCES…). */
  spawnError?: NodeJS.ErrnoException;
  /** Exit status 0, within its time, not canceled. */
  ok: boolean;
}

export interface ProgramRun {
  /** With `merged`: stdout and stderr as they come; ends after both. */
  output?: Readable;
  done: Promise<ProgramResult>;
}

/** Runs cmd with args to its end: the captured result. */
export function runProgram(cmd: string, args: readonly string[], o: ProgramOptions = {}): Promise<ProgramResult> {
  return startProgram(cmd, args, o).done;
}

/** Starts cmd with args; `done` resolves to how it ended. */
export function startProgram(cmd: string, args: readonly string[], o: ProgramOptions = {}): ProgramRun {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ? { ...process.env, ...o.env } : process.env });
  const out = { stdout: new Capture(), stderr: new Capture() };
  let output: PassThrough | undefined;
  const endOutput = () => { if (output && !output.writableEnded) output.end(); };
  if (o.merged) {
    output = new PassThrough();
    let open = 2;
    for (const s of [child.stdout, child.stderr]) {
      s.pipe(output, { end: false });
      s.once('close', () => { if (--open === 0) endOutput(); });
    }
  } else {
    child.stdout.on('data', (b: Buffer) => out.stdout.add(b));
    child.stderr.on('data', (b: Buffer) => out.stderr.add(b));
  }
  const done = new Promise<ProgramResult>((resolve) => {
    let timedOut = false, canceled = false, ended = false;
    const timers: NodeJS.Timeout[] = [];
    const stop = () => {
      child.kill(o.killSignal ?? 'SIGTERM');
      const after = o.forceKillAfterMs ?? 5_000;
      if (after !== false) timers.push(setTimeout(() => child.kill('SIGKILL'), after));
    };
    const finish = (r: Partial<ProgramResult>) => {
      if (ended) return;
      ended = true;
      timers.forEach(clearTimeout);
      endOutput(); // already ended, except after a failed start or the grace timeout
      o.signal?.removeEventListener('abort', onAbort);
      const ok = r.exitCode === 0 && !timedOut && !canceled && !r.spawnError;
      resolve({ stdout: out.stdout.text(), stderr: out.stderr.text(), truncated: out.stdout.truncated || out.stderr.truncated, timedOut, canceled, ok, ...r });
    };
    const onAbort = () => {
      if (ended || canceled) return;
      canceled = true;
      stop();
    };
    if (o.timeoutMs !== undefined) {
      timers.push(setTimeout(() => setImmediate(() => {
        if (ended || timedOut || child.exitCode !== null || child.signalCode !== null) return;
        timedOut = true;
        stop();
      }), o.timeoutMs));
    }
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) finish({ spawnError: err }); // once started, only a failed kill(): nothing to report
    });
    child.once('exit', () => {
      // a program it started may hold the output open: give up on the rest after STDIO_GRACE_MS
      if (!ended) timers.push(setTimeout(() => { child.stdout.destroy(); child.stderr.destroy(); finish(endOf(child)); }, STDIO_GRACE_MS));
    });
    child.once('close', () => finish(endOf(child)));
  });
  return { ...(output ? { output } : {}), done };
}

/** How the child ended: its exit status or its signal. */
function endOf(child: ChildProcess): Partial<ProgramResult> {
  if (child.signalCode) return { signal: child.signalCode };
  return child.exitCode !== null ? { exitCode: child.exitCode } : {};
}

/** How a program ended, in words: "exit 3", "killed by SIGTERM", "timed out after 30 s", "spawn x ENOENT". */
export function howEnded(r: ProgramResult, timeoutMs?: number): string {
  if (r.spawnError) return r.spawnError.message;
  if (r.timedOut) return `timed out${timeoutMs !== undefined ? ` after ${timeoutMs / 1000} s` : ''}`;
  if (r.canceled) return 'stopped: the run was interrupted';
  if (r.signal) return `killed by ${r.signal}`;
  return `exit ${r.exitCode ?? '?'}`;
}

/** One stream's output, kept up to MAX_CAPTURE bytes. */
class Capture {
  private readonly parts: Buffer[] = [];
  private size = 0;
  truncated = false;

  add(b: Buffer): void {
    const room = MAX_CAPTURE - this.size;
    if (b.length > room) this.truncated = true;
    if (room <= 0) return;
    const kept = b.length > room ? b.subarray(0, room) : b;
    this.parts.push(kept);
    this.size += kept.length;
  }

  text(): string {
    return Buffer.concat(this.parts).toString('utf8').replace(/\r?\n$/, '');
  }
}
