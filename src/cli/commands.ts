// Every CLI command, one module per file (src/cli/cmd-*.ts). Add new commands here.
import type { CommandModule } from 'yargs';
import { applyCommand } from './cmd-apply.js';
import { serverCommand } from './cmd-server.js';
import { snapshotsCommand } from './cmd-snapshots.js';
import { syncCommand } from './cmd-sync.js';
import { verifyCommand } from './cmd-verify.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [syncCommand, verifyCommand, applyCommand, serverCommand, snapshotsCommand];
