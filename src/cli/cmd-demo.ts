// `blkdelta demo`: the newcomer's first run, on two image files in a temp dir. It runs the real
// commands, one after the other, and prints each one before its output:
//   a first full copy as a job, a change to the source (scattered blocks, a contiguous range, a
//   zeroed range), a dry run, the delta sync, a verify, the status table and the monitoring check.
// The temp dir is removed at the end unless --keep.
import { spawnSync } from 'node:child_process';
import { randomFillSync, randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { BIN_PATH } from '../transport/local.js';
import { parseSize } from '../units.js';
import { type Command, out } from './context.js';

interface Args {
  size: string;
  keep?: boolean;
}

const MiB = 1024 * 1024;

export const demoCommand: Command<Args> = {
  command: 'demo',
  describe: 'run a built-in demo on two image files in a temp dir (sync, change, delta sync, verify, check)',
  builder: (y) =>
    y
      .option('size', { type: 'string', default: '64M', describe: 'size of the demo images' })
      .option('keep', { type: 'boolean', describe: 'keep the temp dir (images, config, state) afterwards' })
      .example('blkdelta demo', 'two 64 MiB images in a temp dir, removed afterwards')
      .epilogue(exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL])),
  handler: (argv) => {
    const size = sizeArg(argv.size);
    if (size < 16 * MiB || size % MiB) throw new BlkError(ExitCode.USAGE, `--size ${argv.size}: the demo needs whole MiB, at least 16M`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blkdelta-demo-'));
    try {
      runDemo(dir, size);
    } finally {
      if (argv.keep) out(`\n(kept ${dir})`);
      else fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};

function sizeArg(v: string): number {
  try {
    return parseSize(v, '--size');
  } catch (err) {
    throw new BlkError(ExitCode.USAGE, (err as Error).message);
  }
}

function runDemo(dir: string, size: number): void {
  const src = path.join(dir, 'source.img');
  const dst = path.join(dir, 'target.img');
  const config = path.join(dir, 'blkdelta.toml');
  writeSource(src, size);
  fs.writeFileSync(dst, '');
  fs.truncateSync(dst, size);
  fs.writeFileSync(config, [
    `state_dir = "${path.join(dir, 'state')}"`, 'max_concurrent = 1', '',
    '[jobs.demo]', `source = "${src}"`, `target = "${dst}"`, 'verify = true', '',
  ].join('\n'));
  out(`# demo in ${dir}: ${size / MiB} MiB source.img (random data, a zero tail), empty target.img`);
  out(`# the job is defined in ${config}:\n${fs.readFileSync(config, 'utf8').replace(/^/gm, '#   ')}`);
  step('first run of the job: a full copy', ['run', 'demo', '--config', config], [0]);
  const changed = changeSource(src, size);
  out(`\n# changed the source: ${changed.scattered} scattered 4 KiB blocks, 1 MiB contiguous at ${changed.contiguousAt}, 2 MiB zeroed at ${changed.zeroAt}`);
  step('what differs now (dry run: writes nothing, exit 3 = differs)', ['sync', '--dry-run', src, dst], [ExitCode.DIFFERENT]);
  step('second run of the job: only the changed blocks travel', ['run', 'demo', '--config', config], [0]);
  step('verify source against target (exit 0 = identical)', ['verify', src, dst], [0]);
  step('the result records', ['status', '--config', config], [0]);
  step('the monitoring check (Nagios/Icinga plugin output)', ['check', 'demo', '--config', config], [0]);
  out('\n# demo finished: every step gave the expected exit code');
}

function step(what: string, args: string[], expect: number[]): void {
  out(`\n# ${what}\n$ blkdelta ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`);
  const r = spawnSync(process.execPath, [BIN_PATH, ...args, ...(['sync', 'verify'].includes(args[0]!) ? ['--no-progress'] : [])], { stdio: ['ignore', 'inherit', 1] });
  const code = r.status ?? 128;
  out(`(exit ${code})`);
  if (!expect.includes(code)) {
    throw new BlkError(ExitCode.INTERNAL, `demo step "blkdelta ${args[0]}" exited ${code}, expected ${expect.join(' or ')}`);
  }
}

/** Random data in the first three quarters, zeros after (a sparse tail), 1 MiB at a time. */
function writeSource(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  const buf = Buffer.alloc(MiB);
  for (let pos = 0; pos < (size * 3) / 4; pos += MiB) fs.writeSync(fd, randomFillSync(buf), 0, MiB, pos);
  fs.ftruncateSync(fd, size);
  fs.closeSync(fd);
}

function changeSource(file: string, size: number): { scattered: number; contiguousAt: number; zeroAt: number } {
  const fd = fs.openSync(file, 'r+');
  const blocks = size / 4096;
  const scattered = Math.max(1, Math.floor(blocks / 100));
  const block = Buffer.alloc(4096);
  for (let i = 0; i < scattered; i++) fs.writeSync(fd, randomFillSync(block), 0, 4096, randomInt(blocks) * 4096);
  const contiguousAt = 4 * MiB;
  fs.writeSync(fd, randomFillSync(Buffer.alloc(MiB)), 0, MiB, contiguousAt);
  const zeroAt = 8 * MiB;
  fs.writeSync(fd, Buffer.alloc(2 * MiB), 0, 2 * MiB, zeroAt);
  fs.closeSync(fd);
  return { scattered, contiguousAt, zeroAt };
}
