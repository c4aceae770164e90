// The jobs config file's keys: which keys exist where, and their kinds (config/values.ts checks
// and converts a value of each kind; config.ts adds file:line:col and the key path). Pure.
import type { KeySpec } from '../config/values.js';
import { MAX_SAMPLE } from '../ranges.js';

/** Keys a job may set and [defaults] may provide (everything but source, target, snapshot). */
export const SHARED_KEYS: Record<string, KeySpec> = {
  block_size: { kind: 'size', min: 512, max: 16 * 1024 * 1024, pow2: true },
  bwlimit: { kind: 'size', min: 0 }, // 0: no limit (a job unsets an inherited one)
  verify: { kind: 'bool' },
  compress: { kind: 'bool' },
  size_policy: { kind: 'sizepolicy' },
  snapshot_size: { kind: 'string' },
  snapshot_max_fill: { kind: 'percent' },
  pool_max_fill: { kind: 'percent' },
  target_snapshot: { kind: 'bool' },
  target_snapshot_size: { kind: 'string' },
  keep: { kind: 'int', min: 0, max: 1000 },
  keep_last: { kind: 'int', min: 0, max: 1000 },
  keep_hourly: { kind: 'int', min: 0, max: 1000 },
  keep_daily: { kind: 'int', min: 0, max: 1000 },
  keep_weekly: { kind: 'int', min: 0, max: 1000 },
  keep_monthly: { kind: 'int', min: 0, max: 1000 },
  history_verify_every: { kind: 'duration' },
  history: { kind: 'int', min: 1, max: 1000 },
  warning_age: { kind: 'duration' },
  critical_age: { kind: 'duration' },
  max_duration: { kind: 'duration' },
  // hooks (src/jobs/hooks.ts): argv arrays, no shell
  pre_run: { kind: 'argv' },
  post_run: { kind: 'argv' },
  on_failure: { kind: 'argv' },
  hook_timeout: { kind: 'duration', min: 1, max: 24 * 3600 },
  // incremental runs on a thin LV source (src/lvm/incremental.ts)
  incremental: { kind: 'bool' },
  sample_blocks: { kind: 'int', min: 0, max: MAX_SAMPLE },
  full_compare_every: { kind: 'duration' },
};

export const JOB_KEYS: Record<string, KeySpec> = {
  source: { kind: 'string' },
  target: { kind: 'string' },
  snapshot: { kind: 'snapshot' },
  ...SHARED_KEYS,
};

/** [jobs.NAME.ssh] and [defaults.ssh]: how to reach a remote end. */
export const SSH_KEYS: Record<string, KeySpec> = {
  port: { kind: 'int', min: 1, max: 65535 },
  identity: { kind: 'path' },
  known_hosts: { kind: 'path' },
  remote_cmd: { kind: 'string' },
  connect_timeout: { kind: 'duration', min: 1, max: 3600 }, // 0 refused, as --connect-timeout 0 is
};

export const GLOBAL_KEYS: Record<string, KeySpec> = {
  state_dir: { kind: 'path' },
  max_concurrent: { kind: 'int', min: 1, max: 64 },
  wait_timeout: { kind: 'duration' },
  metrics_file: { kind: 'path' },
};

/** Tables that hold keys rather than values. */
export const TABLES = new Set(['defaults', 'jobs', 'ssh']);

type Level = 'top' | 'defaults' | 'job' | 'ssh';

/** For each key valid at another level than `level`: where it belongs (config check's hint). */
export function keysElsewhere(level: Level): Record<string, string> {
  const where: [Level[], Record<string, KeySpec>, string][] = [
    [['top'], GLOBAL_KEYS, 'a top-level key, put it above the first [table]'],
    [['job'], { source: JOB_KEYS.source!, target: JOB_KEYS.target!, snapshot: JOB_KEYS.snapshot! }, "a job's own key, put it in a [jobs.NAME] table"],
    [['defaults', 'job'], SHARED_KEYS, 'a job key, put it in [defaults] or a [jobs.NAME] table'],
    [['ssh'], SSH_KEYS, 'an ssh key, put it in [defaults.ssh] or [jobs.NAME.ssh]'],
  ];
  const out: Record<string, string> = {};
  for (const [levels, keys, hint] of where) {
    if (levels.includes(level)) continue;
    for (const k of Object.keys(keys)) out[k] ??= hint;
  }
  return out;
}
