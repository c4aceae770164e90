// A running run's record, kept current: the phase (waiting for a slot, hook, snapshot, compare,
// verify, cleanup) and the bytes compared, rate and ETA, so that `status`, `check` and the
// metrics see what a run is doing. A phase change is written at once; byte progress at most
// every `everyMs` (default 5 s), each write atomic (state.ts). A write that fails is logged once
// and never fails the run. Killed mid-run, the record's `updated` is its last sign of life.
// Memory: one record.
import { describe } from '../errors.js';
import { log } from '../log.js';
import type { Progress } from '../engine/types.js';
import type { Phase, RunProgress, RunRecord } from './state.js';

/** Rate (bytes/s since the sync began) and ETA of an engine progress report (pure). */
export function progressOf(phase: Phase, p: Progress): RunProgress {
  const rateBps = p.elapsedMs > 0 ? Math.round(p.bytesDone / (p.elapsedMs / 1000)) : 0;
  const left = Math.max(0, p.bytesTotal - p.bytesDone);
  const etaS = left === 0 ? 0 : rateBps > 0 ? Math.ceil(left / rateBps) : null;
  return { phase, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, rateBps, etaS };
}

export class RunTracker {
  private rec: RunRecord;
  private lastWrite = 0;
  private failed = false;

  constructor(private readonly save: (r: RunRecord) => void, rec: RunRecord, private readonly everyMs = 5000) {
    this.rec = rec;
  }

  get record(): RunRecord {
    return this.rec;
  }

  get phaseNow(): Phase | undefined {
    return this.rec.progress?.phase;
  }

  /** Merges fields into the record and writes it now (start time, phase...). */
  update(patch: Partial<RunRecord>): void {
    this.rec = { ...this.rec, ...patch };
    this.write();
  }

  /** Enters a phase (bytes are kept: cleanup after compare still shows what was compared). */
  phase(phase: Phase): void {
    const p = this.rec.progress ?? { bytesDone: 0, bytesTotal: 0, rateBps: 0, etaS: null };
    this.update({ progress: { ...p, phase } });
  }

  /** An engine progress report: kept always, written at most every everyMs. */
  bytes(p: Progress, phase: Phase): void {
    const prev = this.rec.progress;
    const first = !prev?.bytesTotal; // the first report: the total is known from now on
    this.rec = { ...this.rec, progress: progressOf(phase, p) };
    if (first || phase !== prev?.phase || Date.now() - this.lastWrite >= this.everyMs) this.write();
  }

  private write(): void {
    this.lastWrite = Date.now();
    this.rec = { ...this.rec, updated: new Date(this.lastWrite).toISOString() };
    try {
      this.save(this.rec);
    } catch (err) {
      if (!this.failed) log.warn(`job ${this.rec.job}: cannot update the running record: ${describe(err)}`);
      this.failed = true;
    }
  }
}
