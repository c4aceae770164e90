// The state check of a version 2 patch (docs/patch-format.md, "The state check"): is the target in
// the state the patch was made from, does it already hold the result, or a mix of both (an apply
// that stopped half-way)? Anything else is refused before the first write.
//   for each region R of the patch (cursor 1 over the file) :
//     T = block hashes of the target's R (the one read of the target; past a file's end: zeros)
//     for each record in R (cursor 2): per block, T == base hash | T == hash of the record's data | refuse
//       then T' = base hashes there, T'' = the record's hashes there
//     digest(T') must be R.base_digest (the blocks the patch does not write are as they were)
//   digest of all T' = base_fingerprint, of all T'' = result_fingerprint (else the patch is inconsistent)
// Memory: one region of the target and two arrays of its hashes, plus the two cursors' buffers
// (max_record_len + 1 MiB each). Reads only; an interruption leaves nothing behind.
import { statSync } from 'node:fs';
import { BlkError, ExitCode, FormatError } from '../errors.js';
import { blockHasher, type Hasher } from '../hash.js';
import { TRAILER_LEN_V2, hex64, type PatchHeader, type Trailer } from '../patch/format.js';
import { scan, type Item } from '../patch/reader.js';
import { blocksOf, type RegionItem } from '../patch/state.js';
import { readFull, type Device } from '../io/device.js';

export type TargetState = 'base' | 'result' | 'partial';

export interface StateReport {
  state: TargetState;
  /** Blocks the patch writes, and how many of them hold the base and the result. */
  touched: number;
  atBase: number;
  atResult: number;
}

/** Thrown when the target is in another state; `offset` is the first byte known to differ. */
export class WrongStateError extends BlkError {
  constructor(readonly offset: number, detail: string) {
    super(ExitCode.PATCH_INVALID, `the target is not in the state this patch was made from: first difference at byte ${offset} (${detail})`);
    this.name = 'WrongStateError';
  }
}

type RecordItem = Extract<Item, { record: unknown }>;

/** Checks dev against the validated patch at `path` (header and trailer from validatePatch). */
export async function checkTargetState(dev: Device, path: string, header: PatchHeader, trailer: Trailer, hasher: Hasher,
  aborted: () => void = () => undefined): Promise<StateReport> {
  const st = header.state!, bs = header.blockSize;
  const bh = await blockHasher(st.regionSize, bs, st.seed);
  const t = Buffer.allocUnsafe((st.regionSize / bs) * 8), res = Buffer.allocUnsafe(t.length);
  const whole = { base: hasher.create64(st.seed), result: hasher.create64(st.seed) };
  const report: StateReport = { state: 'base', touched: 0, atBase: 0, atResult: 0 };
  const records = recordsOf(path, hasher);
  try {
    let next = await records.next();
    for await (const region of regionsOf(path, hasher)) {
      aborted();
      readFull(dev, bh.chunk, region.length, region.offset, true);
      const n = bh.hash(region.length, t);
      t.copy(res, 0, 0, n * 8);
      let touchedDiffers = -1;
      for (; !next.done && next.value.record.offset < region.offset + region.length; next = await records.next()) {
        const bad = compareRecord(next.value, region, t, res, header, hasher, report);
        if (touchedDiffers < 0 && bad >= 0) touchedDiffers = bad;
      }
      if (hasher.h64(t.subarray(0, n * 8), st.seed) !== region.baseDigest) {
        throw new WrongStateError(region.offset, `in bytes ${region.offset}..${region.offset + region.length}, blocks this patch does not write differ`);
      }
      if (touchedDiffers >= 0) throw new WrongStateError(touchedDiffers, 'a block this patch writes holds neither its old nor its new content');
      whole.base.update(t.subarray(0, n * 8));
      whole.result.update(res.subarray(0, n * 8));
    }
  } finally {
    await records.return(undefined);
  }
  const trailerAt = statSync(path).size - TRAILER_LEN_V2;
  checkWhole(whole.base.digest(), trailer.state!.baseFingerprint, 'base_fingerprint', trailerAt + 40);
  checkWhole(whole.result.digest(), trailer.state!.resultFingerprint, 'result_fingerprint', trailerAt + 48);
  report.state = report.atResult === report.touched ? 'result' : report.atBase === report.touched ? 'base' : 'partial';
  return report;
}

/**
 * One record's blocks against the target's hashes `t` (the region's): counts base and result
 * blocks, puts the base hashes into t and the record's into res; returns the offset of the first
 * block that is neither, or -1.
 */
function compareRecord(item: RecordItem, region: RegionItem, t: Buffer, res: Buffer, header: PatchHeader, hasher: Hasher, report: StateReport): number {
  const { record: r, data, base } = item;
  const bs = header.blockSize, seed = header.state!.seed;
  const first = (r.offset - region.offset) / bs;
  let bad = -1;
  for (let j = 0; j < blocksOf(r.length, bs); j++) {
    const len = Math.min(bs, r.length - j * bs);
    const now = t.readBigUInt64LE((first + j) * 8), was = base!.readBigUInt64LE(j * 8);
    const will = hasher.h64(data ? data.subarray(j * bs, j * bs + len) : zeros(len), seed);
    report.touched++;
    if (now === was) report.atBase++;
    else if (now === will) report.atResult++;
    else if (bad < 0) bad = r.offset + j * bs;
    t.writeBigUInt64LE(was, (first + j) * 8);
    res.writeBigUInt64LE(will, (first + j) * 8);
  }
  return bad;
}

function checkWhole(got: bigint, stored: bigint, field: string, at: number): void {
  if (got !== stored) {
    throw new FormatError(`trailer.${field}`, at, `the patch is inconsistent: its regions and records add up to ${hex64(got)}, the trailer says ${hex64(stored)}`);
  }
}

let zeroBlock = Buffer.alloc(0);
function zeros(len: number): Buffer {
  if (zeroBlock.length < len) zeroBlock = Buffer.alloc(len);
  return zeroBlock.subarray(0, len);
}

async function* regionsOf(path: string, hasher: Hasher): AsyncGenerator<RegionItem> {
  for await (const item of scan(path, hasher, { payloads: false })) if ('region' in item) yield item.region;
}

async function* recordsOf(path: string, hasher: Hasher): AsyncGenerator<RecordItem> {
  for await (const item of scan(path, hasher)) if ('record' in item) yield item;
}
