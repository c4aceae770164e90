// The command line's own mistakes, said in words that name what is wrong: yargs' validation
// messages ("Not enough non-option arguments: got 1, need at least 2", "Invalid values: ...")
// become "verify: missing DST (usage: blkdelta verify <src> <dst>)". Pure string work on the
// message, the command's spec ("verify <src> <dst>") and the raw argv; table-tested. Also
// asksHelp (does a command line ask for help?), which main.ts needs before yargs loads.

/** Whether the args ask for help: --help, or -h alone or among short flags (-hV). */
export function asksHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a.startsWith('--help=') || /^-[A-Za-z]*h[A-Za-z]*$/.test(a)) return true;
  }
  return false;
}

export interface UsageContext {
  /** The command line as typed, without "blkdelta". */
  args: readonly string[];
  /** The command's yargs spec, e.g. "sync <src> [dst]"; undefined at the top level. */
  spec?: string;
}

/** The operand names of a yargs spec: "sync <src> [dst]" -> ['SRC', 'DST']. */
export function operandsOf(spec: string): string[] {
  return [...spec.matchAll(/[<[]([^>\]]+)[>\]]/g)].map((m) => m[1]!.replace(/\.\.\.$/, '').toUpperCase());
}

type Rule = [RegExp, (m: RegExpExecArray, c: UsageContext) => string];

const RULES: Rule[] = [
  [/^Not enough non-option arguments: got (\d+), need at least (\d+)/, (m, c) => missing(Number(m[1]), Number(m[2]), c)],
  [/^Unknown arguments?: (.*)$/, (m, c) => unknownArgs(m[1]!.split(', '), c)],
  [/^Invalid values?:\s*Argument: ([^,]+), Given: (.*), Choices: (.*)$/s, (m, c) => invalidChoice(m[1]!, m[2]!, m[3]!, c)],
  [/^Not enough arguments following: (\S+)/, (m) => `${optionName(m[1]!)} needs a value`],
  [/^Missing required arguments?: (.*)$/, (m) => `missing ${m[1]!.split(', ').map(optionName).join(', ')}`],
  [/^Arguments (\S+) and (\S+) are mutually exclusive/, (m) => `${optionName(m[1]!)} and ${optionName(m[2]!)} cannot be used together`],
];

/** yargs' message, reworded so that it names the operand or option that is wrong. */
export function explainUsage(msg: string, c: UsageContext): string {
  const flat = msg.replace(/\s*\n\s*/g, ' ').trim();
  for (const [re, say] of RULES) {
    const m = re.exec(flat);
    if (m) return say(m, c);
  }
  return flat;
}

function usageOf(c: UsageContext): string {
  return c.spec ? ` (usage: blkdelta ${c.spec})` : '';
}

function commandOf(c: UsageContext): string {
  return c.spec ? c.spec.split(' ')[0]! : 'blkdelta';
}

function missing(got: number, need: number, c: UsageContext): string {
  const names = c.spec ? operandsOf(c.spec).slice(got, Math.max(got + 1, need)) : [];
  if (!names.length) return `${commandOf(c)}: ${need - got} more operand${need - got > 1 ? 's' : ''} needed${usageOf(c)}`;
  return `${commandOf(c)}: missing ${names.join(' and ')}${usageOf(c)}`;
}

function unknownArgs(names: string[], c: UsageContext): string {
  const opts = names.filter((n) => c.args.some((a) => a === dashed(n) || a.startsWith(dashed(n) + '=')));
  if (opts.length) return `${commandOf(c)}: unknown option ${opts.map(dashed).join(', ')}${c.spec ? ` (see blkdelta ${commandOf(c)} --help)` : ''}`;
  const max = c.spec ? operandsOf(c.spec).length : 0;
  const shown = names.map((n) => JSON.stringify(n)).join(' ');
  return `${commandOf(c)}: too many operands, ${shown} not expected: it takes ${max ? `at most ${max}` : 'none'}${usageOf(c)}`;
}

function invalidChoice(arg: string, given: string, choices: string, c: UsageContext): string {
  const isOperand = c.spec ? operandsOf(c.spec).includes(arg.toUpperCase()) : false;
  const name = isOperand ? arg.toUpperCase() : dashed(arg);
  return `${name} ${given}: expected one of ${choices.replace(/"/g, '')}`;
}

function dashed(n: string): string {
  return n.length === 1 ? `-${n}` : `--${n}`;
}

function optionName(n: string): string {
  return n.startsWith('-') ? n : dashed(n);
}

/**
 * Options that yargs turned into NaN (`--connect-timeout abc`): "--connect-timeout "abc": not a
 * number". yargs keeps camelCase and alias copies; the first dashed or plain key is reported.
 */
export function notANumber(argv: Record<string, unknown>, args: readonly string[]): string | undefined {
  const key = Object.keys(argv).find((k) => k.length > 1 && k !== '$0' && !/[A-Z]/.test(k) && Number.isNaN(argv[k]));
  if (key === undefined) return undefined;
  const given = rawValue(dashed(key), args) ?? shortValue(argv, args);
  return `${dashed(key)}${given !== undefined ? ` ${JSON.stringify(given)}` : ''}: not a number`;
}

function rawValue(opt: string, args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === opt) return args[i + 1];
    if (args[i]!.startsWith(opt + '=')) return args[i]!.slice(opt.length + 1);
  }
  return undefined;
}

function shortValue(argv: Record<string, unknown>, args: readonly string[]): string | undefined {
  const alias = Object.keys(argv).find((k) => k.length === 1 && Number.isNaN(argv[k]));
  return alias ? rawValue(`-${alias}`, args) : undefined;
}
