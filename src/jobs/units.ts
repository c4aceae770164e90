// Parsing and printing of the human units used in the config and on the command line:
// durations ("36h", "2d", "90m", "1h30m", "45s", or plain seconds) and sizes ("64K", "4MiB", bytes).
// Pure functions: a bad value throws a plain Error whose message says what is wrong; callers wrap it
// with the key or option name.

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Seconds in a duration: a number of seconds, or parts like "1d12h", "90m", "36h". */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') return checkSeconds(v, String(v));
  const s = v.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(s)) return checkSeconds(Number(s), v);
  const re = /\s*(\d+(?:\.\d+)?)\s*([smhdw])/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    end = re.lastIndex;
  }
  if (end === 0 || end !== s.length) {
    throw new Error(`"${v}" is not a duration (use seconds or e.g. 90m, 36h, 2d, 1h30m)`);
  }
  return checkSeconds(total, v);
}

function checkSeconds(n: number, shown: string): number {
  if (!Number.isFinite(n) || n < 0) throw new Error(`"${shown}" is not a duration (must be >= 0 seconds)`);
  return n;
}

/** Bytes in a size: an integer, or a number with K/M/G/T (binary units; "KiB", "KB" and "k" alike). */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${v} is not a size in bytes`);
    return v;
  }
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?(?:\/s)?$/i.exec(v.trim());
  if (!m) throw new Error(`"${v}" is not a size (use bytes or e.g. 64K, 4M, 1G)`);
  const n = Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(n)) throw new Error(`"${v}" is too large`);
  return n;
}

/** "1d 2h", "3h 0m", "5m 6s", "7s": the largest unit and the next one, for messages. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const units = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const;
  if (s < 60) return `${s}s`;
  const i = units.findIndex(([, len]) => s >= len);
  const [u1, l1] = units[i]!;
  const [u2, l2] = units[i + 1]!;
  return `${Math.floor(s / l1)}${u1} ${Math.floor((s % l1) / l2)}${u2}`;
}

/** "1.5 GiB", "512 B": for tables and messages. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
