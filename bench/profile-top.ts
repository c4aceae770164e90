// `node dist/bench/profile-top.js DIR [N]`: the N functions with the most self time in each
// DIR/*.cpuprofile (written by probe.ts with BLKDELTA_PROBE_CPUPROF=1), for a quick look
// without DevTools. Memory: one profile at a time.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time in ms per "function file:line", largest first. */
export function selfTimes(p: Profile): [string, number][] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const cf = byId.get(id)!.callFrame;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  });
  return [...self].sort((a, b) => b[1] - a[1]);
}

const [dir, n = '15'] = process.argv.slice(2);
if (dir) {
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const times = selfTimes(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile);
    const total = times.reduce((s, [, t]) => s + t, 0);
    process.stdout.write(`${f}: ${total.toFixed(0)} ms sampled\n`);
    for (const [k, t] of times.slice(0, Number(n))) process.stdout.write(`  ${t.toFixed(0).padStart(7)} ms  ${k}\n`);
  }
}
