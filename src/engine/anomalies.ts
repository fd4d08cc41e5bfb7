// Completions the engine refuses to apply (DESIGN §1.8): the dequeued key and record are the
// kernel's word; when they disagree with what keyport issued, the packet never reaches an owner.
// Each is counted by kind, shown in /readyz and /metrics, sent as an event, and logged at most
// once per kind per second (a storm of them must not flood the log).

export type AnomalyKind = 'stray' | 'key-mismatch' | 'duplicate';
export const ANOMALY_KINDS: readonly AnomalyKind[] = ['stray', 'key-mismatch', 'duplicate'];

export class AnomalyCounter {
  readonly counts: Record<AnomalyKind, number> = { stray: 0, 'key-mismatch': 0, duplicate: 0 };
  private readonly lastLogged: Record<AnomalyKind, number> = {
    stray: 0,
    'key-mismatch': 0,
    duplicate: 0,
  };
  private readonly unlogged: Record<AnomalyKind, number> = {
    stray: 0,
    'key-mismatch': 0,
    duplicate: 0,
  };

  /** Counts one; returns how many went unlogged before it if this one should be logged, else -1. */
  count(kind: AnomalyKind, now: number): number {
    this.counts[kind]++;
    if (now - this.lastLogged[kind] < 1000) {
      this.unlogged[kind]++;
      return -1;
    }
    this.lastLogged[kind] = now;
    const skipped = this.unlogged[kind];
    this.unlogged[kind] = 0;
    return skipped;
  }

  get total(): number {
    return this.counts.stray + this.counts['key-mismatch'] + this.counts.duplicate;
  }
}
