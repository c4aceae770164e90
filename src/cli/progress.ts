// Progress on stderr: on a TTY a bar with rate and ETA, redrawn at most 10 times a second;
// otherwise (journald, cron, pipes) one plain line every 5 seconds through the log (so under
// systemd it carries the <6> priority prefix). `label` names the job in `run`'s lines.
import type { Progress } from '../engine/types.js';
import { log } from '../log.js';
import { formatBytes, formatDuration, formatRate } from '../units.js';

export function progressReporter(enabled: boolean, label = ''): { update: (p: Progress) => void; end: () => void } {
  if (!enabled) return { update: () => {}, end: () => {} };
  const tty = !!process.stderr.isTTY;
  const every = tty ? 100 : 5000;
  let last = Date.now();
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < every) return;
      last = now;
      const frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : 1;
      const eta = frac > 0 ? (p.elapsedMs / frac) * (1 - frac) : 0;
      const stats = `${(frac * 100).toFixed(1)}% ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} ${formatRate(p.bytesDone, p.elapsedMs)} differ ${formatBytes(p.bytesDiffering)} ETA ${formatDuration(eta)}`;
      if (tty) {
        const width = 30;
        const full = Math.round(frac * width);
        process.stderr.write(`\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${stats}\x1b[K`);
        drawn = true;
      } else {
        log.info(`${label}progress ${stats}`);
      }
    },
    end() {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}
