// Every CLI command, one module per file (src/cli/cmd-*.ts), loaded on demand: a run loads only
// the module of the command it names (the server end and `check` stay small in memory); --help
// without a command loads them all. Add new commands here.
import type { Command } from './context.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = Command<any>;

export const COMMANDS: Record<string, () => Promise<AnyCommand>> = {
  sync: () => import('./cmd-sync.js').then((m) => m.syncCommand),
  verify: () => import('./cmd-verify.js').then((m) => m.verifyCommand),
  apply: () => import('./cmd-apply.js').then((m) => m.applyCommand),
  run: () => import('./cmd-run.js').then((m) => m.runCommand),
  status: () => import('./cmd-status.js').then((m) => m.statusCommand),
  check: () => import('./cmd-check.js').then((m) => m.checkCommand),
  config: () => import('./cmd-config.js').then((m) => m.configCommand),
  snapshots: () => import('./cmd-snapshots.js').then((m) => m.snapshotsCommand),
  demo: () => import('./cmd-demo.js').then((m) => m.demoCommand),
  server: () => import('./cmd-server.js').then((m) => m.serverCommand),
  history: () => import('./cmd-history.js').then((m) => m.historyCommand),
  completion: () => import('./cmd-completion.js').then((m) => m.completionCommand),
};

/** The command modules a command line needs: the one it names, or all of them. */
export async function commandsFor(args: readonly string[]): Promise<AnyCommand[]> {
  const name = args.find((a) => !a.startsWith('-'));
  const load = name !== undefined ? COMMANDS[name] : undefined;
  return Promise.all(load ? [load()] : Object.values(COMMANDS).map((l) => l()));
}
