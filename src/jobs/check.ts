// The monitoring check, as a pure function of a job's records, its thresholds and the clock:
//   no / unreadable / corrupt record                           -> UNKNOWN
//   last run failed or interrupted, target dirty, snapshot left,
//   a "running" record whose process is gone (killed),
//   last success older than critical_age, or none at all      -> CRITICAL
//   the last `history verify` found a damaged copy              -> CRITICAL
//   last success older than warning_age, a run going longer than
//   max_duration, last run refused (lock or max_concurrent),
//   last run a warning (copy may be torn, post_run failed),
//   last run cancelled while waiting for a slot,
//   the first run still in progress (no copy exists yet),
//   the history verify record unreadable                       -> WARNING
// Kept copies (target_snapshot): how many, oldest and newest data time, from the last success.
// The worst problem wins; the text lists them all, worst first. Output follows the monitoring
// plugins conventions: one line "BLKDELTA STATUS - text | perfdata", exit 0/1/2/3.
import type { Thresholds } from './config.js';
import type { ProcId } from '../locks/proc.js';
import type { ReadResult, RunRecord } from './state.js';
import type { VerifyRecord } from './history-record.js';
import { formatBytes, formatAge } from '../units.js';

export const Status = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
export type Status = (typeof Status)[keyof typeof Status];
export const STATUS_NAME = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;
/** For --all: how bad a status is (UNKNOWN ranks between WARNING and CRITICAL). */
const RANK = [0, 1, 3, 2];

export interface JobCheck {
  job: string;
  status: Status;
  /** Problems worst first, or one line saying all is well. */
  texts: string[];
  perfdata: string[];
}

interface Finding { status: Status; text: string }

/** Evaluates one job. `running` says whether a recorded process is still alive (see locks/proc.ts). */
export function evaluateJob(job: string, read: ReadResult, th: Thresholds, now: Date,
  running: (p: ProcId) => boolean, verify: { rec: VerifyRecord | null; problem?: string } = { rec: null }): JobCheck {
  if (read.kind === 'missing') return unknown(job, `no record in ${read.path} (never run?)`);
  if (read.kind === 'unreadable') return unknown(job, `cannot read ${read.path}: ${read.reason}`);
  if (read.kind === 'corrupt') return unknown(job, `record ${read.path} is corrupt: ${read.reason}`);
  const { runs, lastSuccess } = read.state;
  const found: Finding[] = [];
  const current = runs[0]?.outcome === 'running' ? runs[0] : undefined;
  const alive = current ? running(current.process) : false;
  if (current && alive) found.push(...runningNow(current, th, now));
  const last = current && !alive ? current : runs.find((r) => r.outcome !== 'running');
  if (last) found.push(...lastResult(last, alive));
  found.push(...freshness(lastSuccess, th, now, !!current && alive));
  if (read.refused && (!last || read.refused.start > (last.end ?? last.start)) && !(current && alive)) {
    found.push({ status: Status.WARNING, text: `a run was refused at ${read.refused.start}: ${read.refused.error ?? ''}` });
  }
  found.push(...historyFindings(lastSuccess, verify));
  found.sort((a, b) => RANK[b.status]! - RANK[a.status]!);
  const status = found[0]?.status ?? Status.OK;
  const texts = found.filter((f) => f.status !== Status.OK || status === Status.OK).map((f) => f.text);
  const copies = lastSuccess?.targetSnapshot?.history?.copies;
  return { job, status, texts, perfdata: [...perfdata(lastSuccess, last, th, now), ...(copies === undefined ? [] : [`'copies'=${copies};;;0;`])] };
}

/** Kept copies of the target: their count and data times, and what the last history verify found. */
function historyFindings(s: RunRecord | undefined, v: { rec: VerifyRecord | null; problem?: string }): Finding[] {
  const out: Finding[] = [];
  const h = s?.targetSnapshot?.history;
  if (h) out.push({ status: Status.OK, text: h.copies ? `${h.copies} kept cop${h.copies === 1 ? 'y' : 'ies'}, data from ${h.oldest} to ${h.newest}` : 'no kept copies' });
  const bad = v.rec?.copies.filter((c) => c.result === 'damaged') ?? [];
  if (bad.length) out.push({ status: Status.CRITICAL, text: `history verify at ${v.rec!.at} found damaged copies: ${bad.map((c) => `${c.id} (${c.lv})`).join(', ')}` });
  if (v.problem) out.push({ status: Status.WARNING, text: `cannot read the history verify record: ${v.problem}` });
  return out;
}

function unknown(job: string, text: string): JobCheck {
  return { job, status: Status.UNKNOWN, texts: [text], perfdata: [] };
}

function runningNow(r: RunRecord, th: Thresholds, now: Date): Finding[] {
  if (r.progress?.phase === 'waiting') {
    const waited = (now.getTime() - Date.parse(r.queued ?? r.start)) / 1000;
    return [{ status: Status.OK, text: `waiting for a max_concurrent slot for ${formatAge(waited)} (pid ${r.process.pid})` }];
  }
  const dur = (now.getTime() - Date.parse(r.start)) / 1000;
  if (dur > th.maxDuration) {
    return [{ status: Status.WARNING, text: `running for ${formatAge(dur)} (pid ${r.process.pid}), longer than max_duration ${formatAge(th.maxDuration)}` }];
  }
  return [{ status: Status.OK, text: `running for ${formatAge(dur)} (pid ${r.process.pid})` }];
}

function lastResult(r: RunRecord, currentAlive: boolean): Finding[] {
  const out: Finding[] = [];
  const when = r.end ?? r.start;
  const why = r.error ? `: ${r.error}` : '';
  const exit = r.exitCode !== undefined ? ` (exit ${r.exitCode})` : '';
  if (r.outcome === 'running' && !currentAlive) {
    out.push({ status: Status.CRITICAL, text: `the run started ${r.start} was killed (pid ${r.process.pid} is gone) before it finished; the target may be dirty` });
  } else if (r.outcome === 'failed' || r.outcome === 'interrupted') {
    out.push({ status: Status.CRITICAL, text: `last run ${r.outcome} at ${when}${why}${exit}` });
  } else if (r.outcome === 'refused') {
    out.push({ status: Status.WARNING, text: `last run refused at ${when}${why}${exit}` });
  } else if (r.outcome === 'warning') {
    out.push({ status: Status.WARNING, text: `last run at ${when} completed with a warning: ${(r.warnings ?? []).join('; ')}` });
  } else if (r.outcome === 'cancelled') {
    out.push({ status: Status.WARNING, text: `last run was stopped at ${when}${why}` });
  }
  if (r.targetState === 'dirty' && r.outcome !== 'running') {
    out.push({ status: Status.CRITICAL, text: `target ${r.target} is dirty (a write was cut short; it is not a usable copy until the next successful run)` });
  }
  if (r.snapshot && !r.snapshot.removed) {
    out.push({ status: Status.CRITICAL, text: `snapshot ${r.snapshot.name} was not removed${r.snapshot.error ? ': ' + r.snapshot.error : ''}` });
  }
  out.push(...incrementalFindings(r));
  return out;
}

/** incremental = true: a full compare says why; a sample that differed (target changed behind blkdelta's back) warns. */
function incrementalFindings(r: RunRecord): Finding[] {
  const inc = r.incremental;
  if (!inc || r.outcome === 'running') return [];
  if (inc.sampleDiffering) return [{ status: Status.WARNING, text: `last run found the target changed outside blkdelta (${inc.reason}); the full compare ${r.outcome === 'success' ? 'repaired it' : 'did not finish'}` }];
  if (inc.kind === 'full') return [{ status: Status.OK, text: `last run was a full compare: ${inc.reason}` }];
  return [{ status: Status.OK, text: `last run was incremental (base ${inc.base}${inc.pinnedBytes !== undefined ? `, which pinned ${inc.pinnedBytes} bytes of the pool` : ''})` }];
}

function freshness(s: RunRecord | undefined, th: Thresholds, now: Date, inProgress: boolean): Finding[] {
  if (!s) {
    if (inProgress) return [{ status: Status.WARNING, text: 'first run in progress: no copy exists yet' }];
    return [{ status: Status.CRITICAL, text: 'no successful run on record' }];
  }
  const age = ageOf(s, now);
  const text = `last success ${formatAge(age)} ago (${s.end ?? s.start})`;
  if (age > th.criticalAge) return [{ status: Status.CRITICAL, text: `${text}, older than critical_age ${formatAge(th.criticalAge)}` }];
  if (age > th.warningAge) return [{ status: Status.WARNING, text: `${text}, older than warning_age ${formatAge(th.warningAge)}` }];
  const b = s.bytes ? `, ${formatBytes(s.bytes.changed)} changed of ${formatBytes(s.bytes.compared)}` : '';
  return [{ status: Status.OK, text: `${text}${b} in ${formatAge(s.durationS ?? 0)}` }];
}

function ageOf(r: RunRecord, now: Date): number {
  return Math.max(0, Math.round((now.getTime() - Date.parse(r.end ?? r.start)) / 1000));
}

/** 'label'=value[UOM];warn;crit;min;max with whole seconds and bytes. */
function perfdata(s: RunRecord | undefined, last: RunRecord | undefined, th: Thresholds, now: Date): string[] {
  const out: string[] = [];
  const p = (label: string, v: number, uom: string, warn = '', crit = '') =>
    out.push(`'${label}'=${Math.round(v)}${uom};${warn};${crit};0;`);
  if (s) p('age', ageOf(s, now), 's', String(th.warningAge), String(th.criticalAge));
  const d = [last, s].find((r) => r?.durationS !== undefined);
  if (d) p('duration', d.durationS!, 's', String(th.maxDuration));
  const b = (last?.bytes ? last : s)?.bytes;
  if (b) {
    p('compared', b.compared, 'B');
    p('changed', b.changed, 'B');
    p('sent', b.sent, 'B');
    p('written', b.written, 'B');
  }
  return out;
}

/** The plugin output for one or more jobs: first line, long output lines, exit status. */
export function formatCheck(checks: JobCheck[]): { text: string; status: Status } {
  if (checks.length === 1) {
    const c = checks[0]!;
    const perf = c.perfdata.length ? ` | ${c.perfdata.join(' ')}` : '';
    return { status: c.status, text: `BLKDELTA ${STATUS_NAME[c.status]} - ${c.job}: ${c.texts.join('; ')}${perf}` };
  }
  const worst = checks.reduce<Status>((w, c) => (RANK[c.status]! > RANK[w]! ? c.status : w), Status.OK);
  const count = (s: Status) => checks.filter((c) => c.status === s).length;
  const bad = checks.filter((c) => c.status !== Status.OK).map((c) => `${c.job}: ${c.texts[0]}`);
  const head = `${checks.length} jobs, ${count(Status.CRITICAL)} critical, ${count(Status.WARNING)} warning, ${count(Status.UNKNOWN)} unknown`;
  const perf = checks.flatMap((c) => c.perfdata.map((p) => p.replace(/^'/, `'${c.job}_`)));
  const first = `BLKDELTA ${STATUS_NAME[worst]} - ${[head, ...bad].join('; ')}${perf.length ? ' | ' + perf.join(' ') : ''}`;
  const long = checks.map((c) => `${STATUS_NAME[c.status]} ${c.job}: ${c.texts.join('; ')}`);
  return { status: worst, text: [first, ...long].join('\n') };
}

/**
 * A monitoring-plugins threshold range `[@][start:][end]` (`10`: alert outside 0..10, `10:` below
 * 10, `~:10` above 10, `@10:20` inside 10..20). `value` parses one bound (a duration, a number)
 * and throws a plain Error saying what is wrong; so does a range whose start is above its end.
 */
export interface Range { start: number; end: number; inside: boolean }

export function parseRange(text: string, value: (v: string) => number): Range {
  const inside = text.startsWith('@');
  const body = inside ? text.slice(1) : text;
  if (body === '') throw new Error(`"${text}" is not a range (use 10, 10:, ~:10, 10:20 or @10:20)`);
  const colon = body.indexOf(':');
  const startText = colon < 0 ? '0' : body.slice(0, colon);
  const endText = colon < 0 ? body : body.slice(colon + 1);
  const start = startText === '~' ? -Infinity : startText === '' ? 0 : value(startText);
  const end = endText === '' ? Infinity : value(endText);
  if (start > end) throw new Error(`range "${text}": start ${startText} is above end ${endText}`);
  return { start, end, inside };
}

/** Whether a value raises the alert of a range. */
export function alerts(r: Range, v: number): boolean {
  const within = v >= r.start && v <= r.end;
  return r.inside ? within : !within;
}
