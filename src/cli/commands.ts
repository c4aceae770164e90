// Every CLI command, one module per file (src/cli/cmd-*.ts). Add new commands here.
import type { CommandModule } from 'yargs';
import { applyCommand } from './cmd-apply.js';
import { serverCommand } from './cmd-server.js';
import { snapshotsCommand } from './cmd-snapshots.js';
import { syncCommand } from './cmd-sync.js';
import { runCommand } from './cmd-run.js';
import { statusCommand } from './cmd-status.js';
import { checkCommand } from './cmd-check.js';
import { configCommand } from './cmd-config.js';
import { verifyCommand } from './cmd-verify.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [syncCommand, verifyCommand, applyCommand, serverCommand, snapshotsCommand, runCommand, statusCommand, checkCommand, configCommand];
