// Full garbage collections for long transfers. Stream chunks that arrive while the process is busy
// hashing outlive two scavenges of the small young generation (bin/blkdelta runs node with 1 MiB
// semi-spaces), get promoted, and their memory is only returned by a full GC, which V8 starts
// late: the promoted wrappers are tiny, the memory behind them is external. Measured: a 16 GiB
// no-change sync's client crept to 21 MiB of array buffers (peak RSS 90 MiB) without this.
// gcIfGrown() runs one (~5 ms on blkdelta's heap) when external memory grew by GROWTH since the
// last; checking costs under a microsecond. No-op if V8 refuses to expose gc().
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

const GROWTH = 3 * 1024 * 1024;
let gc: (() => void) | null | undefined;
let base = 0;

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

/** A full GC if external memory (array buffers, native buffers) grew by GROWTH since the last one. */
export function gcIfGrown(): void {
  const external = () => v8.getHeapStatistics().external_memory;
  if (external() - base < GROWTH) return;
  fullGc();
  base = external();
  collections++;
}

/** Full GCs gcIfGrown() ran in this process (for the bench and tests). */
export let collections = 0;
