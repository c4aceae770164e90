// Every CLI command, one module per file (src/cli/cmd-*.ts). Add new commands here.
import type { CommandModule } from 'yargs';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [];
