// `blkdelta verify SRC DST`: full compare of every block (seeded xxh64 on both ends, a fresh
// seed each run). Exit 0 when identical, 3 and the first differing offsets otherwise.
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { runSync } from '../engine/sync.js';
import { cli, type Command, out } from './context.js';
import { resolveEnds } from './endpoints.js';
import { progressReporter } from './progress.js';
import { blockSizeOf, commonOptions, printSummary, type CommonArgs } from './sync-options.js';

interface Args extends CommonArgs {
  'max-diffs': number;
}

export const verifyCommand: Command<Args> = {
  command: 'verify <src> <dst>',
  describe: 'compare SRC and DST block by block; exit 0 when identical, 3 when they differ',
  builder: (y) =>
    commonOptions(y)
      .option('max-diffs', { type: 'number', default: 10, describe: 'how many differing offsets to list' })
      .example('blkdelta verify /dev/vg0/vm1 backup@store2:/dev/backup/vm1', 'after a sync, before maintenance')
      .epilogue(exitStatusText([ExitCode.OK, ExitCode.USAGE, ExitCode.DIFFERENT, ExitCode.SOURCE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH, ExitCode.IO, ExitCode.REMOTE, ExitCode.HOST_KEY, ExitCode.AUTH, ExitCode.PERMISSION, ExitCode.INTERRUPTED])) as never,
  handler: async (argv) => {
    const maxDiffs = argv['max-diffs'];
    if (!Number.isSafeInteger(maxDiffs) || maxDiffs < 0) throw new BlkError(ExitCode.USAGE, `--max-diffs ${maxDiffs}: expected a whole number, 0 or more`);
    const progress = progressReporter(!!argv.progress && !argv.quiet && !argv.json);
    try {
      const summary = await runSync({
        ...(await resolveEnds(argv.src, argv.dst, argv as never)),
        mode: 'compare', blockSize: blockSizeOf(argv), sizePolicy: argv['size-policy'], maxDiffsReported: argv['max-diffs'],
        signal: cli.abort.signal, onProgress: progress.update,
      });
      progress.end();
      printSummary(summary, argv);
      if (!summary.identical) {
        if (!argv.json) out(`DIFFERENT: ${summary.blocksDiffering} of ${summary.blocksCompared} blocks differ`);
        return ExitCode.DIFFERENT;
      }
      if (!argv.json && !argv.quiet) out('IDENTICAL');
      return ExitCode.OK;
    } finally {
      progress.end();
    }
  },
};
