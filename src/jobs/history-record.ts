// The outcome of the last `history verify` of a job: <state_dir>/<job>.history.json, written
// atomically (state.ts writeFileAtomic) by src/history/verify.ts, read by `check` and by the
// history_verify_every schedule. Readers never throw: a missing file is "never verified".
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe } from '../errors.js';
import type { CopyCheck } from '../proto/messages.js';
import { writeFileAtomic } from './state.js';

export type { CopyCheck } from '../proto/messages.js';

export interface VerifyRecord {
  version: 1;
  job: string;
  /** ISO time the verify finished. */
  at: string;
  copies: CopyCheck[];
}

export const verifyRecordPath = (stateDir: string, job: string): string => join(stateDir, `${job}.history.json`);

export function putVerifyRecord(stateDir: string, rec: VerifyRecord): void {
  writeFileAtomic(verifyRecordPath(stateDir, rec.job), JSON.stringify(rec, null, 1) + '\n');
}

/** The last verify of a job: null when never verified; problem when the file is unreadable. */
export function readVerifyRecord(stateDir: string, job: string): { rec: VerifyRecord | null; problem?: string } {
  let text: string;
  try {
    text = readFileSync(verifyRecordPath(stateDir, job), 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? { rec: null } : { rec: null, problem: describe(err) };
  }
  try {
    const v = JSON.parse(text) as VerifyRecord;
    if (v?.version !== 1 || v.job !== job || !Array.isArray(v.copies) || Number.isNaN(Date.parse(v.at))) return { rec: null, problem: 'not a history verify record' };
    return { rec: v };
  } catch (err) {
    return { rec: null, problem: `not valid JSON (${(err as Error).message})` };
  }
}
