// `blkdelta server --config FILE`: the [server] table parsed into ServerConfig, every bad key a
// CONFIG error (15) with file:line:col and the key, unknown keys with did-you-mean; flags override.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseServerArgs, serverConfigOf } from '../src/cli/cmd-server.js';
import { BlkError, ExitCode } from '../src/errors.js';
import { loadServerConfig, parseServerConfig } from '../src/server/config.js';
import type { ServerConfig } from '../src/server/policy.js';

const FULL = `[server]
allow = ["/dev/backup/*"]
read_only = false
max_concurrent = 2
wait_timeout = "30m"
state_dir = "/var/lib/blkdelta"

[server.source_snapshot]
size = "20%ORIGIN"
max_fill = 80
pool_max_fill = 90

[server.target_snapshot]
keep_last = 2
size = "20%ORIGIN"
pool_max_fill = 90
`;

test('the issue\'s example parses into ServerConfig', (t) => {
  t.deepEqual(parseServerConfig(FULL, 'server.toml'), {
    allow: ['/dev/backup/*'], readOnly: false, maxConcurrent: 2, waitTimeout: 1800, stateDir: '/var/lib/blkdelta',
    sourceSnapshot: { size: '20%ORIGIN', maxFill: 80, poolMaxFill: 90 },
    targetSnapshot: { size: '20%ORIGIN', poolMaxFill: 90, retention: { keepLast: 2 } },
  } satisfies ServerConfig);
});

const good = test.macro({
  exec: (t, text: string, want: ServerConfig) => t.deepEqual(parseServerConfig(text, 's.toml'), want),
  title: (given) => `good: ${given}`,
});
const MIN = '[server]\nallow = ["/dev/backup/*"]\n';
test('only allow', good, MIN, { allow: ['/dev/backup/*'], readOnly: false, maxConcurrent: undefined, waitTimeout: undefined, stateDir: undefined });
test('defaults of the snapshot tables', good, `${MIN}[server.source_snapshot]\n[server.target_snapshot]\n`, {
  allow: ['/dev/backup/*'], readOnly: false, maxConcurrent: undefined, waitTimeout: undefined, stateDir: undefined,
  sourceSnapshot: { size: '20%ORIGIN', maxFill: 80, poolMaxFill: 90 }, targetSnapshot: { size: '20%ORIGIN', poolMaxFill: 90, retention: { keepLast: 1 } },
});
test('keep is an alias of keep_last; every retention key', good, `${MIN}[server.target_snapshot]\nkeep = 3\nkeep_hourly = 24\nkeep_daily = 7\nkeep_weekly = 4\nkeep_monthly = 12\nsize = "2G"\n`, {
  allow: ['/dev/backup/*'], readOnly: false, maxConcurrent: undefined, waitTimeout: undefined, stateDir: undefined,
  targetSnapshot: { size: '2G', poolMaxFill: 90, retention: { keepLast: 3, keepHourly: 24, keepDaily: 7, keepWeekly: 4, keepMonthly: 12 } },
});
test('wait_timeout 0 and in seconds', good, `${MIN}wait_timeout = 0\nmax_concurrent = 1\n`,
  { allow: ['/dev/backup/*'], readOnly: false, maxConcurrent: 1, waitTimeout: 0, stateDir: undefined });

const bad = test.macro({
  exec(t, text: string, fragments: string[]) {
    const err = t.throws(() => parseServerConfig(text, 's.toml'), { instanceOf: BlkError });
    t.is(err!.code, ExitCode.CONFIG);
    for (const f of fragments) t.true(err!.message.includes(f), `${err!.message}\n  lacks: ${f}`);
  },
  title: (given) => `bad: ${given}`,
});
const S = '[server]\nallow = ["/dev/backup/*"]\n'; // the next line is line 3
test('empty file', bad, '', ['s.toml:1:1: server: no [server] table']);
test('server is not a table', bad, 'server = 3\n', ['s.toml:1:1: server: expected a table, got integer 3']);
test('unknown top-level key', bad, `sever = 1\n${S}`, ['s.toml:1:1: sever: unknown key (did you mean server?)']);
test('jobs table in a server file', bad, `${S}[jobs.x]\nsource = "a"\n`, ['s.toml:3:1: jobs: table not allowed here']);
test('syntax error', bad, '[server\nallow = 1\n', ['s.toml:1:', 'syntax error']);
test('key defined twice', bad, `${S}allow = ["/x/*"]\n`, ['s.toml:3:1: server.allow: defined twice (first defined at line 2)']);
test('allow missing', bad, '[server]\nread_only = true\n', ['s.toml:1:1: server: missing required key "allow"']);
test('allow empty array', bad, '[server]\nallow = []\n', ['s.toml:2:1: server.allow: is empty', 'never means "everything"']);
test('allow empty glob', bad, '[server]\nallow = ["/dev/a/*", ""]\n', ['s.toml:2:1: server.allow: element 2: an empty glob is an error']);
test('allow a string', bad, '[server]\nallow = "/dev/*"\n', ['s.toml:2:1: server.allow: expected an array of globs, got string "/dev/*"']);
test('allow a number', bad, '[server]\nallow = [1]\n', ['s.toml:2:1: server.allow: element 1: expected a glob string, got integer 1']);
test('allow relative', bad, '[server]\nallow = ["dev/*"]\n', ['s.toml:2:1: server.allow: bad --allow glob "dev/*": must be an absolute path pattern']);
test('allow unclosed class', bad, '[server]\nallow = ["/dev/sd[ab"]\n', ['s.toml:2:1: server.allow:', "'[' without a closing ']'"]);
test('unknown key with did-you-mean', bad, `${S}max_concurent = 2\n`, ['s.toml:3:1: server.max_concurent: unknown key (did you mean max_concurrent?)']);
test('read_only a string', bad, `${S}read_only = "yes"\n`, ['s.toml:3:1: server.read_only: expected true or false, got string "yes"']);
test('max_concurrent 0', bad, `${S}max_concurrent = 0\n`, ['s.toml:3:1: server.max_concurrent: 0 is below the minimum 1']);
test('max_concurrent negative', bad, `${S}max_concurrent = -3\n`, ['s.toml:3:1: server.max_concurrent: -3 is below the minimum 1']);
test('max_concurrent huge', bad, `${S}max_concurrent = 100000\n`, ['s.toml:3:1: server.max_concurrent: 100000 is above the maximum 64']);
test('max_concurrent fractional', bad, `${S}max_concurrent = 1.5\n`, ['s.toml:3:1: server.max_concurrent: expected an integer, got number 1.5']);
test('max_concurrent a string', bad, `${S}max_concurrent = "2"\n`, ['s.toml:3:1: server.max_concurrent: expected an integer, got string "2"']);
test('wait_timeout negative', bad, `${S}wait_timeout = -1\n`, ['s.toml:3:1: server.wait_timeout: "-1" is not a duration']);
test('wait_timeout garbage', bad, `${S}wait_timeout = "soon"\n`, ['s.toml:3:1: server.wait_timeout: "soon" is not a duration']);
test('wait_timeout huge', bad, `${S}wait_timeout = "30d"\n`, ['s.toml:3:1: server.wait_timeout: 2592000 seconds is above the maximum of 7 days']);
test('wait_timeout a bool', bad, `${S}wait_timeout = true\n`, ['s.toml:3:1: server.wait_timeout: expected a duration']);
test('state_dir relative', bad, `${S}state_dir = "var/lib"\n`, ['s.toml:3:1: server.state_dir: "var/lib" is not an absolute path']);
test('state_dir empty', bad, `${S}state_dir = ""\n`, ['s.toml:3:1: server.state_dir: must not be empty']);
test('source_snapshot not a table', bad, `${S}source_snapshot = 1\n`, ['s.toml:3:1: server.source_snapshot: expected a table [server.source_snapshot], got integer 1']);
test('source_snapshot bad size', bad, `${S}[server.source_snapshot]\nsize = "20%"\n`, ['s.toml:4:1: server.source_snapshot.size: invalid snapshot size "20%"']);
test('source_snapshot size 0%ORIGIN', bad, `${S}[server.source_snapshot]\nsize = "0%ORIGIN"\n`, ['s.toml:4:1: server.source_snapshot.size: invalid snapshot size "0%ORIGIN"']);
test('source_snapshot size a number', bad, `${S}[server.source_snapshot]\nsize = 5\n`, ['s.toml:4:1: server.source_snapshot.size: expected a string, got integer 5']);
test('source_snapshot max_fill 0', bad, `${S}[server.source_snapshot]\nmax_fill = 0\n`, ['s.toml:4:1: server.source_snapshot.max_fill: 0 is below the minimum 1']);
test('source_snapshot max_fill 101', bad, `${S}[server.source_snapshot]\nmax_fill = 101\n`, ['s.toml:4:1: server.source_snapshot.max_fill: 101 is above the maximum 100']);
test('source_snapshot pool_max_fill a string', bad, `${S}[server.source_snapshot]\npool_max_fill = "90%"\n`, ['s.toml:4:1: server.source_snapshot.pool_max_fill: expected a number from 1 to 100, got string "90%"']);
test('source_snapshot unknown key', bad, `${S}[server.source_snapshot]\nmax_fil = 80\n`, ['s.toml:4:1: server.source_snapshot.max_fil: unknown key (did you mean max_fill?)']);
test('target_snapshot keep and keep_last', bad, `${S}[server.target_snapshot]\nkeep = 1\nkeep_last = 2\n`, ['s.toml:4:1: server.target_snapshot.keep: keep is an alias of keep_last: set only one']);
test('target_snapshot keeps nothing', bad, `${S}[server.target_snapshot]\nkeep_last = 0\nkeep_daily = 0\n`, ['s.toml:3:1: server.target_snapshot: every keep rule is 0']);
test('target_snapshot keep_last negative', bad, `${S}[server.target_snapshot]\nkeep_last = -1\n`, ['s.toml:4:1: server.target_snapshot.keep_last: -1 is below the minimum 0']);
test('target_snapshot keep_daily huge', bad, `${S}[server.target_snapshot]\nkeep_daily = 5000\n`, ['s.toml:4:1: server.target_snapshot.keep_daily: 5000 is above the maximum 1000']);
test('target_snapshot keep_weekly a string', bad, `${S}[server.target_snapshot]\nkeep_weekly = "4"\n`, ['s.toml:4:1: server.target_snapshot.keep_weekly: expected an integer, got string "4"']);
test('target_snapshot keep_monthly fractional', bad, `${S}[server.target_snapshot]\nkeep_monthly = 0.5\n`, ['s.toml:4:1: server.target_snapshot.keep_monthly: expected an integer, got number 0.5']);
test('target_snapshot keep_hourly a bool', bad, `${S}[server.target_snapshot]\nkeep_hourly = true\n`, ['s.toml:4:1: server.target_snapshot.keep_hourly: expected an integer, got boolean true']);
test('target_snapshot unknown key', bad, `${S}[server.target_snapshot]\nkeep_lats = 2\n`, ['s.toml:4:1: server.target_snapshot.keep_lats: unknown key (did you mean keep_last?)']);
test('target_snapshot bad size', bad, `${S}[server.target_snapshot]\nsize = "lots"\n`, ['s.toml:4:1: server.target_snapshot.size: invalid snapshot size "lots"']);
test('target_snapshot pool_max_fill 0', bad, `${S}[server.target_snapshot]\npool_max_fill = 0\n`, ['s.toml:4:1: server.target_snapshot.pool_max_fill: 0 is below the minimum 1']);
test('several problems are all listed', bad, `${S}read_only = 1\nmax_concurrent = 0\n`, ['2 problems in s.toml:', 's.toml:3:1: server.read_only', 's.toml:4:1: server.max_concurrent']);

test('a missing file is CONFIG naming it', (t) => {
  const err = t.throws(() => loadServerConfig('/nonexistent/server.toml'), { instanceOf: BlkError });
  t.is(err!.code, ExitCode.CONFIG);
  t.regex(err!.message, /cannot read server config \/nonexistent\/server.toml: ENOENT/);
});

test('flags override the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-srvcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 's.toml');
  writeFileSync(file, FULL);
  const fromFile = await serverConfigOf(parseServerArgs(['--config', file]));
  t.deepEqual(fromFile.allow, ['/dev/backup/*']);
  t.is(fromFile.maxConcurrent, 2);
  const over = await serverConfigOf(parseServerArgs([`--config=${file}`, '--allow', '/srv/a/*', '/srv/b/*', '--read-only', '--max-concurrent', '5',
    '--wait-timeout', '0', '--state-dir', '/run/blkdelta']));
  t.deepEqual(over, { ...fromFile, allow: ['/srv/a/*', '/srv/b/*'], readOnly: true, maxConcurrent: 5, waitTimeout: 0, stateDir: '/run/blkdelta' });
  const bad = await t.throwsAsync(() => serverConfigOf(parseServerArgs(['--config', join(dir, 'none.toml')])), { instanceOf: BlkError });
  t.is(bad!.code, ExitCode.CONFIG);
});
