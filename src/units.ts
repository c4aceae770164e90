// Sizes, rates and durations for humans and for the command line and config file: one module.
// Parsers throw a plain Error saying what is wrong; callers add the option or key name.

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/**
 * Bytes in a size: an integer, or a number with K/M/G/T (binary: "64K", "4MiB", "1G" and "1gb"
 * alike; a trailing "/s" is allowed for rates). `what` names the value in the message.
 */
export function parseSize(v: string | number, what = 'size'): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${what} ${v} is not a whole number of bytes`);
    return v;
  }
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?(?:\/s)?$/i.exec(v.trim());
  if (!m) throw new Error(`${what} "${v}" is not a size (use bytes or e.g. 4096, 4K, 64K, 4M, 1G)`);
  const n = Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(n)) throw new Error(`${what} "${v}" is too large`);
  return n;
}

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
  if (end === 0 || end !== s.length) throw new Error(`"${v}" is not a duration (use seconds or e.g. 90m, 36h, 2d, 1h30m)`);
  return checkSeconds(total, v);
}

function checkSeconds(n: number, shown: string): number {
  if (!Number.isFinite(n) || n < 0) throw new Error(`"${shown}" is not a duration (must be >= 0 seconds)`);
  return n;
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Bytes per second for a byte count over milliseconds: "812.4 MiB/s". */
export function formatRate(bytes: number, ms: number): string {
  return `${formatBytes(ms > 0 ? (bytes * 1000) / ms : 0)}/s`;
}

/** A run's length, precise for short runs: 290 ms → "0.29s", 75 s → "1m15s", "2h05m". */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return ms < 10_000 ? `${(ms / 1000).toFixed(2)}s` : `${s}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

/** An age or a job's duration in seconds, two largest units: "1d 2h", "3h 0m", "5m 6s", "7s". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const units = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const;
  if (s < 60) return `${s}s`;
  const i = units.findIndex(([, len]) => s >= len);
  const [u1, l1] = units[i]!;
  const [u2, l2] = units[i + 1]!;
  return `${Math.floor(s / l1)}${u1} ${Math.floor((s % l1) / l2)}${u2}`;
}
