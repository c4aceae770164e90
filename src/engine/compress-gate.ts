// When the source tries lz4 on a record. Random or already-compressed data never shrinks, and an
// lz4 attempt on it costs CPU (and lz4-napi's garbage) for nothing: after GIVE_UP_AFTER bytes in a
// row that did not shrink, records go raw for the next RETRY_AFTER bytes, then lz4 is tried again
// (data changes character along a device: a database file after a compressed archive).
// Memory: two counters. Interrupted: nothing to leave.

/** Bytes of records in a row that lz4 did not shrink before it pauses. */
export const GIVE_UP_AFTER = 4 * 1024 * 1024;
/** Bytes of records sent raw, without an attempt, before lz4 is tried again. */
export const RETRY_AFTER = 64 * 1024 * 1024;

export class CompressGate {
  private failed = 0;
  private skip = 0;

  constructor(private readonly enabled: boolean) {}

  /** Whether to try lz4 on the next record of `length` bytes. */
  tryOn(length: number): boolean {
    if (!this.enabled) return false;
    if (this.skip <= 0) return true;
    this.skip -= length;
    return false;
  }

  /** What the attempt on a record of `length` bytes gave. */
  result(length: number, shrank: boolean): void {
    if (shrank) this.failed = 0;
    else if ((this.failed += length) >= GIVE_UP_AFTER) {
      this.failed = 0;
      this.skip = RETRY_AFTER;
    }
  }
}
