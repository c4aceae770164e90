// A copy of the built tree (bin, package.json, dist/src; node_modules linked) without some of its
// dist/src modules, as an incomplete install would be: a test runs its bin/blkdelta to show that
// a command never loads those modules (or fails cleanly when it needs one).
// Memory: none; the copy (~2 MiB) lives under the caller's dir, which the caller removes.
import { cpSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Copies the built tree to dir/name without `missing` (paths under dist/src); returns its bin/blkdelta. */
export function installWithout(dir: string, name: string, missing: string[]): string {
  const root = join(dir, name);
  cpSync(join(ROOT, 'bin'), join(root, 'bin'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(root, 'package.json'));
  cpSync(join(ROOT, 'dist', 'src'), join(root, 'dist', 'src'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  for (const m of missing) rmSync(join(root, 'dist', 'src', m));
  return join(root, 'bin', 'blkdelta');
}
