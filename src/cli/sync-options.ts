// Options shared by sync and verify, and the summary printers.
import type { Argv } from 'yargs';
import { BlkError, ExitCode } from '../errors.js';
import { SIZE_POLICIES, type SizePolicy, type SyncSummary } from '../engine/types.js';
import { formatBytes, formatDuration, formatRate } from '../units.js';
import { parseSize } from '../units.js';
import { inSeconds, out, outJson } from './context.js';
import { remoteOptions } from '../transport/connect.js';

export interface CommonArgs {
  src: string;
  dst: string;
  'block-size': string;
  'size-policy': SizePolicy;
  json?: boolean;
  progress?: boolean;
  quiet?: boolean;
}

export function commonOptions<T>(y: Argv<T>) {
  return remoteOptions(y)
    .positional('src', { type: 'string', demandOption: true, describe: 'source: image file, block device, or [user@]host:/path' })
    .positional('dst', { type: 'string', demandOption: true, describe: 'target: image file, block device, or [user@]host:/path' })
    .option('block-size', { alias: 'b', type: 'string', default: '4K', describe: 'block size, a power of two from 512 to 16M (e.g. 4K, 64K, 1M)' })
    .option('size-policy', { choices: SIZE_POLICIES, default: 'strict' as SizePolicy, describe: 'when sizes differ: strict refuses, grow extends a file target, min compares the common prefix' })
    .option('json', { type: 'boolean', describe: 'print the summary as JSON on stdout' })
    .option('progress', { type: 'boolean', default: true, describe: 'progress on stderr (a bar on a TTY, a line every 5 s otherwise); --no-progress to disable' })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'no progress, no summary (errors still go to stderr)' });
}

export function blockSizeOf(argv: { 'block-size': string }): number {
  try {
    return parseSize(argv['block-size'], '--block-size');
  } catch (err) {
    throw new BlkError(ExitCode.USAGE, (err as Error).message);
  }
}

/** print: where the lines go (stderr when stdout carries a patch). */
export function printSummary(s: SyncSummary, argv: { json?: boolean; quiet?: boolean }, print: (line: string) => void = out): void {
  if (argv.json) return outJson(inSeconds(s));
  const out = print;
  if (argv.quiet) return;
  const bs = s.blockSize;
  const verb = { write: 'synced', 'dry-run': 'dry run of', compare: 'verified', patch: 'patch from' }[s.mode];
  out(`${verb} ${s.source} -> ${s.target}${s.mode === 'patch' ? ` (patch ${formatBytes(s.patchBytes ?? 0)})` : ''} in ${formatDuration(s.durationMs)} (${formatRate(s.comparedBytes, s.durationMs)})`);
  out(`  compared   ${s.comparedBytes} bytes: ${s.blocksCompared} blocks of ${bs}`);
  out(`  differing  ${s.blocksDiffering} blocks (${formatBytes(Math.min(s.blocksDiffering * bs, s.comparedBytes))}), ${s.blocksZero} of them all-zero`);
  if (s.mode === 'write') out(`  written    ${s.blocksWritten} blocks (${formatBytes(s.bytesWritten)})${s.verified ? ', re-read and verified' : ''}${s.grown ? `, target grown to ${s.sourceSize} bytes` : ''}`);
  if (s.mode === 'patch') out(`  patch      ${s.records} records, ${formatBytes(s.bytesWritten)} of block data, ${s.patchBytes} bytes`);
  if (s.incremental) out(`  run        ${incrementalLine(s.incremental)}`);
  out(`  read       source ${formatBytes(s.bytesReadSource)}, target ${formatBytes(s.bytesReadTarget)}`);
  out(`  exchanged  sent ${formatBytes(s.bytesSent)}, received ${formatBytes(s.bytesReceived)}`);
  if (s.sourceIo || s.targetIo) out(`  cache      source ${s.sourceIo ?? 'unknown'}; target ${s.targetIo ?? 'unknown'}`);
  if (s.firstDiffs.length && s.mode !== 'write') out(`  first differing offsets: ${s.firstDiffs.join(', ')}`);
}

/** "incremental: 1.2 MiB changed since base X, 128 sampled blocks equal" or "full compare: why". */
function incrementalLine(r: NonNullable<SyncSummary['incremental']>): string {
  const base = r.newBase ? `; base now ${r.newBase}` : '';
  if (r.kind === 'full') return `full compare: ${r.reason ?? 'no reason recorded'}${base}`;
  const sampled = r.sampleBlocks ? `, ${r.sampleBlocks} sampled blocks outside them equal` : '';
  return `incremental: ${formatBytes(r.changedBytes ?? 0)} changed since base ${r.base}${sampled}${base}`;
}
