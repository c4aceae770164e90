// `check` and the job's history (src/jobs/check.ts): kept copies reported from the last success,
// CRITICAL when the last `history verify` found a damaged copy. Pure evaluation, one row per case.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { evaluateJob, formatCheck } from '../src/jobs/check.js';
import type { VerifyRecord } from '../src/jobs/history-record.js';
import { verifyDue } from '../src/history/schedule.js';
import type { ReadResult, RunRecord } from '../src/jobs/state.js';

const NOW = new Date('2026-11-27T12:00:00Z');
const TH = { warningAge: 36 * 3600, criticalAge: 48 * 3600, maxDuration: 6 * 3600 };
const history = { copies: 3, oldest: '2026-11-20T02:00:00.000Z', newest: '2026-11-27T02:00:00.000Z' };
const success: RunRecord = {
  job: 'db', outcome: 'success', start: '2026-11-27T01:50:00Z', end: '2026-11-27T02:00:00Z', durationS: 600,
  process: { pid: 1, startTicks: 1 }, host: 'h', source: '/dev/vg0/db', target: '/dev/bk/db', exitCode: 0, targetState: 'consistent',
  targetSnapshot: { name: 'bk/db-blkdelta-tgt-db-20261127T015000Z', reused: false, kept: [], history },
};
const read: ReadResult = { kind: 'ok', state: { version: 1, job: 'db', runs: [success], lastSuccess: success } };
const verify = (results: Array<'ok' | 'damaged' | 'unverifiable'>): VerifyRecord => ({
  version: 1, job: 'db', at: '2026-11-26T03:00:00.000Z',
  copies: results.map((result, i) => ({ id: `c${i}`, lv: `bk/c${i}`, result, detail: '' })),
});

const check = test.macro({
  exec(t: ExecutionContext, r: ReadResult, v: { rec: VerifyRecord | null; problem?: string }, want: { status: number; text: RegExp; perf?: RegExp }) {
    const out = formatCheck([evaluateJob('db', r, TH, NOW, () => false, v)]);
    t.is(out.status as number, want.status);
    t.regex(out.text, want.text);
    if (want.perf) t.regex(out.text, want.perf);
  },
  title: (title) => `check history: ${title}`,
});

test('copies, oldest and newest data time; never verified is OK', check, read, { rec: null },
  { status: 0, text: /^BLKDELTA OK - db: last success 10h 0m ago .*; 3 kept copies, data from 2026-11-20T02:00:00.000Z to 2026-11-27T02:00:00.000Z \|/, perf: /'copies'=3;;;0;/ });
test('a verify that found every copy sound is OK', check, read, { rec: verify(['ok', 'ok', 'unverifiable']) }, { status: 0, text: /^BLKDELTA OK/ });
test('a damaged copy is CRITICAL and named', check, read, { rec: verify(['ok', 'damaged', 'damaged']) },
  { status: 2, text: /^BLKDELTA CRITICAL - db: history verify at 2026-11-26T03:00:00.000Z found damaged copies: c1 \(bk\/c1\), c2 \(bk\/c2\)/ });
test('an unreadable verify record is a WARNING', check, read, { rec: null, problem: 'not valid JSON (x)' },
  { status: 1, text: /^BLKDELTA WARNING - db: cannot read the history verify record: not valid JSON \(x\)/ });
test('no kept copies is said', check,
  { kind: 'ok', state: { version: 1, job: 'db', runs: [success], lastSuccess: { ...success, targetSnapshot: { ...success.targetSnapshot!, history: { copies: 0, oldest: null, newest: null } } } } },
  { rec: null }, { status: 0, text: /; no kept copies \|/, perf: /'copies'=0;;;0;/ });
test('a job without target copies has no copies perfdata', check,
  { kind: 'ok', state: { version: 1, job: 'db', runs: [{ ...success, targetSnapshot: undefined }], lastSuccess: { ...success, targetSnapshot: undefined } } },
  { rec: null }, { status: 0, text: /^BLKDELTA OK - db: last success [^;]*\| (?!.*copies)/ });

const due = test.macro({
  exec: (t: ExecutionContext, every: number | undefined, last: string | undefined, want: boolean) => t.is(verifyDue(every, last, NOW), want),
  title: (_t, every: number | undefined, last: string | undefined, want: boolean) => `history_verify_every ${every} last ${last}: ${want ? 'due' : 'not due'}`,
});
test(due, undefined, undefined, false);
test(due, undefined, '2020-01-01T00:00:00Z', false);
test(due, 7 * 86400, undefined, true);
test(due, 7 * 86400, '2026-11-20T12:00:00Z', true); // exactly 7 days
test(due, 7 * 86400, '2026-11-20T12:00:01Z', false);
test(due, 0, '2026-11-27T12:00:00Z', true);
test(due, 3600, '2031-01-01T00:00:00Z', true); // a verify recorded in the future (the clock went back): due now
test(due, 3600, 'garbage', true);
