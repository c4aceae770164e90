// The --config option shared by run, status, check and config (default /etc/blkdelta/blkdelta.toml,
// or $BLKDELTA_CONFIG).
import type { Argv } from 'yargs';
import { DEFAULT_CONFIG } from '../jobs/config.js';

export function configOption<T>(y: Argv<T>) {
  return y.option('config', {
    type: 'string',
    default: process.env.BLKDELTA_CONFIG || DEFAULT_CONFIG,
    describe: 'jobs config file (TOML)',
  });
}
