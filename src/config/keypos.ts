// Maps TOML key paths to their line:column in the source text, so that validation errors can say
// "blkdelta.toml:7:1: jobs.tools.blok_size: unknown key" (smol-toml locates only syntax errors).
// Algorithm: one pass over the lines, tracking the current [table] prefix; records the position of
// every table header, every key (dotted keys and one-line inline tables included) and every
// repeated table header. Multi-line strings and arrays are skipped. It never throws: text it does
// not understand is skipped, and lookups fall back to the nearest recorded parent.
// Memory: one entry per key in the file.

export interface Pos { line: number; col: number }

export interface KeyIndex {
  /** Position of a key path, or of its nearest recorded parent, or 1:1. */
  at(path: readonly string[]): Pos;
  /** Table headers or keys that appear twice: the path, the second place and the first. */
  duplicates: { path: string[]; at: Pos; first: Pos }[];
}

const BARE = /^[A-Za-z0-9_-]+/;

/** "jobs.tools.blok_size"; parts that are not bare keys are quoted. */
export function keyName(path: readonly string[]): string {
  return path.map((p) => (/^[A-Za-z0-9_-]+$/.test(p) ? p : JSON.stringify(p))).join('.');
}

/** Reads a dotted key at s[i..]: its parts and the index after it, or null. */
function readKey(s: string, i: number): { parts: string[]; end: number } | null {
  const parts: string[] = [];
  for (;;) {
    while (s[i] === ' ' || s[i] === '\t') i++;
    const q = s[i];
    if (q === '"' || q === "'") {
      const close = q === '"' ? /^"((?:[^"\\]|\\.)*)"/ : /^'([^']*)'/;
      const m = close.exec(s.slice(i));
      if (!m) return null;
      parts.push(q === '"' ? safeJson(m[0]) : m[1]!);
      i += m[0].length;
    } else {
      const m = BARE.exec(s.slice(i));
      if (!m) return null;
      parts.push(m[0]);
      i += m[0].length;
    }
    while (s[i] === ' ' || s[i] === '\t') i++;
    if (s[i] !== '.') return { parts, end: i };
    i++;
  }
}

function safeJson(quoted: string): string {
  try { return JSON.parse(quoted) as string; } catch { return quoted.slice(1, -1); }
}

/** Net [ ] depth change of a line's value part, ignoring strings and comments. */
function bracketDelta(s: string): number {
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '#') break;
    if (c === '"' || c === "'") {
      const j = s.indexOf(c, i + 1);
      if (j < 0) break;
      i = j;
    } else if (c === '[') d++;
    else if (c === ']') d--;
  }
  return d;
}

export function indexKeys(text: string): KeyIndex {
  const pos = new Map<string, Pos>();
  const headers = new Set<string>();
  const keys = new Set<string>();
  const duplicates: KeyIndex['duplicates'] = [];
  const record = (path: string[], p: Pos) => {
    const k = JSON.stringify(path);
    if (!pos.has(k)) pos.set(k, p);
  };
  let prefix: string[] = [];
  let skipUntil: string | null = null; // closing delimiter of a multi-line string
  let depth = 0; // open brackets of a multi-line array
  let inDuplicate = false; // under a repeated [header]: its keys are not reported again
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    if (skipUntil) {
      if (line.includes(skipUntil)) skipUntil = null;
      continue;
    }
    if (depth > 0) { depth += bracketDelta(line); continue; }
    const i = line.search(/\S/);
    if (i < 0 || line[i] === '#') continue;
    const here = { line: n + 1, col: i + 1 };
    if (line[i] === '[') {
      const arr = line[i + 1] === '[';
      const key = readKey(line, i + (arr ? 2 : 1));
      if (!key) continue;
      prefix = key.parts;
      const k = JSON.stringify(prefix);
      inDuplicate = !arr && headers.has(k);
      if (inDuplicate) duplicates.push({ path: prefix, at: here, first: pos.get(k)! });
      headers.add(k);
      for (let len = 1; len <= prefix.length; len++) record(prefix.slice(0, len), here); // [a.b] also places a
      continue;
    }
    const key = readKey(line, i);
    if (!key || line[key.end] !== '=') continue;
    const path = [...prefix, ...key.parts];
    const pk = JSON.stringify(path);
    if (keys.has(pk) && !inDuplicate) duplicates.push({ path, at: here, first: pos.get(pk)! });
    keys.add(pk);
    record(path, here);
    const rest = line.slice(key.end + 1).trimStart();
    for (const q of ['"""', "'''"]) {
      if (rest.startsWith(q) && !rest.slice(3).includes(q)) skipUntil = q;
    }
    if (rest.startsWith('[')) depth = Math.max(0, bracketDelta(rest));
    if (rest.startsWith('{')) scanInline(line, line.length - rest.length + 1, path, n + 1, record);
  }
  return {
    duplicates,
    at(path) {
      for (let len = path.length; len > 0; len--) {
        const p = pos.get(JSON.stringify(path.slice(0, len)));
        if (p) return p;
      }
      return { line: 1, col: 1 };
    },
  };
}

/** Records the keys of a one-line inline table that starts at line[i] (just after the "{"). */
function scanInline(line: string, i: number, path: string[], lineNo: number,
  record: (path: string[], p: Pos) => void): void {
  for (;;) {
    while (line[i] === ' ' || line[i] === '\t' || line[i] === ',') i++;
    const key = readKey(line, i);
    if (!key || line[key.end] !== '=') return;
    record([...path, ...key.parts], { line: lineNo, col: i + 1 });
    i = skipValue(line, key.end + 1);
    if (i < 0) return;
  }
}

/** Index after one inline-table value (string, nested table or array, or bare token), or -1. */
function skipValue(s: string, i: number): number {
  while (s[i] === ' ' || s[i] === '\t') i++;
  const c = s[i];
  if (c === '"' || c === "'") {
    const m = (c === '"' ? /^"(?:[^"\\]|\\.)*"/ : /^'[^']*'/).exec(s.slice(i));
    return m ? i + m[0].length : -1;
  }
  if (c === '{' || c === '[') {
    const close = c === '{' ? '}' : ']';
    let d = 0;
    for (let k = i; k < s.length; k++) {
      if (s[k] === c) d++;
      else if (s[k] === close && --d === 0) return k + 1;
    }
    return -1;
  }
  const m = /^[^,}]*/.exec(s.slice(i));
  return i + (m ? m[0].length : 0);
}
