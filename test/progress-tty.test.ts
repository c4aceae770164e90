// The TTY progress bar, on a real pseudo-terminal (util-linux `script`): one ETA format (H:MM:SS),
// the network rate shown, and the bar cleared ("\r\e[K") before any message: here the warning
// that SIGINT prints while the bar is drawn, then the interrupted run's error; exit 130.
import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { BIN } from './helpers/jobs.js';

test('the bar: H:MM:SS ETA, network rate, cleared before the SIGINT warning and the error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blkdelta-tty-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'src.img');
  const dst = join(dir, 'dst.img');
  writeFileSync(src, randomBytes(32 * 1024 * 1024));
  writeFileSync(dst, Buffer.alloc(32 * 1024 * 1024));
  // --bwlimit keeps the run going for several seconds, so the bar is drawn when SIGINT arrives
  const cmd = `exec ${process.execPath} ${BIN} sync --bwlimit 2M ${src} ${dst}`;
  const script = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => { script.kill('SIGKILL'); });
  let output = '';
  const barDrawn = new Promise<void>((resolve) => {
    script.stdout.on('data', (d: Buffer) => {
      output += d.toString('latin1');
      if (/\] \d+\.\d% .* ETA /.test(output)) resolve();
    });
  });
  const exited = new Promise<number | null>((resolve) => script.on('close', (code) => resolve(code)));
  await barDrawn;
  const child = (await execa('pgrep', ['-P', String(script.pid)])).stdout.trim().split('\n')[0]!;
  process.kill(Number(child), 'SIGINT');
  t.is(await exited, 130, output);
  const bars = [...output.matchAll(/\r\[[#.]{30}\] ([^\r\n\x1b]*)/g)].map((m) => m[1]!);
  t.true(bars.length > 0, output);
  for (const b of bars) t.regex(b, /^\d+\.\d% \S+ \S+\/\S+ \S+ read \S+ \S+\/s net \S+ \S+\/s differ \S+ \S+ ETA (\d+:\d\d:\d\d|--:--:--)$/);
  t.regex(output, /\r\x1b\[Kblkdelta: warning: SIGINT received/);
  t.notRegex(output, /\] [^\r\n]*blkdelta: (warning|error)/, 'no message printed on the bar');
  t.regex(output, /blkdelta: error: .*interrupted/);
});
