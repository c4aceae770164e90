// TOML config files (the jobs file and the server's file): text -> smol-toml, with every key's
// line:col indexed (keypos.ts) so that each problem reads "FILE:LINE:COL: key.path: what is wrong";
// readTable() checks a table's keys against their specs (values.ts), with a did-you-mean for an
// unknown key; throwProblems() throws BlkError CONFIG listing them all. Pure but for the parse;
// memory: the file.
import { createRequire } from 'node:module';
import { BlkError, ExitCode } from '../errors.js';
import { indexKeys, keyName, type KeyIndex } from './keypos.js';
import { checkValue, type KeySpec } from './values.js';

export type Table = Record<string, unknown>;

// smol-toml (its CommonJS build) is loaded on the first parse: a server without --config never
// needs it, and it starts for every sync.
type Toml = typeof import('smol-toml');
let tomlLib: Toml | undefined;
const toml = (): Toml => (tomlLib ??= createRequire(import.meta.url)('smol-toml') as Toml);
export type At = (path: readonly string[], msg: string) => void;

/**
 * TOML text parsed and its keys indexed (the server config reads its file this way too).
 * Duplicates and a syntax error are already in `problems`; `at` adds "FILE:LINE:COL: key: msg".
 */
export function readToml(text: string, file: string): { doc: Table; idx: KeyIndex; problems: string[]; at: At } {
  const idx = indexKeys(text);
  const problems: string[] = [];
  const at = (path: readonly string[], msg: string) => {
    const p = idx.at(path);
    problems.push(`${file}:${p.line}:${p.col}: ${keyName(path)}: ${msg}`);
  };
  for (const d of idx.duplicates) {
    const what = d.path[0] === 'jobs' && d.path.length === 2 ? `duplicate job "${d.path[1]}"` : 'defined twice';
    problems.push(`${file}:${d.at.line}:${d.at.col}: ${keyName(d.path)}: ${what} (first defined at line ${d.first.line})`);
  }
  let doc: Table = {};
  if (problems.length === 0) {
    try {
      doc = toml().parse(text) as Table;
    } catch (err) {
      if (!(err instanceof toml().TomlError)) throw err;
      const first = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      problems.push(`${file}:${err.line}:${err.column}: syntax error: ${first}`);
    }
  }
  return { doc, idx, problems, at };
}

/** Throws BlkError CONFIG listing every problem (none: returns). */
export function throwProblems(problems: readonly string[], file: string): void {
  if (problems.length === 0) return;
  const head = problems.length === 1 ? '' : `${problems.length} problems in ${file}:\n`;
  throw new BlkError(ExitCode.CONFIG, head + problems.join('\n'));
}

/** Where readTable looks besides the table's own keys. */
export interface TableOpts {
  /** Sub-tables of this table (read by the caller). */
  tables?: readonly string[];
  /** Tables of the file that may not appear here: "table not allowed here". */
  tablesElsewhere?: ReadonlySet<string>;
  /** Keys valid at another level of the file, with where they belong ("a top-level key ..."). */
  keysElsewhere?: Readonly<Record<string, string>>;
}

/**
 * Checks the plain keys of one table. An unknown key gets what helps most: the table it belongs
 * in when it is valid elsewhere, else "table not allowed here", else a did-you-mean over the
 * table's keys and sub-tables.
 */
export function readTable(t: Table, path: string[], specs: Record<string, KeySpec>, at: At, opts: TableOpts = {}): Table {
  const { tables = [], tablesElsewhere = new Set(), keysElsewhere = {} } = opts;
  const out: Table = {};
  for (const [k, v] of Object.entries(t)) {
    if (tables.includes(k)) continue;
    const spec = specs[k];
    if (!spec) {
      const where = Object.hasOwn(keysElsewhere, k) ? `not allowed here: ${keysElsewhere[k]}` : undefined;
      at([...path, k], where ?? (tablesElsewhere.has(k) ? 'table not allowed here' : `unknown key${suggest(k, [...Object.keys(specs), ...tables])}`));
      continue;
    }
    try {
      out[k] = checkValue(spec, v);
    } catch (err) {
      at([...path, k], (err as Error).message);
    }
  }
  return out;
}

export function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (v as object).constructor?.name !== 'TomlDate';
}

function suggest(k: string, names: readonly string[]): string {
  const close = names.find((s) => editDistance(s, k) <= 2);
  return close ? ` (did you mean ${close}?)` : '';
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}
