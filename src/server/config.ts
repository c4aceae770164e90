// `blkdelta server --config FILE`: the backup host's own policy (docs/ssh.md), read once at start.
//   text -> jobs/config.ts readToml (syntax errors and duplicates with line:col) -> [server] and
//   its sub-tables checked key by key (jobs/schema.ts checkValue; unknown keys get did-you-mean)
//   -> ServerConfig (server/policy.ts) -> command-line flags override file values (mergeFlags).
// Every problem is "FILE:LINE:COL: server.key: what is wrong"; any problem throws BlkError CONFIG
// listing them all. An empty allow glob is an error, never "everything". Reads only; memory: the file.
import { readFileSync } from 'node:fs';
import { BlkError, ExitCode, describe } from '../errors.js';
import { isTable, readTable, readToml, throwProblems, type At, type Table } from '../config/toml.js';
import { describeValue, type KeySpec } from '../config/values.js';
import { DEFAULT_COW_SIZE, sizeArgs } from '../lvm/argv.js';
import { DEFAULT_POOL_MAX_FILL } from '../lvm/pool.js';
import { MAX_WAIT_TIMEOUT, makePolicy, type Retention, type ServerConfig } from './policy.js';

/** Tables of the jobs file (blkdelta.toml): "table not allowed here" in a server file. */
const JOBS_FILE_TABLES: ReadonlySet<string> = new Set(['defaults', 'jobs', 'ssh']);

/** Longest wait_timeout / --wait-timeout, and its default (policy.ts has them). */
export { MAX_WAIT_TIMEOUT, DEFAULT_WAIT_TIMEOUT } from './policy.js';
/** Where the slot locks live when neither state_dir nor --state-dir says. */
export { DEFAULT_STATE_DIR } from '../paths.js';
/** Snapshot fill (percent) at which a pull from a source snapshot aborts, when the file does not say. */
export const DEFAULT_SOURCE_MAX_FILL = 80;

const SERVER_KEYS: Record<string, KeySpec> = {
  allow: { kind: 'string' }, // checked by allowOf; listed here for did-you-mean
  read_only: { kind: 'bool' },
  max_concurrent: { kind: 'int', min: 1, max: 64 },
  wait_timeout: { kind: 'duration' },
  state_dir: { kind: 'path' },
};
const SOURCE_SNAPSHOT_KEYS: Record<string, KeySpec> = {
  size: { kind: 'string' },
  max_fill: { kind: 'percent' },
  pool_max_fill: { kind: 'percent' },
  incremental: { kind: 'bool' },
};
const KEEP = { kind: 'int', min: 0, max: 1000 } as const;
const TARGET_SNAPSHOT_KEYS: Record<string, KeySpec> = {
  keep: KEEP, keep_last: KEEP, keep_hourly: KEEP, keep_daily: KEEP, keep_weekly: KEEP, keep_monthly: KEEP,
  size: { kind: 'string' },
  pool_max_fill: { kind: 'percent' },
};
const RETENTION_KEYS: ReadonlyArray<[string, keyof Retention]> = [
  ['keep_last', 'keepLast'], ['keep_hourly', 'keepHourly'], ['keep_daily', 'keepDaily'], ['keep_weekly', 'keepWeekly'], ['keep_monthly', 'keepMonthly'],
];

/** Reads and validates FILE; throws BlkError CONFIG naming file:line:col and the key. */
export function loadServerConfig(file: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BlkError(ExitCode.CONFIG, `cannot read server config ${file}: ${describe(err)}`, { cause: err });
  }
  return parseServerConfig(text, file);
}

/** Validates server config text; `file` is only used in messages. */
export function parseServerConfig(text: string, file: string): ServerConfig {
  const { doc, problems, at } = readToml(text, file);
  const cfg = problems.length ? undefined : buildServerConfig(doc, at);
  throwProblems(problems, file);
  return cfg!;
}

function buildServerConfig(doc: Table, at: At): ServerConfig | undefined {
  readTable(doc, [], { server: { kind: 'string' } }, at, { tables: ['server'], tablesElsewhere: JOBS_FILE_TABLES }); // any other top-level key is unknown
  if (!isTable(doc.server)) return void at(['server'], doc.server === undefined ? 'no [server] table' : `expected a table, got ${describeValue(doc.server)}`);
  const t = doc.server;
  const v = readTable(t, ['server'], SERVER_KEYS, at, { tables: ['allow', 'source_snapshot', 'target_snapshot'] });
  const allow = allowOf(t, at);
  if (v.wait_timeout !== undefined && (v.wait_timeout as number) > MAX_WAIT_TIMEOUT) at(['server', 'wait_timeout'], `${v.wait_timeout as number} seconds is above the maximum of 7 days`);
  const cfg: ServerConfig = {
    allow: allow ?? [], readOnly: (v.read_only as boolean) ?? false,
    maxConcurrent: v.max_concurrent as number | undefined, waitTimeout: v.wait_timeout as number | undefined,
    stateDir: v.state_dir as string | undefined,
  };
  const src = subTable(t, 'source_snapshot', SOURCE_SNAPSHOT_KEYS, at);
  if (src) {
    cfg.sourceSnapshot = { size: (src.size as string) ?? DEFAULT_COW_SIZE, maxFill: (src.max_fill as number) ?? DEFAULT_SOURCE_MAX_FILL, poolMaxFill: (src.pool_max_fill as number) ?? DEFAULT_POOL_MAX_FILL };
    if (src.incremental === false) cfg.sourceSnapshot.incremental = false; // no base kept here for incremental pulls
  }
  const tgt = subTable(t, 'target_snapshot', TARGET_SNAPSHOT_KEYS, at);
  if (tgt) cfg.targetSnapshot = { size: (tgt.size as string) ?? DEFAULT_COW_SIZE, poolMaxFill: (tgt.pool_max_fill as number) ?? DEFAULT_POOL_MAX_FILL, retention: retentionOf(tgt, at) };
  return cfg;
}

/** allow: a non-empty array of absolute, non-empty globs (required: a forced command must say what it serves). */
function allowOf(t: Table, at: At): string[] | undefined {
  const path = ['server', 'allow'];
  const v = t.allow;
  if (v === undefined) return void at(['server'], 'missing required key "allow" (globs of the device paths clients may open, e.g. allow = ["/dev/backup/*"])');
  if (!Array.isArray(v)) return void at(path, `expected an array of globs, got ${describeValue(v)}`);
  if (v.length === 0) return void at(path, 'is empty: list the device paths clients may open (an empty list never means "everything")');
  for (const [i, g] of v.entries()) {
    if (typeof g !== 'string') return void at(path, `element ${i + 1}: expected a glob string, got ${describeValue(g)}`);
    if (g === '') return void at(path, `element ${i + 1}: an empty glob is an error, never "everything"`);
  }
  try {
    return makePolicy(v as string[], false).allow;
  } catch (err) {
    return void at(path, (err as Error).message);
  }
}

/** [server.NAME]: its keys checked, and `size` checked as an lvcreate size; undefined when absent. */
function subTable(t: Table, name: string, specs: Record<string, KeySpec>, at: At): Table | undefined {
  const v = t[name];
  if (v === undefined) return undefined;
  if (!isTable(v)) return void at(['server', name], `expected a table [server.${name}], got ${describeValue(v)}`);
  const out = readTable(v, ['server', name], specs, at);
  if (typeof out.size === 'string') {
    try {
      sizeArgs(out.size);
    } catch (err) {
      at(['server', name, 'size'], (err as Error).message);
    }
  }
  return out;
}

/** The retention rules; keep is an alias of keep_last (not both); no rule at all keeps the last 1. */
function retentionOf(t: Table, at: At): Retention {
  if (t.keep !== undefined && t.keep_last !== undefined) at(['server', 'target_snapshot', 'keep'], 'keep is an alias of keep_last: set only one');
  const r: Retention = {};
  for (const [key, field] of RETENTION_KEYS) {
    const n = (key === 'keep_last' ? t.keep_last ?? t.keep : t[key]) as number | undefined;
    if (n !== undefined) r[field] = n;
  }
  if (Object.keys(r).length === 0) return { keepLast: 1 };
  if (Object.values(r).every((n) => n === 0)) at(['server', 'target_snapshot'], 'every keep rule is 0: the policy would keep no snapshot (set keep_last = 1 or more)');
  return r;
}
