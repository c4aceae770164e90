// Pure helpers of the command line's error surface, table-tested: yargs' messages reworded
// (src/cli/usage.ts), NaN options found, monitoring-plugin ranges (src/jobs/check.ts), and the
// progress line's single ETA format (src/cli/progress.ts).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { explainUsage, notANumber, operandsOf } from '../src/cli/usage.js';
import { alerts, parseRange } from '../src/jobs/check.js';
import { etaText, progressText } from '../src/cli/progress.js';
import { parseDuration } from '../src/units.js';

const explain = test.macro({
  exec(t: ExecutionContext, msg: string, args: string[], spec: string | undefined, want: string) {
    t.is(explainUsage(msg, { args, spec }), want);
  },
  title: (_t, msg: string, args: string[]) => `explainUsage: ${msg.replace(/\n/g, ' ')} [${args.join(' ')}]`,
});
test(explain, 'Not enough non-option arguments: got 1, need at least 2', ['verify', 'a'], 'verify <src> <dst>', 'verify: missing DST (usage: blkdelta verify <src> <dst>)');
test(explain, 'Not enough non-option arguments: got 0, need at least 2', ['apply'], 'apply <patch> <target>', 'apply: missing PATCH and TARGET (usage: blkdelta apply <patch> <target>)');
test(explain, 'Not enough non-option arguments: got 0, need at least 1', ['sync'], 'sync <src> [dst]', 'sync: missing SRC (usage: blkdelta sync <src> [dst])');
test(explain, 'Not enough non-option arguments: got 0, need at least 1', [], undefined, 'blkdelta: 1 more operand needed');
test(explain, 'Unknown argument: c', ['sync', 'a', 'b', 'c'], 'sync <src> [dst]', 'sync: too many operands, "c" not expected: it takes at most 2 (usage: blkdelta sync <src> [dst])');
test(explain, 'Unknown arguments: c, d', ['run', 'x', 'c', 'd'], 'run [job]', 'run: too many operands, "c" "d" not expected: it takes at most 1 (usage: blkdelta run [job])');
test(explain, 'Unknown argument: frob', ['sync', '--frob', 'a'], 'sync <src> [dst]', 'sync: unknown option --frob (see blkdelta sync --help)');
test(explain, 'Unknown argument: frob', ['sync', '--frob=1', 'a'], 'sync <src> [dst]', 'sync: unknown option --frob (see blkdelta sync --help)');
test(explain, 'Unknown argument: x', ['status', '-x'], 'status [job]', 'status: unknown option -x (see blkdelta status --help)');
test(explain, 'Unknown argument: x', ['completion', 'x'], 'completion', 'completion: too many operands, "x" not expected: it takes none (usage: blkdelta completion)');
test(explain, 'Invalid values:\n  Argument: size-policy, Given: "shrink", Choices: "strict", "grow", "min"', [], 'sync <src> [dst]', '--size-policy "shrink": expected one of strict, grow, min');
test(explain, 'Invalid values:\n  Argument: action, Given: "frob", Choices: "check"', [], 'config <action>', 'ACTION "frob": expected one of check');
test(explain, 'Not enough arguments following: connect-timeout', [], 'sync <src> [dst]', '--connect-timeout needs a value');
test(explain, 'Not enough arguments following: n', [], 'status [job]', '-n needs a value');
test(explain, 'Missing required argument: src', [], undefined, 'missing --src');
test(explain, 'Arguments dry-run and verify are mutually exclusive', [], 'sync <src> [dst]', '--dry-run and --verify cannot be used together');
test(explain, 'something yargs says that we do not know', [], undefined, 'something yargs says that we do not know');
test(explain, '', [], undefined, '');

test('operandsOf: the operand names of a spec', (t) => {
  t.deepEqual(operandsOf('sync <src> [dst]'), ['SRC', 'DST']);
  t.deepEqual(operandsOf('check [job]'), ['JOB']);
  t.deepEqual(operandsOf('completion'), []);
  t.deepEqual(operandsOf('server [files...]'), ['FILES']);
});

const nan = test.macro({
  exec(t: ExecutionContext, argv: Record<string, unknown>, args: string[], want: string | undefined) {
    t.is(notANumber(argv, args), want);
  },
  title: (_t, _argv, args: string[]) => `notANumber: ${args.join(' ') || '(none)'}`,
});
test(nan, { 'connect-timeout': NaN, connectTimeout: NaN }, ['sync', '--connect-timeout', 'abc'], '--connect-timeout "abc": not a number');
test(nan, { 'connect-timeout': NaN }, ['sync', '--connect-timeout=1x'], '--connect-timeout "1x": not a number');
test(nan, { history: NaN, n: NaN }, ['status', '-n', 'abc'], '--history "abc": not a number');
test(nan, { history: 3, n: 3 }, ['status', '-n', '3'], undefined);
test(nan, { $0: 'blkdelta', _: [] }, [], undefined);
test(nan, { 'max-diffs': 0 }, ['verify', '--max-diffs', '0'], undefined);

const range = test.macro({
  exec(t: ExecutionContext, text: string, want: { start: number; end: number; inside: boolean } | RegExp, inOut?: [number[], number[]]) {
    if (want instanceof RegExp) return void t.throws(() => parseRange(text, parseDuration), { message: want });
    const r = parseRange(text, parseDuration);
    t.deepEqual(r, want);
    for (const v of inOut?.[0] ?? []) t.true(alerts(r, v), `${v} alerts`);
    for (const v of inOut?.[1] ?? []) t.false(alerts(r, v), `${v} does not alert`);
  },
  title: (_t, text: string) => `parseRange ${JSON.stringify(text)}`,
});
test(range, '10', { start: 0, end: 10, inside: false }, [[11, -1], [0, 5, 10]]);
test(range, '10:', { start: 10, end: Infinity, inside: false }, [[9, 0], [10, 1e9]]);
test(range, '~:10', { start: -Infinity, end: 10, inside: false }, [[11], [-5, 10]]);
test(range, '10:20', { start: 10, end: 20, inside: false }, [[9, 21], [10, 15, 20]]);
test(range, '@10:20', { start: 10, end: 20, inside: true }, [[10, 15, 20], [9, 21]]);
test(range, '36h', { start: 0, end: 129600, inside: false }, [[129601], [129600]]);
test(range, '1h:2h', { start: 3600, end: 7200, inside: false });
test(range, '0', { start: 0, end: 0, inside: false }, [[1], [0]]);
test(range, '20:10', /start 20 is above end 10/);
test(range, '', /"" is not a range/);
test(range, '@', /"@" is not a range/);
test(range, 'abc', /"abc" is not a duration/);
test(range, '-5', /is not a duration/);
test(range, '~', /is not a duration/);

const eta = test.macro({
  exec(t: ExecutionContext, s: number, want: string) {
    t.is(etaText(s), want);
  },
  title: (_t, s: number, want: string) => `etaText(${s}) = ${want}`,
});
test(eta, 0, '0:00:00');
test(eta, 0.4, '0:00:00');
test(eta, 59, '0:00:59');
test(eta, 61, '0:01:01');
test(eta, 3600, '1:00:00');
test(eta, 100 * 3600 + 5, '100:00:05');
test(eta, NaN, '--:--:--');
test(eta, Infinity, '--:--:--');
test(eta, -1, '--:--:--');

test('progressText: percent, read and network rates, one ETA format', (t) => {
  const MiB = 1024 * 1024;
  t.is(progressText({ bytesDone: 50 * MiB, bytesTotal: 100 * MiB, bytesDiffering: MiB, elapsedMs: 10_000, bytesExchanged: 2 * MiB }),
    '50.0% 50.0 MiB/100.0 MiB read 5.0 MiB/s net 204.8 KiB/s differ 1.0 MiB ETA 0:00:10');
  t.is(progressText({ bytesDone: 0, bytesTotal: 100, bytesDiffering: 0, elapsedMs: 0 }), '0.0% 0 B/100 B read 0 B/s differ 0 B ETA --:--:--');
  t.is(progressText({ bytesDone: 0, bytesTotal: 0, bytesDiffering: 0, elapsedMs: 5 }), '100.0% 0 B/0 B read 0 B/s differ 0 B ETA 0:00:00');
});
