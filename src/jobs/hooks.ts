// Job hooks: pre_run, post_run and on_failure, each an argv array run without a shell.
//   pre_run    after the slot is taken, before the snapshot; failing or timed out: the run is
//              not started, its outcome is "failed" with exit code HOOK
//   post_run   after the sync, whatever its outcome (when pre_run ran or there is none)
//   on_failure after a run that failed, was interrupted or whose pre_run failed
// Each hook gets the run's facts in BLKDELTA_* variables (hookEnv), hook_timeout seconds (then
// SIGTERM, and SIGKILL 5 s later), and stdin from /dev/null; its stdout and stderr, merged, go to
// the log line by line, at most OUTPUT_MAX bytes per hook (the rest is counted, not kept).
// A run interrupted during pre_run kills the hook; post_run and on_failure run to completion or
// their timeout even after SIGTERM (they are the cleanup). Memory: OUTPUT_MAX per hook.
import { accessSync, constants } from 'node:fs';
import { BlkError, ExitCode, describe } from '../errors.js';
import { log } from '../log.js';
import type { HookRecord, RunRecord } from './state.js';

export type HookName = HookRecord['name'];

export interface Hooks { pre_run?: string[]; post_run?: string[]; on_failure?: string[]; timeout: number }

/** Seconds a hook may run when hook_timeout is not set. */
export const DEFAULT_HOOK_TIMEOUT = 300;
const OUTPUT_MAX = 64 * 1024;
const LINE_MAX = 4096;

/** The environment a hook sees on top of blkdelta's own (pure). */
export function hookEnv(name: HookName, r: RunRecord): Record<string, string> {
  const env: Record<string, string> = {
    BLKDELTA_HOOK: name,
    BLKDELTA_JOB: r.job,
    BLKDELTA_SOURCE: r.source,
    BLKDELTA_TARGET: r.target,
    BLKDELTA_OUTCOME: r.outcome,
    BLKDELTA_TARGET_STATE: r.targetState,
    BLKDELTA_START: r.start,
  };
  const opt = (k: string, v: string | number | undefined) => { if (v !== undefined) env[k] = String(v); };
  opt('BLKDELTA_EXIT_CODE', r.exitCode);
  opt('BLKDELTA_ERROR', r.error);
  opt('BLKDELTA_END', r.end);
  opt('BLKDELTA_DURATION_S', r.durationS);
  opt('BLKDELTA_BYTES_COMPARED', r.bytes?.compared);
  opt('BLKDELTA_BYTES_CHANGED', r.bytes?.changed);
  opt('BLKDELTA_BYTES_SENT', r.bytes?.sent);
  opt('BLKDELTA_BYTES_WRITTEN', r.bytes?.written);
  opt('BLKDELTA_SNAPSHOT', r.snapshot?.name);
  opt('BLKDELTA_TARGET_SNAPSHOT', r.targetSnapshot?.name);
  opt('BLKDELTA_WARNINGS', r.warnings?.join('; '));
  return env;
}

/** Runs one hook to its end (or deadline); never throws: the result says what happened. */
export async function runHook(name: HookName, argv: string[], rec: RunRecord, o: { timeout: number; signal?: AbortSignal }): Promise<HookRecord> {
  const { startProgram } = await import('../exec.js');
  const t0 = Date.now();
  log.info(`job ${rec.job}: ${name} hook: ${argv.join(' ')}`);
  const sub = startProgram(argv[0]!, argv.slice(1), {
    env: hookEnv(name, rec), merged: true, timeoutMs: o.timeout * 1000, forceKillAfterMs: 5000, ...(o.signal ? { signal: o.signal } : {}),
  });
  const output = logLines(sub.output!, `job ${rec.job}: ${name}: `);
  const r = await sub.done;
  const last = await output;
  const h: HookRecord = { name, argv, timedOut: r.timedOut, durationS: (Date.now() - t0) / 1000 };
  if (r.exitCode !== undefined) h.exitCode = r.exitCode;
  if (r.signal) h.signal = r.signal;
  const why = hookProblem(h, o.timeout, r.spawnError?.message, r.canceled);
  if (why) h.error = `${name} hook ${argv[0]} ${why}${last ? ` (last output: ${last})` : ''}`;
  return h;
}

/** Why a hook counts as failed, or undefined when it exited 0 (pure). */
export function hookProblem(h: HookRecord, timeout: number, spawnError: string | undefined, canceled: boolean): string | undefined {
  if (h.timedOut) return `timed out after ${timeout}s (hook_timeout) and was killed`;
  if (canceled) return 'was stopped: the run was interrupted';
  if (h.exitCode !== undefined && h.exitCode !== 0) return `exited with ${h.exitCode}`;
  if (h.signal) return `was killed by ${h.signal}`;
  if (h.exitCode === undefined && spawnError) return `could not be started: ${spawnError}`;
  return undefined;
}

/** Logs the merged output line by line up to OUTPUT_MAX bytes; resolves to the last line logged. */
async function logLines(stream: NodeJS.ReadableStream, prefix: string): Promise<string> {
  let logged = 0;
  let dropped = 0;
  let partial = '';
  let last = '';
  const emit = (line: string) => {
    if (line === '') return;
    if (logged >= OUTPUT_MAX) { dropped += line.length + 1; return; }
    const cut = line.length > LINE_MAX ? `${line.slice(0, LINE_MAX)}... (${line.length - LINE_MAX} more characters)` : line;
    logged += line.length + 1;
    last = cut.slice(0, 200);
    log.info(prefix + cut);
  };
  for await (const chunk of stream) {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop()!;
    if (partial.length > LINE_MAX) { emit(partial); partial = ''; }
    lines.forEach(emit);
  }
  emit(partial);
  if (dropped) log.warn(`${prefix}${dropped} more bytes of output not logged (limit ${OUTPUT_MAX})`);
  return last;
}

/** For `config check`: hooks whose program (an absolute path) cannot be executed now. */
export function unrunnableHooks(h: Hooks): string[] {
  const out: string[] = [];
  for (const name of ['pre_run', 'post_run', 'on_failure'] as const) {
    const prog = h[name]?.[0];
    if (!prog?.startsWith('/')) continue;
    try {
      accessSync(prog, constants.X_OK);
    } catch (err) {
      out.push(`${name} hook ${prog} cannot be run: ${describe(err)}`);
    }
  }
  return out;
}

/** The error a failed pre_run hook ends its run with. */
export function preRunError(h: HookRecord): BlkError {
  return new BlkError(ExitCode.HOOK, `${h.error ?? 'pre_run hook failed'}; the run was not started`);
}
