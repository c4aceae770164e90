// Progress on stderr: on a TTY a bar with the read and network rates and an ETA, redrawn at most
// 10 times a second and cleared before any log line (warnings never print on the bar); otherwise
// (journald, cron, pipes) one plain line every 5 seconds through the log (so under systemd it
// carries the <6> priority prefix). The ETA is always H:MM:SS. `label` names the job in `run`'s lines.
import type { Progress } from '../engine/types.js';
import { log, setBeforeLog } from '../log.js';
import { formatBytes, formatRate } from '../units.js';

/** Seconds as H:MM:SS, one format from the first second to days ("--:--:--" when unknown). */
export function etaText(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--:--';
  const s = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
}

/** The figures of one progress line (pure). */
export function progressText(p: Progress): string {
  const frac = p.bytesTotal ? Math.min(1, p.bytesDone / p.bytesTotal) : 1;
  const eta = frac > 0 ? (p.elapsedMs / 1000 / frac) * (1 - frac) : NaN;
  const net = p.bytesExchanged !== undefined ? ` net ${formatRate(p.bytesExchanged, p.elapsedMs)}` : '';
  return `${(frac * 100).toFixed(1)}% ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} read ${formatRate(p.bytesDone, p.elapsedMs)}${net} differ ${formatBytes(p.bytesDiffering)} ETA ${etaText(eta)}`;
}

export function progressReporter(enabled: boolean, label = ''): { update: (p: Progress) => void; end: () => void } {
  if (!enabled) return { update: () => {}, end: () => {} };
  const tty = !!process.stderr.isTTY;
  const every = tty ? 100 : 5000;
  let last = Date.now();
  let drawn = false;
  const clear = () => {
    if (drawn) process.stderr.write('\r\x1b[K');
    drawn = false;
  };
  if (tty) setBeforeLog(clear);
  return {
    update(p) {
      const now = Date.now();
      if (now - last < every) return;
      last = now;
      if (!tty) return log.info(`${label}progress ${progressText(p)}`);
      const width = 30;
      const full = Math.round((p.bytesTotal ? Math.min(1, p.bytesDone / p.bytesTotal) : 1) * width);
      process.stderr.write(`\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${progressText(p)}\x1b[K`);
      drawn = true;
    },
    end() {
      clear();
      if (tty) setBeforeLog(undefined);
    },
  };
}
