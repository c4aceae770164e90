// The light yargs loader (src/cli/yargs-load.ts): it parses exactly as the full package does, and
// asks for the full one (HelpNeeded) the moment help text would be rendered.
import test from 'ava';
import type { Argv } from 'yargs';
import { HelpNeeded, asksHelp, isLight, loadYargs, skipHelpCache, type YargsFn } from '../src/cli/yargs-load.js';

const rows: [string[], boolean][] = [
  [['sync', 'a', 'b'], false],
  [['sync', '--help'], true],
  [['--help'], true],
  [['sync', '-h'], true],
  [['sync', '-hV'], true],
  [['sync', '-Vh'], true],
  [['sync', '--help=true'], true],
  [['sync', 'a', 'b', '--', '--help'], false], // after --, an operand
  [['sync', '--hash', 'x'], false],
  [['sync', 'help'], false], // an operand named help: the command decides
  [['sync', '-i', 'h'], false],
  [['sync', '--no-help'], false],
];
for (const [args, want] of rows) {
  test(`asksHelp ${JSON.stringify(args)} is ${want}`, (t) => t.is(asksHelp(args), want));
}

/** A parser like main.ts's: one command with every kind of option. */
function parser(yargs: YargsFn, args: string[], onRun = () => {}): Argv {
  const p = yargs(args)
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .help()
    .command('sync <src> [dst]', 'sync', (y) => y
      .option('identity', { alias: 'i', type: 'string', array: true })
      .option('block-size', { type: 'number' })
      .option('progress', { type: 'boolean', default: true })
      .option('json', { type: 'boolean' })
      .option('mode', { choices: ['a', 'b'] }), onRun);
  skipHelpCache(p);
  return p;
}

const parses: string[][] = [
  ['sync', 'x', 'y'],
  ['sync', 'x', 'y', '-i', 'k1', '--identity=k2', '--block-size', '65536', '--no-progress', '--json'],
  ['sync', 'x', '--mode', 'b', '--', '-z'],
];
for (const args of parses) {
  test(`the light yargs parses ${JSON.stringify(args)} as the full one`, async (t) => {
    const [light, full] = [await loadYargs(false), await loadYargs(true)];
    t.not(light, full, 'two different loaders');
    const a = await parser(light, args).parseAsync();
    const b = await parser(full, args).parseAsync();
    t.deepEqual({ ...a, $0: '' }, { ...b, $0: '' });
  });
}

test('the light yargs refuses what the full one refuses, with the same message', async (t) => {
  const args = ['sync', 'x', '--mode', 'c', '--bogus'];
  const e1 = await t.throwsAsync(async () => parser(await loadYargs(false), args).parseAsync());
  const e2 = await t.throwsAsync(async () => parser(await loadYargs(true), args).parseAsync());
  t.is(e1!.message, e2!.message);
});

test('the light yargs throws HelpNeeded where help text would be rendered; the full one renders it', async (t) => {
  await t.throwsAsync(async () => parser(await loadYargs(false), ['sync', '--help']).parseAsync(), { instanceOf: HelpNeeded });
  let text = '';
  const p = parser(await loadYargs(true), ['sync', '--help']);
  await p.parseAsync(['sync', '--help'], {}, (_err: unknown, _argv: unknown, output: string) => {
    text = output;
  });
  t.regex(text, /--block-size/);
});

test('skipHelpCache finds the help cache of both loaders (else main.ts uses the full one): the light one then runs a handler', async (t) => {
  const full = (await loadYargs(true))(['sync', 'x']);
  t.true(skipHelpCache(full));
  let ran = false;
  const light = (await loadYargs(false))(['sync', 'x']).exitProcess(false).command('sync <src>', 'sync', (y) => y, () => {
    ran = true;
  });
  t.true(skipHelpCache(light));
  await light.parseAsync();
  t.true(ran);
  t.true(isLight(await loadYargs(false)));
  t.false(isLight(await loadYargs(true)));
  t.false(skipHelpCache({}), 'a parser without the internal API');
});
