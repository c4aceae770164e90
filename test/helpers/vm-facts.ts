// The facts a VM-lane script prints ("R <scenario> <key> <value>", newlines as "|"), parsed for
// the ava files that drive test/vm/run-vm.sh.
export type Facts = Map<string, Map<string, string>>;
export interface VmRun { rc: number | null; stdout: string; stderr: string; facts: Facts }

export function parseFacts(stdout: string): Facts {
  const facts: Facts = new Map();
  for (const line of stdout.split('\n')) {
    const m = /^R (\S+) (\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    const [, s, k, v] = m as unknown as [string, string, string, string];
    if (!facts.has(s)) facts.set(s, new Map());
    facts.get(s)!.set(k, v);
  }
  return facts;
}
