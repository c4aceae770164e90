// Collections for long transfers. Stream chunks (64 KiB per pipe read) and lz4-napi's outputs are
// garbage within a frame or two, but the memory behind them is external: V8 sees tiny wrappers
// and collects late. Those that outlive two scavenges of the small young generation (bin/blkdelta
// runs node with 1 MiB semi-spaces) are promoted and only a full GC returns their memory.
// Measured without help: a 16 GiB no-change sync's client crept by 8 MiB, a 64 GiB one by 18 MiB.
// gcAfter(bytes) counts such short-lived bytes: a scavenge (well under 1 ms) every MINOR_EVERY of
// them frees the young ones, and a full GC (~5-10 ms) every FULL_EVERY those that were promoted.
// Measured on a 4 GiB full copy (every block a record): a full GC every 2 MiB took 35 s of wall
// (2048 full GCs); scavenges alone 10.5 s, but the client peaked at 80 MiB; both as set: 11.6 s
// and 76 MiB. Budgets, not measurements: right after a GC the array-buffer sweeper has not yet
// returned the memory, so "external memory grew since the last GC" ratchets upwards.
// No-op if V8 refuses to expose gc().
// node:v8 and node:vm load on the first collection, not at start-up (every server process loads
// this); process.getBuiltinModule (Node >= 20.16) spares the import of node:module as well.
const builtin = (id: string): unknown => process.getBuiltinModule(id);

/** Bytes of short-lived buffers between two scavenges, and between two full GCs. */
export const MINOR_EVERY = 2 * 1024 * 1024;
export const FULL_EVERY = 64 * 1024 * 1024;
/** Bytes sent through ssh2 between two full GCs (gcAfterSsh). */
export const SSH_FULL_EVERY = 8 * 1024 * 1024;

type Gc = (options?: { type: 'minor' | 'major' }) => void;
let gc: Gc | null | undefined;
let pending = 0;
let sinceFull = 0;

/** V8's gc(), exposed on first use; null if V8 refuses. */
function v8Gc(): Gc | null {
  if (gc === undefined) {
    try {
      (builtin('node:v8') as typeof import('node:v8')).setFlagsFromString('--expose-gc');
      gc = (builtin('node:vm') as typeof import('node:vm')).runInNewContext('gc') as Gc;
    } catch {
      gc = null;
    }
  }
  return gc;
}

/** Runs a full GC. */
export function fullGc(): void {
  v8Gc()?.();
}

/**
 * Counts `bytes` of buffers that are garbage soon: a scavenge every MINOR_EVERY, a full GC every
 * FULL_EVERY. fullWeight < 1: buffers dropped before the next scavenge (never promoted, so only
 * scavenges are needed to return them) count that much towards the full GC.
 */
export function gcAfter(bytes: number, fullWeight = 1): void {
  pending += bytes;
  sinceFull += bytes * (fullWeight - 1); // the remainder is added with pending below
  if (pending < MINOR_EVERY) return;
  sinceFull += pending;
  pending = 0;
  if (sinceFull >= FULL_EVERY) {
    sinceFull = 0;
    fullGc();
    collections.full++;
  } else {
    v8Gc()?.({ type: 'minor' });
    collections.minor++;
  }
}

/**
 * Counts bytes written into an ssh2 channel: a full GC per SSH_FULL_EVERY of them (shares the
 * full budget with gcAfter). ssh2 allocates a packet buffer per write and per packet received,
 * and scavenges free those worse than pipe chunks (measured; the cause is not pinned down): with
 * the scavenge budget alone an SSH push peaked at 84 MiB. With this, 78 MiB, the same as with a
 * full GC per 2 MiB of everything, for 0.2 s less CPU.
 */
export function gcAfterSsh(bytes: number): void {
  sinceFull += bytes * (FULL_EVERY / SSH_FULL_EVERY);
  if (sinceFull < FULL_EVERY) return;
  sinceFull = 0;
  fullGc();
  collections.full++;
}

/** Collections gcAfter() and gcAfterSsh() ran in this process (for the bench and tests). */
export const collections = { minor: 0, full: 0 };
