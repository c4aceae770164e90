// Full garbage collections for long transfers. Stream chunks (64 KiB per pipe read) that arrive
// while the process is busy hashing outlive two scavenges of the small young generation
// (bin/blkdelta runs node with 1 MiB semi-spaces), get promoted, and their memory is only returned
// by a full GC, which V8 starts late: the promoted wrappers are tiny, the memory behind them is
// external (lz4-napi's outputs too). Measured: a 16 GiB no-change sync's client crept by 8 MiB and
// a 64 GiB one by 18 MiB without this.
// gcAfter(bytes) counts such short-lived bytes and runs a full GC (~3-5 ms on blkdelta's heap)
// every GC_EVERY of them. A budget, not a measurement: right after a GC the array-buffer sweeper
// has not yet returned the memory, so "external memory grew since the last GC" ratchets upwards.
// No-op if V8 refuses to expose gc().
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes of short-lived buffers between two full GCs. */
export const GC_EVERY = 2 * 1024 * 1024;
let gc: (() => void) | null | undefined;
let pending = 0;

/** Runs a full GC (exposing V8's gc() on first use). */
export function fullGc(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  gc?.();
}

/** Counts `bytes` of buffers that are garbage soon; a full GC once GC_EVERY have accumulated. */
export function gcAfter(bytes: number): void {
  pending += bytes;
  if (pending < GC_EVERY) return;
  pending = 0;
  fullGc();
  collections++;
}

/** Full GCs gcAfter() ran in this process (for the bench and tests). */
export let collections = 0;
