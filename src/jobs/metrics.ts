// Prometheus textfile-collector output: the same figures as the result records, for every job
// with a record in the state dir, rewritten atomically (node_exporter never reads half a file).
// A run writes it when it starts (blkdelta_running 1, its start time), every minute while it
// runs (its progress and last sign of life) and when it ends; a run killed with SIGKILL leaves
// blkdelta_running 1 with a last sign of life that stops moving (alert on its age,
// docs/monitoring.md) until the next writer, which sees the process gone. The label is `blkdelta_job`: `job` is Prometheus's own
// target label. Counters (_total) come from the records' counters, kept across runs.
// Several runs writing together each write the whole file from the records on disk; the last
// rename wins and holds every job's latest record at that moment. Memory: the records.
import { stillRunning } from '../locks/proc.js';
import { readJobState, recordedJobs, writeFileAtomic, type Counters, type RunRecord } from './state.js';

/** One job's figures: its last finished run, last success, current run (when alive), counters. */
export interface MetricsRow { job: string; last?: RunRecord; lastSuccess?: RunRecord; running: boolean; current?: RunRecord; counters?: Counters }
interface Metric { name: string; help: string; type: 'gauge' | 'counter'; value: (r: RunRecord, ctx: MetricsRow) => number | undefined; always?: boolean }

const ts = (iso?: string) => (iso ? Date.parse(iso) / 1000 : undefined);

const METRICS: Metric[] = [
  { name: 'blkdelta_last_run_start_timestamp_seconds', help: 'Start of the last finished run', type: 'gauge', value: (r) => ts(r.start) },
  { name: 'blkdelta_last_run_end_timestamp_seconds', help: 'End of the last finished run', type: 'gauge', value: (r) => ts(r.end) },
  { name: 'blkdelta_last_run_success', help: '1 when the last finished run succeeded', type: 'gauge', value: (r) => (r.outcome === 'success' ? 1 : 0) },
  { name: 'blkdelta_last_run_warning', help: '1 when the last finished run completed with a warning (copy may be torn, post_run failed)', type: 'gauge', value: (r) => (r.outcome === 'warning' ? 1 : 0) },
  { name: 'blkdelta_last_run_exit_code', help: 'Exit code of the last finished run', type: 'gauge', value: (r) => r.exitCode },
  { name: 'blkdelta_last_run_duration_seconds', help: 'Duration of the last finished run', type: 'gauge', value: (r) => r.durationS },
  { name: 'blkdelta_last_run_compared_bytes', help: 'Bytes compared by the last finished run', type: 'gauge', value: (r) => r.bytes?.compared },
  { name: 'blkdelta_last_run_changed_bytes', help: 'Bytes found different by the last finished run', type: 'gauge', value: (r) => r.bytes?.changed },
  { name: 'blkdelta_last_run_sent_bytes', help: 'Bytes sent over the channel by the last finished run', type: 'gauge', value: (r) => r.bytes?.sent },
  { name: 'blkdelta_last_run_written_bytes', help: 'Bytes written to the target by the last finished run', type: 'gauge', value: (r) => r.bytes?.written },
  { name: 'blkdelta_last_run_throughput_bytes_per_second', help: 'Bytes compared per second in the last finished run', type: 'gauge', value: (r) => r.throughputBps },
  { name: 'blkdelta_last_run_read_source_bytes', help: 'Bytes the last finished run read from the source', type: 'gauge', value: (r) => r.bytes?.readSource },
  { name: 'blkdelta_last_run_read_target_bytes', help: 'Bytes the last finished run read from the target', type: 'gauge', value: (r) => r.bytes?.readTarget },
  { name: 'blkdelta_last_run_incremental', help: '1 when the last finished run of an incremental job read only the changed blocks, 0 when it compared in full', type: 'gauge', value: (r) => (r.incremental ? (r.incremental.kind === 'incremental' ? 1 : 0) : undefined) },
  { name: 'blkdelta_incremental_base_pinned_bytes', help: 'Pool bytes the replaced base held alone at the last incremental run (what keeping a base costs)', type: 'gauge', value: (r) => r.incremental?.pinnedBytes },
  { name: 'blkdelta_target_dirty', help: '1 when the last finished run left the target dirty', type: 'gauge', value: (r) => (r.targetState === 'dirty' ? 1 : 0) },
  { name: 'blkdelta_snapshot_left_behind', help: '1 when the last run could not remove its snapshot', type: 'gauge', value: (r) => (r.snapshot && !r.snapshot.removed ? 1 : 0) },
  { name: 'blkdelta_last_success_timestamp_seconds', help: 'End of the last successful run', type: 'gauge', value: (_r, c) => ts(c.lastSuccess?.end) },
  { name: 'blkdelta_running', help: '1 while a run of the job is in progress', type: 'gauge', value: (_r, c) => (c.running ? 1 : 0), always: true },
  { name: 'blkdelta_run_start_timestamp_seconds', help: 'Start of the run in progress (queued time)', type: 'gauge', value: (_r, c) => (c.running ? ts(c.current?.queued ?? c.current?.start) : undefined), always: true },
  { name: 'blkdelta_run_updated_timestamp_seconds', help: 'Last sign of life of the run in progress (rewritten every minute while it runs; with blkdelta_running 1 and minutes old, the process is gone or stuck)', type: 'gauge', value: (_r, c) => (c.running ? ts(c.current?.updated ?? c.current?.start) : undefined), always: true },
  { name: 'blkdelta_run_done_bytes', help: 'Bytes compared so far by the run in progress', type: 'gauge', value: (_r, c) => (c.running ? c.current?.progress?.bytesDone : undefined), always: true },
  { name: 'blkdelta_run_total_bytes', help: 'Bytes the run in progress compares in all', type: 'gauge', value: (_r, c) => (c.running && c.current?.progress?.bytesTotal ? c.current.progress.bytesTotal : undefined), always: true },
  { name: 'blkdelta_runs_total', help: 'Runs begun (lock taken) since the state dir was created', type: 'counter', value: (_r, c) => c.counters?.runs, always: true },
  { name: 'blkdelta_failures_total', help: 'Runs failed, interrupted, refused or killed since the state dir was created', type: 'counter', value: (_r, c) => c.counters?.failures, always: true },
];

/** The textfile for the given jobs' latest records (pure). */
export function renderMetrics(rows: MetricsRow[]): string {
  const lines: string[] = [];
  for (const m of METRICS) {
    lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
    for (const row of rows) {
      const r = row.last ?? (m.always ? row.current : undefined);
      if (!r) continue;
      const v = m.value(r, row);
      if (v !== undefined && Number.isFinite(v)) lines.push(`${m.name}{blkdelta_job="${escape(row.job)}"} ${v}`);
    }
  }
  return lines.join('\n') + '\n';
}

function escape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Rewrites `file` from every record in `stateDir`. */
export function writeMetrics(stateDir: string, file: string): void {
  const rows = recordedJobs(stateDir).map((job) => {
    const r = readJobState(stateDir, job);
    if (r.kind !== 'ok') return { job, running: false };
    const current = r.state.runs[0]?.outcome === 'running' ? r.state.runs[0] : undefined;
    const running = !!current && stillRunning(current.process);
    const last = r.state.runs.find((x) => x.outcome !== 'running');
    return { job, last, lastSuccess: r.state.lastSuccess, running, current, counters: r.state.counters };
  });
  writeFileAtomic(file, renderMetrics(rows));
}
