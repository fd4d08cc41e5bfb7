// The heartbeat: a packet the engine posts to its own port every 2 s. Its dequeue proves the
// completion loop turns (GET /readyz says not ready when none came for 10 s). It has a key of
// its own (owner `engine`, no socket) and one op at a time, a `nop`.
import type { Backend } from './backend.js';
import type { KeyEntry, KeyTable } from './tables/keys.js';
import type { OpPool, OpRecord } from './tables/ops.js';

const HEARTBEAT_MS = 2000;

export class Heartbeat {
  /** Its key-table entry, from start(). */
  entry: KeyEntry | null = null;
  /** Date.now() of the last dequeue of a heartbeat; 0 before the first. */
  lastSeenAt = 0;
  private stopped = false;

  constructor(
    private readonly keys: KeyTable,
    private readonly ops: OpPool,
    private readonly backend: Backend,
  ) {}

  start(): void {
    this.entry = this.keys.assign(-1, { kind: 'engine', id: 'heartbeat' });
    this.post();
  }

  /** No more posts (shutdown); one in flight still comes back and is released. */
  stop(): void {
    this.stopped = true;
  }

  /** The heartbeat's op in flight (0 or 1): a drain does not wait for it. */
  get inFlight(): number {
    return this.entry?.inFlight ?? 0;
  }

  /** Its packet, dequeued with its own key: release it and post the next one later. */
  seen(rec: OpRecord): void {
    (this.entry as KeyEntry).ops.delete(rec);
    this.ops.release(rec);
    this.lastSeenAt = Date.now();
    setTimeout(() => this.post(), HEARTBEAT_MS).unref();
  }

  private post(): void {
    if (this.stopped || !this.entry) return;
    const rec = this.ops.acquire('nop', this.entry, null);
    this.entry.ops.add(rec);
    this.backend.post(this.entry.key, rec, 0);
  }
}
