// Loads yargs for one command line, without its help machinery unless help is asked for.
// `import('yargs')` costs ~0.18 s of CPU, ~0.1 s of it cliui and string-width (text wrapping)
// that only rendering help uses (issue 13: every sync paid it before reading a byte). yargs is
// built from a factory and a "platform shim" (node_modules/yargs/lib/platform-shims/esm.mjs);
// the light loader builds the same shim with cliui and stringWidth replaced by stand-ins that
// throw HelpNeeded. main.ts then parses again with the full yargs: help is rendered instead of
// running a handler, so nothing has run yet. Anything unexpected in yargs' layout (an upgrade
// moved a file) falls back to the full import.
// Memory: the modules. Interrupted: nothing to leave.
import { strictEqual, notStrictEqual } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import type { Argv } from 'yargs';

export type YargsFn = (args: string[]) => Argv;

/** Thrown by the light loader's text-wrapping stand-ins: this command line renders help. */
export class HelpNeeded extends Error {
  constructor() {
    super('help text asked of the light yargs loader');
    this.name = 'HelpNeeded';
  }
}

// asksHelp lives in usage.ts (main.ts needs it without loading this module and node:assert/util)
export { asksHelp } from './usage.js';

/** yargs: the full package when help is asked for, else the light one (full on any surprise). */
export async function loadYargs(help: boolean): Promise<YargsFn> {
  if (!help) {
    try {
      return await lightYargs();
    } catch {
      // a yargs whose files are not where 18.x keeps them: the full import below works anyway
    }
  }
  return (await import('yargs')).default as unknown as YargsFn;
}

let light: Promise<YargsFn> | undefined;
const lightOnes = new WeakSet<YargsFn>();

/** Whether y came from the light loader (it cannot render help). */
export const isLight = (y: YargsFn): boolean => lightOnes.has(y);

function lightYargs(): Promise<YargsFn> {
  light ??= buildLight().then((y) => (lightOnes.add(y), y));
  return light;
}

async function buildLight(): Promise<YargsFn> {
  // Resolved from yargs' own package, as its shim would: the same files whatever npm hoisted.
  const pkg = createRequire(import.meta.url).resolve('yargs/package.json');
  const dir = dirname(pkg);
  const yreq = createRequire(pkg);
  const file = (p: string) => import(pathToFileURL(join(dir, p)).href);
  const dep = (name: string) => import(pathToFileURL(yreq.resolve(name)).href);
  const [factory, argvBin, parser, escalade, y18n] = await Promise.all([
    file('build/lib/yargs-factory.js'), file('build/lib/utils/process-argv.js'), dep('yargs-parser'), dep('escalade/sync'), dep('y18n'),
  ]);
  const getCallerFile = yreq('get-caller-file') as (n: number) => string;
  const needHelp = (): never => {
    throw new HelpNeeded();
  };
  const shim = {
    assert: { notStrictEqual, strictEqual },
    cliui: needHelp,
    findUp: escalade.default,
    getEnv: (key: string) => process.env[key],
    inspect,
    getProcessArgvBin: argvBin.getProcessArgvBin,
    mainFilename: dir.substring(0, dir.lastIndexOf('node_modules')) || process.cwd(),
    Parser: parser.default,
    path: { basename, dirname, extname, relative, resolve, join },
    process: {
      argv: () => process.argv,
      cwd: process.cwd,
      emitWarning: (warning: string, type: string) => process.emitWarning(warning, type),
      execPath: () => process.execPath,
      exit: (code: number) => process.exit(code),
      nextTick: process.nextTick,
      stdColumns: typeof process.stdout.columns !== 'undefined' ? process.stdout.columns : null,
    },
    readFileSync,
    readdirSync,
    require: yreq,
    getCallerFile: () => {
      const f = getCallerFile(3);
      return f.startsWith('file://') ? fileURLToPath(f) : f;
    },
    stringWidth: needHelp,
    y18n: y18n.default({ directory: resolve(dir, 'locales'), updateFiles: false }),
  };
  const make = factory.YargsFactory as ((shim: unknown) => YargsFn) | undefined;
  if (typeof make !== 'function') throw new Error('yargs: no YargsFactory');
  return make(shim);
}

/**
 * yargs renders the whole help text as a command's handler starts, caching it in case a later
 * failure prints it: ~0.3 s of CPU (string-width, wrap-ansi) before a sync reads a byte (issue
 * 13). blkdelta never prints that cache (its fail() throws), and --help renders the text when
 * asked, so the caching is skipped. Internal API: if it moves, this returns false and yargs renders
 * it as before (yargs caches it after the handler has started: main.ts then uses the full loader).
 */
export function skipHelpCache(parser: unknown): boolean {
  type Internals = { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } };
  const usage = (parser as Internals).getInternalMethods?.().getUsageInstance?.();
  if (!usage || typeof usage.cacheHelpMessage !== 'function') return false;
  usage.cacheHelpMessage = () => { /* rendered when --help asks */ };
  return true;
}
