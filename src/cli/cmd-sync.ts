// `blkdelta sync SRC DST`: make DST equal to SRC, writing only the blocks that differ.
import path from 'node:path';
import { BlkError, ExitCode, exitStatusText } from '../errors.js';
import { runSync } from '../engine/sync.js';
import type { SyncMode, SyncOptions, SyncSummary } from '../engine/types.js';
import { cli, type Command } from './context.js';
import { log } from '../log.js';
import { resolveEnds } from './endpoints.js';
import { progressReporter } from './progress.js';
import { blockSizeOf, commonOptions, printSummary, type CommonArgs } from './sync-options.js';
import { incrementalOf, remoteSnapshotOf, remoteSnapshotRequest, runWithSnapshots, snapshotEnds, snapshotOptions, targetSnapshotOf, withTargetSnapshot, type SnapshotArgs } from '../lvm/sync-options.js';
import type { IncrementalSpec } from '../lvm/incremental.js';
import type { PassWrap } from '../engine/pull-incremental.js';
import type { SnapshotReport } from '../lvm/snapshot-report.js';
import type { TargetSnapshotReport } from '../lvm/sync-options.js';

interface Args extends CommonArgs, SnapshotArgs {
  'dry-run'?: boolean;
  'patch-out'?: string;
  force?: boolean;
  verify?: boolean;
  compress: boolean;
}

export const SYNC_EXIT_CODES = [
  ExitCode.OK, ExitCode.USAGE, ExitCode.DIFFERENT, ExitCode.SOURCE, ExitCode.TARGET_REFUSED, ExitCode.SIZE_MISMATCH, ExitCode.IO,
  ExitCode.REMOTE, ExitCode.HOST_KEY, ExitCode.AUTH, ExitCode.PERMISSION, ExitCode.SNAPSHOT, ExitCode.SNAPSHOT_OVERFLOW,
  ExitCode.VERIFY_FAILED, ExitCode.INTERRUPTED,
];

export const syncCommand: Command<Args> = {
  command: 'sync <src> [dst]',
  describe: 'make DST equal to SRC, writing only the blocks that differ',
  builder: (y) =>
    snapshotOptions(commonOptions(y).positional('dst', { demandOption: false }))
      .option('dry-run', { alias: 'n', type: 'boolean', describe: 'report what differs, write nothing (exit 3 when something differs)' })
      .option('patch-out', { type: 'string', requiresArg: true, describe: 'write a patch file (mode 0600) instead of touching DST (apply it later with blkdelta apply); "-": to stdout, the summary then goes to stderr' })
      .option('force', { type: 'boolean', describe: 'with --patch-out: replace an existing patch file (only once the new one is complete)' })
      .option('verify', { type: 'boolean', describe: 'after writing and fsync, re-read every written block and check it' })
      .option('compress', { type: 'boolean', default: true, describe: 'lz4-compress blocks that shrink; --no-compress to send raw' })
      .conflicts('dry-run', ['patch-out', 'verify'])
      .conflicts('patch-out', 'verify')
      .example('blkdelta sync /dev/vg0/vm1 /dev/backup/vm1', 'local devices')
      .example('blkdelta sync vm1.img backup@store2:/dev/backup/vm1', 'push over SSH')
      .example('blkdelta sync --dry-run a.img b.img', 'how much differs')
      .example('blkdelta sync --patch-out vm1.patch /dev/vg0/vm1 /dev/backup/vm1', 'save the delta, apply later')
      .example('blkdelta sync --patch-out - vm1.img store2:/dev/backup/vm1 | ssh store3 blkdelta apply - /dev/backup/vm1', 'stream the delta')
      .epilogue(exitStatusText(SYNC_EXIT_CODES)) as never,
  handler: async (argv) => {
    if (argv.force && !argv['patch-out']) throw new BlkError(ExitCode.USAGE, '--force applies only with --patch-out: it replaces an existing patch file');
    const toStdout = argv['patch-out'] === '-';
    if (toStdout && argv.json) throw new BlkError(ExitCode.USAGE, '--json cannot be used with --patch-out -: stdout carries the patch (the summary goes to stderr)');
    const mode: SyncMode = argv['dry-run'] ? 'dry-run' : argv['patch-out'] ? 'patch' : 'write';
    const progress = progressReporter(!!argv.progress && !argv.quiet && !argv.json);
    const ends = snapshotEnds(argv);
    const targetSnap = targetSnapshotOf(argv, ends.dst);
    if (targetSnap && mode !== 'write') throw new BlkError(ExitCode.USAGE, '--target-snapshot applies only when writing the target');
    const opts: SyncOptions = {
      ...(await resolveEnds(ends.src, ends.dst, argv as never)),
      mode, blockSize: blockSizeOf(argv), sizePolicy: argv['size-policy'], patchOut: argv['patch-out'], patchOverwrite: argv.force,
      verify: argv.verify, compress: argv.compress, signal: cli.abort.signal, onProgress: progress.update,
      sourceSnapshot: remoteSnapshotOf(argv), // a pull: the server snapshots its LV
    };
    try {
      // a remote target's server takes and rotates its snapshot; a local one is wrapped here
      const remoteTarget = opts.remote?.side === 'target';
      if (remoteTarget && targetSnap) opts.targetSnapshot = remoteSnapshotRequest(argv, targetSnap.job);
      const inc = incrementalOf(argv, mode, opts.blockSize, targetName(opts));
      const { value: { value: summary, target }, snapshot: local } = inc
        ? await incrementalSync(inc, opts, remoteTarget ? undefined : targetSnap, opts.remote?.side === 'source')
        : await runWithSnapshots(argv, cli.abort.signal, (source, signal) =>
          withTargetSnapshot(remoteTarget ? undefined : targetSnap, opts.target, (seed) => runSync({ ...opts, source: source ?? opts.source, signal, seed }), opts.blockSize));
      const snapshot = local ?? summary.sourceSnapshot;
      progress.end();
      printSummary((snapshot || target ? { ...summary, snapshot, targetSnapshot: target } : summary) as typeof summary, argv,
        toStdout ? (line) => process.stderr.write(line + '\n') : undefined);
      if (summary.sourceMountedRw) log.warn(`copy may be torn: source ${summary.source} was mounted read-write at ${summary.sourceMountedRw.join(', ')} while it was read (use --snapshot)`);
      return mode === 'dry-run' && !summary.identical ? ExitCode.DIFFERENT : ExitCode.OK;
    } finally {
      progress.end();
    }
  },
};

/** The target as the base record names it: user@host:path for a remote one. */
function targetName(o: SyncOptions): string {
  return o.remote?.side === 'target' ? `${o.remote.transport.label}:${o.target}` : path.resolve(o.target);
}

/**
 * --incremental: the passes of lvm/incremental.ts (a local source: the ranges with the sample
 * first; a pull: a dry-run sample, then the ranges, in one session; a full compare when the
 * sample differs), the target snapshot (if asked) around each write pass.
 */
async function incrementalSync(inc: IncrementalSpec, opts: SyncOptions, targetSnap: Parameters<typeof withTargetSnapshot>[0], pull: boolean):
  Promise<{ value: { value: SyncSummary; target?: TargetSnapshotReport }; snapshot: SnapshotReport }> {
  // loaded here, for --incremental only: a plain sync does not pay for them (start-up CPU)
  const [{ runIncremental, withIncremental }, { pullSourceEnd }] = await Promise.all([import('../lvm/incremental.js'), import('../engine/pull-incremental.js')]);
  let target: TargetSnapshotReport | undefined;
  const wrap: PassWrap = async (pass, run) => {
    if (pass.mode !== 'write') return run();
    const r = await withTargetSnapshot(targetSnap, opts.target, run, opts.blockSize);
    target = r.target;
    return r.value;
  };
  const { value, report, snapshot } = pull
    ? await runIncremental(inc, pullSourceEnd(opts, wrap)) // the server keeps the base; one session
    : await withIncremental(inc, cli.abort.signal, (source, pass, signal) =>
      wrap(pass, (seed) => runSync({ ...opts, source, signal, seed, mode: pass.mode, ranges: pass.ranges, sample: pass.sample, verify: pass.mode === 'write' && opts.verify })));
  return { value: { value: { ...value, incremental: report }, target }, snapshot };
}
