// `blkdelta apply PATCH [PATCH...] DST`: checks every patch file, then writes them in order onto DST
// (an image file or a block device), each after the check of DST's state. A corrupt, truncated or
// mismatched patch writes nothing. "-" is stdin. See src/engine/apply.ts.
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { applyPatches, type ApplySummary } from '../engine/apply.js';
import { cli, type Command, inSeconds, out, outJson } from './context.js';

interface ApplyArgs { files: string[]; json: boolean }

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function applyText(s: ApplySummary): string {
  if (s.state === 'applied') return `${s.patch}: ${s.target} already holds its result: nothing written`;
  const grown = s.grown ? `, grew it from ${s.sizeBefore} to ${s.sizeAfter} bytes` : '';
  const partial = s.state === 'partial' ? ' (finished an earlier, interrupted apply)' : '';
  return `applied ${s.patch} to ${s.target}${partial}: ${s.records} records, ${mib(s.bytesWritten)} written (${mib(s.zeroBytes)} zeros)${grown}, ${(s.durationMs / 1000).toFixed(1)} s`;
}

/** PATCH... TARGET: at least one patch, then the target. */
export function splitFiles(files: string[] = []): { patches: string[]; target: string } {
  const option = files.find((f) => f.startsWith('-') && f !== '-');
  if (option) throw new BlkError(ExitCode.USAGE, `unknown option ${option} (a file name that starts with "-" must be given as ./${option})`);
  if (files.length < 2) throw new BlkError(ExitCode.USAGE, 'apply needs a patch and a target: blkdelta apply PATCH [PATCH...] TARGET');
  return { patches: files.slice(0, -1), target: files.at(-1)! };
}

export const applyCommand: Command<ApplyArgs> = {
  command: 'apply [files..]',
  describe: 'write patch files (made by `sync --patch-out`) onto a target image or device: apply PATCH [PATCH...] TARGET',
  builder: (y) => y
    // yargs drops a lone "-" from positionals unless unknown options pass as arguments (then splitFiles refuses them)
    .parserConfiguration({ 'unknown-options-as-args': true })
    .positional('files', { type: 'string', array: true, describe: 'patch files in the order they were made ("-": stdin), then the target image file or block device' })
    .option('json', { type: 'boolean', default: false, describe: 'print the summary as JSON' })
    .example('$0 apply nightly.bdp /dev/vg0/replica', 'apply a patch to a block device')
    .example('$0 apply mon.bdp tue.bdp wed.bdp disk.img', 'apply a chain, in the order the patches were made')
    .example('ssh store2 cat nightly.bdp | $0 apply - disk.img --json', 'apply from stdin (spooled to $TMPDIR first), JSON summary on stdout')
    .epilogue('Every patch is checked (every record checksum and the stream checksum) before the first write.\n' +
      'A version 2 patch also checks the target before its first write: a target in another state than the one\n' +
      'the patch was made from is refused (exit 7, naming the first offset that differs); a target that already\n' +
      'holds its result is left alone (exit 0). In a chain each patch is checked before its first write.\n' +
      'The target must have the size the patch was made for. "-" reads stdin into a spool file under $TMPDIR\n' +
      '(bounded by what the patch header allows), removed on exit.\n\n' +
      exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH,
        ExitCode.PATCH_INVALID, ExitCode.IO, ExitCode.INTERRUPTED, ExitCode.INTERNAL])) as never,
  handler: async (argv) => {
    const { patches, target } = splitFiles(argv.files?.map(String));
    const chain = await applyPatches({ patches, target, signal: cli.abort.signal });
    if (argv.json) outJson(patches.length === 1 ? inSeconds(chain.links[0]!) : { ...inSeconds(chain), links: chain.links.map(inSeconds) });
    else for (const s of chain.links) out(applyText(s));
  },
};
