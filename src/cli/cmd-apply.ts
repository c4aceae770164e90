// `blkdelta apply PATCH DST`: checks the whole patch file, then writes it onto DST (an image file or
// a block device). A corrupt, truncated or mismatched patch writes nothing. See src/engine/apply.ts.
import { ExitCode, exitStatusText } from '../errors.js';
import { applyPatch, type ApplySummary } from '../engine/apply.js';
import { cli, type Command, inSeconds, out, outJson } from './context.js';

interface ApplyArgs { patch: string; target: string; json: boolean }

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function applyText(s: ApplySummary): string {
  const grown = s.grown ? `, grew it from ${s.sizeBefore} to ${s.sizeAfter} bytes` : '';
  return `applied ${s.patch} to ${s.target}: ${s.records} records, ${mib(s.bytesWritten)} written (${mib(s.zeroBytes)} zeros)${grown}, ${(s.durationMs / 1000).toFixed(1)} s`;
}

export const applyCommand: Command<ApplyArgs> = {
  command: 'apply <patch> <target>',
  describe: 'write a patch file (made by `sync --patch-out`) onto a target image or device',
  builder: (y) => y
    .positional('patch', { type: 'string', demandOption: true, describe: 'patch file to apply' })
    .positional('target', { type: 'string', demandOption: true, describe: 'target image file or block device' })
    .option('json', { type: 'boolean', default: false, describe: 'print the summary as JSON' })
    .example('$0 apply nightly.bdp /dev/vg0/replica', 'apply a patch to a block device')
    .example('$0 apply nightly.bdp disk.img --json', 'apply to an image file, JSON summary on stdout')
    .epilogue('The whole patch is checked (every record checksum and the stream checksum) before the first write.\n' +
      'The target must have the size the patch was made for. Applying a patch twice is harmless.\n\n' +
      exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH,
        ExitCode.PATCH_INVALID, ExitCode.IO, ExitCode.INTERRUPTED, ExitCode.INTERNAL])) as never,
  handler: async (argv) => {
    const summary = await applyPatch({ patch: argv.patch, target: argv.target, signal: cli.abort.signal });
    if (argv.json) outJson(inSeconds(summary));
    else out(applyText(summary));
  },
};
