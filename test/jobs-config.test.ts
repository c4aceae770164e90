// Config validation: every kind of error names FILE:LINE:COL and the key; durations and sizes.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { BlkError, ExitCode } from '../src/errors.js';
import { fileURLToPath } from 'node:url';
import { findJob, loadConfig, parseConfig } from '../src/jobs/config.js';
import { indexKeys } from '../src/config/keypos.js';
import { formatAge, parseDuration, parseSize } from '../src/units.js';

const GOOD = `state_dir = "/var/lib/blkdelta"
max_concurrent = 2

[jobs.tools]
source = "/dev/vg0/tools"                  # a device or image path
target = "backup@labstore2001:/dev/backup/tools"
`;

/** The config error for `text`: every line of it must contain `want` entries, in order. */
const configError = test.macro({
  exec(t: ExecutionContext, text: string, want: string[]) {
    const err = t.throws(() => parseConfig(text, 'blkdelta.toml'), { instanceOf: BlkError });
    t.is(err?.code, ExitCode.CONFIG);
    const lines = err!.message.split('\n').filter((l) => l.startsWith('blkdelta.toml:'));
    t.deepEqual(lines, want);
  },
  title: (title) => `config error: ${title}`,
});

test('unknown key', configError, `${GOOD}blok_size = "64K"\n`,
  ['blkdelta.toml:7:1: jobs.tools.blok_size: unknown key (did you mean block_size?)']);
test('unknown global key', configError, `statedir = "/x"\n${GOOD}`,
  ['blkdelta.toml:1:1: statedir: unknown key (did you mean state_dir?)']);
test('a table name misspelt', configError, `[job.tools]\nsource = "/a"\ntarget = "/b"\n`,
  ['blkdelta.toml:1:1: job: unknown key (did you mean jobs?)', 'blkdelta.toml:1:1: jobs: no jobs defined (add a [jobs.NAME] table with source and target)']);
test('a top-level key in [defaults]', configError, `${GOOD}[defaults]\nstate_dir = "/x"\n`,
  ['blkdelta.toml:8:1: defaults.state_dir: not allowed here: a top-level key, put it above the first [table]']);
test('a top-level key in a job', configError, `${GOOD}max_concurrent = 3\n`,
  ['blkdelta.toml:7:1: jobs.tools.max_concurrent: not allowed here: a top-level key, put it above the first [table]']);
test("a job's own key in [defaults]", configError, `${GOOD}[defaults]\nsource = "/a"\n`,
  ["blkdelta.toml:8:1: defaults.source: not allowed here: a job's own key, put it in a [jobs.NAME] table"]);
test('a job key at the top level', configError, `verify = true\n${GOOD}`,
  ['blkdelta.toml:1:1: verify: not allowed here: a job key, put it in [defaults] or a [jobs.NAME] table']);
test('an ssh key in a job', configError, `${GOOD}port = 2222\n`,
  ['blkdelta.toml:7:1: jobs.tools.port: not allowed here: an ssh key, put it in [defaults.ssh] or [jobs.NAME.ssh]']);
test('a job key in an ssh table', configError, `${GOOD}[jobs.tools.ssh]\nbwlimit = "4M"\n`,
  ['blkdelta.toml:8:1: jobs.tools.ssh.bwlimit: not allowed here: a job key, put it in [defaults] or a [jobs.NAME] table']);
test('wrong type', configError, GOOD.replace('max_concurrent = 2', 'max_concurrent = "2"'),
  ['blkdelta.toml:2:1: max_concurrent: expected an integer, got string "2"']);
test('wrong type in a job, indented', configError, `${GOOD}  verify = "yes"\n`,
  ['blkdelta.toml:7:3: jobs.tools.verify: expected true or false, got string "yes"']);
test('bad duration', configError, `${GOOD}warning_age = "36x"\n`,
  ['blkdelta.toml:7:1: jobs.tools.warning_age: "36x" is not a duration (use seconds or e.g. 90m, 36h, 2d, 1h30m)']);
test('block size not a power of two', configError, `${GOOD}block_size = "48K"\n`,
  ['blkdelta.toml:7:1: jobs.tools.block_size: 49152 is not a power of two']);
test('relative state_dir', configError, GOOD.replace('"/var/lib/blkdelta"', '"var/lib"'),
  ['blkdelta.toml:1:1: state_dir: "var/lib" is not an absolute path']);
test('job without target', configError, `${GOOD}\n[jobs.db]\nsource = "/srv/db.img"\n`,
  ['blkdelta.toml:8:1: jobs.db: missing required key "target"']);
test('job without source and target', configError, `${GOOD}\n[jobs.db]\nverify = true\n`,
  ['blkdelta.toml:8:1: jobs.db: missing required key "source"', 'blkdelta.toml:8:1: jobs.db: missing required key "target"']);
test('no jobs at all', configError, 'state_dir = "/x"\n',
  ['blkdelta.toml:1:1: jobs: no jobs defined (add a [jobs.NAME] table with source and target)']);
test('duplicate job', configError, `${GOOD}\n[jobs.tools]\nsource = "/a"\ntarget = "/b"\n`,
  ['blkdelta.toml:8:1: jobs.tools: duplicate job "tools" (first defined at line 4)']);
test('duplicate key', configError, `${GOOD}source = "/dev/vg0/other"\n`,
  ['blkdelta.toml:7:1: jobs.tools.source: defined twice (first defined at line 5)']);
test('unknown key in an inline ssh table', configError, `${GOOD}ssh = { port = 2222, identty = "/root/.ssh/id" }\n`,
  ['blkdelta.toml:7:22: jobs.tools.ssh.identty: unknown key (did you mean identity?)']);
test('ssh port out of range', configError, `${GOOD}[jobs.tools.ssh]\nport = 70000\n`,
  ['blkdelta.toml:8:1: jobs.tools.ssh.port: 70000 is above the maximum 65535']);
test('ssh connect_timeout zero', configError, `${GOOD}[jobs.tools.ssh]\nconnect_timeout = 0\n`,
  ['blkdelta.toml:8:1: jobs.tools.ssh.connect_timeout: 0 is below the minimum 1']);
test('ssh connect_timeout negative', configError, `${GOOD}[jobs.tools.ssh]\nconnect_timeout = -30\n`,
  ['blkdelta.toml:8:1: jobs.tools.ssh.connect_timeout: "-30" is not a duration (must be >= 0 seconds)']);
test('ssh connect_timeout huge', configError, `${GOOD}[jobs.tools.ssh]\nconnect_timeout = "2d"\n`,
  ['blkdelta.toml:8:1: jobs.tools.ssh.connect_timeout: 172800 is above the maximum 3600']);
test('ssh connect_timeout wrong type', configError, `${GOOD}[jobs.tools.ssh]\nconnect_timeout = true\n`,
  ['blkdelta.toml:8:1: jobs.tools.ssh.connect_timeout: expected a duration (seconds, or a string like "36h"), got boolean true']);
test('both ends remote', configError, GOOD.replace('"/dev/vg0/tools"', '"a@b:/dev/x"'),
  ['blkdelta.toml:6:1: jobs.tools.target: source and target are both remote: one end must be local']);
test('snapshot true needs /dev/VG/LV', configError, `[jobs.img]\nsource = "/srv/a.img"\ntarget = "/b"\nsnapshot = true\n`,
  ['blkdelta.toml:4:1: jobs.img.snapshot: cannot tell the LV from source "/srv/a.img": write snapshot = "VG/LV"']);
test('keep without target_snapshot', configError, `${GOOD}keep = 3\n`,
  ['blkdelta.toml:7:1: jobs.tools.keep: needs target_snapshot = true']);
// retention keys (docs/history.md): one row per hostile value, with its message
const TS = `${GOOD.replace('backup@labstore2001:/dev/backup/tools', '/dev/backup/tools')}target_snapshot = true\n`;
test('keep_daily without target_snapshot', configError, `${GOOD}keep_daily = 7\n`,
  ['blkdelta.toml:7:1: jobs.tools.keep_daily: needs target_snapshot = true']);
test('history_verify_every without target_snapshot', configError, `${GOOD}history_verify_every = "7d"\n`,
  ['blkdelta.toml:7:1: jobs.tools.history_verify_every: needs target_snapshot = true']);
test('keep and keep_last both set', configError, `${TS}keep = 2\nkeep_last = 3\n`,
  ['blkdelta.toml:8:1: jobs.tools.keep: keep is an alias of keep_last: set one of them']);
test('keep_last negative', configError, `${TS}keep_last = -1\n`, ['blkdelta.toml:8:1: jobs.tools.keep_last: -1 is below the minimum 0']);
test('keep_hourly huge', configError, `${TS}keep_hourly = 100000\n`, ['blkdelta.toml:8:1: jobs.tools.keep_hourly: 100000 is above the maximum 1000']);
test('keep_daily a string', configError, `${TS}keep_daily = "7"\n`, ['blkdelta.toml:8:1: jobs.tools.keep_daily: expected an integer, got string "7"']);
test('keep_weekly a fraction', configError, `${TS}keep_weekly = 1.5\n`, ['blkdelta.toml:8:1: jobs.tools.keep_weekly: expected an integer, got number 1.5']);
test('keep_monthly a table', configError, `${TS}keep_monthly = { a = 1 }\n`, ['blkdelta.toml:8:1: jobs.tools.keep_monthly: expected an integer, got a table']);
test('pool_max_fill zero', configError, `${TS}pool_max_fill = 0\n`, ['blkdelta.toml:8:1: jobs.tools.pool_max_fill: 0 is below the minimum 1']);
test('pool_max_fill over 100', configError, `${TS}pool_max_fill = 101\n`, ['blkdelta.toml:8:1: jobs.tools.pool_max_fill: 101 is above the maximum 100']);
test('history_verify_every not a duration', configError, `${TS}history_verify_every = "weekly"\n`,
  ['blkdelta.toml:8:1: jobs.tools.history_verify_every: "weekly" is not a duration (use seconds or e.g. 90m, 36h, 2d, 1h30m)']);

test('retention keys become a Retention; keep is keep_last', (t) => {
  const cfg = parseConfig(`${TS}keep_last = 2\nkeep_hourly = 0\nkeep_daily = 7\nkeep_weekly = 4\nkeep_monthly = 12\npool_max_fill = 85\nhistory_verify_every = "7d"\n`, 'b.toml');
  t.deepEqual(cfg.jobs[0]!.targetSnapshot, { size: undefined, keep: 2, retention: { keepLast: 2, keepHourly: 0, keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
    poolMaxFill: 85, historyVerifyEvery: 7 * 86400 });
  t.deepEqual(parseConfig(`${TS}keep = 5\n`, 'b.toml').jobs[0]!.targetSnapshot!.retention, { keepLast: 5 });
  t.deepEqual(parseConfig(TS, 'b.toml').jobs[0]!.targetSnapshot!.retention, {});
});

test('keep for a remote target: the server decides', configError, `${GOOD}target_snapshot = true\nkeep = 3\n`,
  ["blkdelta.toml:8:1: jobs.tools.keep: a remote target's server keeps its snapshots by its own [server.target_snapshot] policy (target_snapshot = true only asks): remove this key"]);
test('target_snapshot_size for a remote target: the server decides', configError, `${GOOD}target_snapshot = true\ntarget_snapshot_size = "1G"\n`,
  ["blkdelta.toml:8:1: jobs.tools.target_snapshot_size: a remote target's server keeps its snapshots by its own [server.target_snapshot] policy (target_snapshot = true only asks): remove this key"]);
test('a remote target with target_snapshot only asks; keep from [defaults] does not apply', (t) => {
  const cfg = parseConfig(`${GOOD.replace('\n[jobs.tools]', '[defaults]\nkeep = 5\ntarget_snapshot = true\n\n[jobs.tools]')}`, 'blkdelta.toml');
  t.deepEqual(cfg.jobs[0]!.targetSnapshot, { keep: 1, retention: {} });
});
test('bad job name', configError, `[jobs."a b"]\nsource = "/a"\ntarget = "/b"\n`,
  ['blkdelta.toml:1:1: jobs."a b": job names use letters, digits, "_", "-" and "." (at most 64, not starting with "." or "-", not ending in ".refused")']);
test('syntax error', configError, `${GOOD}verify = \n`,
  ['blkdelta.toml:7:10: syntax error: invalid value']);

test('several problems are all reported', (t) => {
  const err = t.throws(() => parseConfig(`${GOOD}blok_size = 1\nverify = 3\n`, 'b.toml'), { instanceOf: BlkError });
  t.regex(err!.message, /^2 problems in b.toml:\nb.toml:7:1: jobs.tools.blok_size: unknown key/);
  t.regex(err!.message, /\nb.toml:8:1: jobs.tools.verify: expected true or false, got integer 3$/);
});

test('unknown job name: CONFIG with file:line:col and the defined jobs', (t) => {
  const cfg = parseConfig(`${GOOD}\n[jobs.db]\nsource = "/a"\ntarget = "/b"\n`, 'blkdelta.toml');
  const err = t.throws(() => findJob(cfg, 'tool'), { instanceOf: BlkError });
  t.is(err?.code, ExitCode.CONFIG);
  t.is(err?.message, 'blkdelta.toml:8:1: jobs.tool: no such job (defined: tools, db)');
});

test('a valid file: globals, defaults merged into jobs, endpoints parsed', (t) => {
  const cfg = parseConfig(`${GOOD}snapshot = true
snapshot_size = "10%ORIGIN"
[jobs.tools.ssh]
port = 2222
identity = "/root/.ssh/id_blkdelta"

[defaults]
verify = true
block_size = "1M"
warning_age = "26h"
critical_age = 172800

[jobs.db]
source = "/srv/db.img"
target = "/backup/db.img"
verify = false
bwlimit = "40M/s"
target_snapshot = false
`, 'x.toml');
  t.deepEqual(cfg.jobs.map((j) => j.name), ['tools', 'db']);
  const [tools, db] = cfg.jobs;
  t.deepEqual(tools!.target, { kind: 'remote', user: 'backup', host: 'labstore2001', path: '/dev/backup/tools' });
  t.deepEqual(tools!.snapshot, { lv: 'vg0/tools', size: '10%ORIGIN', maxFill: undefined, poolMaxFill: undefined });
  t.is(tools!.ssh.port, 2222);
  t.is(tools!.verify, true);
  t.is(tools!.blockSize, 1024 * 1024);
  t.is(tools!.warningAge, 26 * 3600);
  t.is(tools!.criticalAge, 172800);
  t.is(tools!.maxDuration, 12 * 3600);
  t.is(db!.verify, false);
  t.is(db!.bwlimit, 40 * 1024 * 1024);
  t.is(db!.targetSnapshot, undefined);
  t.is(cfg.maxConcurrent, 2);
  t.is(cfg.stateDir, '/var/lib/blkdelta');
});

test('key index: multi-line arrays and strings are skipped, quoted keys found', (t) => {
  const idx = indexKeys(`a = [\n  1,\n  2,\n]\nb = """\nx = 1\n"""\n[t."q.k"]\n  "x y" = 1\n`);
  t.deepEqual(idx.at(['b']), { line: 5, col: 1 });
  t.deepEqual(idx.at(['x']), { line: 1, col: 1 }); // not a key: inside the string
  t.deepEqual(idx.at(['t', 'q.k', 'x y']), { line: 9, col: 3 });
  t.deepEqual(idx.at(['t', 'q.k', 'missing']), { line: 8, col: 1 });
});

const duration = test.macro({
  exec(t: ExecutionContext, input: string | number, want: number | RegExp) {
    if (typeof want === 'number') t.is(parseDuration(input), want);
    else t.throws(() => parseDuration(input), { message: want });
  },
  title: (_t, input: string | number, want: number | RegExp) => `duration ${JSON.stringify(input)} -> ${want}`,
});
test(duration, '36h', 129600);
test(duration, '2d', 172800);
test(duration, '90m', 5400);
test(duration, '1h30m', 5400);
test(duration, '1d 12h', 129600);
test(duration, '45s', 45);
test(duration, '3600', 3600);
test(duration, 600, 600);
test(duration, '1.5h', 5400);
test(duration, '36', 36);
test(duration, '36x', /not a duration/);
test(duration, 'h', /not a duration/);
test(duration, '', /not a duration/);
test(duration, '-5', /not a duration/);
test(duration, -5, /must be >= 0/);

const size = test.macro({
  exec(t: ExecutionContext, input: string | number, want: number | RegExp) {
    if (typeof want === 'number') t.is(parseSize(input), want);
    else t.throws(() => parseSize(input), { message: want });
  },
  title: (_t, input: string | number, want: number | RegExp) => `size ${JSON.stringify(input)} -> ${want}`,
});
test(size, '64K', 65536);
test(size, '4MiB', 4 * 1024 * 1024);
test(size, '1g', 1024 ** 3);
test(size, '40M/s', 40 * 1024 * 1024);
test(size, 4096, 4096);
test(size, '4096', 4096);
test(size, '4 X', /not a size/);
test(size, 1.5, /not a whole number of bytes/);

test('formatAge keeps two parts', (t) => {
  t.is(formatAge(0), '0s');
  t.is(formatAge(59), '59s');
  t.is(formatAge(3723), '1h 2m');
  t.is(formatAge(3600), '1h 0m');
  t.is(formatAge(172800), '2d 0h');
  t.is(formatAge(129600), '1d 12h');
});

test('the example config in fixtures/ is valid', (t) => {
  const file = fileURLToPath(new URL('../../fixtures/blkdelta.example.toml', import.meta.url));
  const cfg = loadConfig(file);
  t.deepEqual(cfg.jobs.map((j) => [j.name, j.source.kind, j.target.kind]), [['tools', 'local', 'remote'], ['db', 'local', 'local'], ['web', 'remote', 'local']]);
  t.deepEqual(cfg.jobs[1]!.targetSnapshot, { size: '20%ORIGIN', keep: 3, retention: { keepLast: 3 }, poolMaxFill: undefined, historyVerifyEvery: undefined });
  t.is(cfg.jobs[2]!.ssh.port, 2222);
  t.is(cfg.jobs[2]!.ssh.identity, '/root/.ssh/id_blkdelta');
});

test('bwlimit = 0 means no limit: a job unsets the limit it inherits from [defaults]', (t) => {
  const cfg = parseConfig(`[defaults]\nbwlimit = "40M"\n\n[jobs.a]\nsource = "/a.img"\ntarget = "/b.img"\n\n[jobs.b]\nsource = "/c.img"\ntarget = "/d.img"\nbwlimit = 0\n\n[jobs.c]\nsource = "/e.img"\ntarget = "/f.img"\nbwlimit = "0"\n`, 'x.toml');
  t.deepEqual(cfg.jobs.map((j) => [j.name, j.bwlimit]), [['a', 40 * 1024 * 1024], ['b', undefined], ['c', undefined]]);
  const err = t.throws(() => parseConfig(`[jobs.a]\nsource = "/a.img"\ntarget = "/b.img"\nbwlimit = -1\n`, 'x.toml'), { instanceOf: BlkError });
  t.regex(err!.message, /bwlimit/);
});
