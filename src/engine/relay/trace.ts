// A connection's recent completions (key as dequeued, record, op, bytes, named status, latency),
// kept in a small ring of reused objects so recording one allocates nothing.
import { OP_KINDS, type OpKind } from '../backend.js';
import { hex64, type KeyEntry } from '../tables/keys.js';

export interface TraceEntry {
  at: number;
  /**
   * The completion key the packet carried, as dequeued; null for an op that finished inline
   * (no packet was queued, so the port returned no key).
   */
  key: string | null;
  /** The key keyport associated the socket with. */
  expectedKey: string;
  /** The dequeued key differs from the expected one (the packet was refused). */
  keyMismatch: boolean;
  record: string;
  op: OpKind;
  side: 'client' | 'upstream';
  bytes: number;
  status: string;
  inline: boolean;
  latencyUs: number;
}

/**
 * One slot of the ring, kept small: an idle relayed connection holds half a dozen of these for
 * its whole life. Time is stored as whole microseconds after the trace began and the latency as
 * whole microseconds (small integers, not boxed doubles); op, side and the two booleans share a
 * word. The strings are the key's, the record's and the status table's own (no copies).
 */
interface Slot {
  atUs: number;
  latencyUs: number;
  bytes: number;
  flags: number;
  key: string | null;
  expectedKey: string;
  record: string;
  status: string;
}

const INLINE = 1 << 8;
const MISMATCH = 1 << 9;
const UPSTREAM = 1 << 10;
const OP_MASK = 0xff;

export class CompletionTrace {
  private readonly ring: Slot[] = [];
  private next = 0;
  /** Wall-clock ms the offsets count from. */
  private readonly base = performance.timeOrigin + performance.now();

  constructor(private readonly depth: number) {}

  record(
    at: number,
    key: string | null,
    expectedKey: string,
    record: string,
    op: OpKind,
    side: 'client' | 'upstream',
    bytes: number,
    status: string,
    inline: boolean,
    latencyUs: number,
  ): void {
    let e = this.ring[this.next % this.depth];
    if (!e) {
      e = { atUs: 0, latencyUs: 0, bytes: 0, flags: 0, key, expectedKey, record, status };
      this.ring.push(e);
    }
    e.atUs = Math.round((at - this.base) * 1000);
    e.latencyUs = Math.round(latencyUs);
    e.bytes = bytes;
    e.flags =
      OP_KINDS.indexOf(op) |
      (inline ? INLINE : 0) |
      (key !== null && key !== expectedKey ? MISMATCH : 0) |
      (side === 'upstream' ? UPSTREAM : 0);
    e.key = key;
    e.expectedKey = expectedKey;
    e.record = record;
    e.status = status;
    this.next++;
  }

  /** Oldest first. */
  entries(): TraceEntry[] {
    const n = this.ring.length;
    const start = n < this.depth ? 0 : this.next % n;
    const out: TraceEntry[] = [];
    for (let i = 0; i < n; i++) {
      const e = this.ring[(start + i) % n] as Slot;
      out.push({
        at: this.base + e.atUs / 1000,
        key: e.key,
        expectedKey: e.expectedKey,
        keyMismatch: (e.flags & MISMATCH) !== 0,
        record: e.record,
        op: OP_KINDS[e.flags & OP_MASK] as OpKind,
        side: e.flags & UPSTREAM ? 'upstream' : 'client',
        bytes: e.bytes,
        status: e.status,
        inline: (e.flags & INLINE) !== 0,
        latencyUs: e.latencyUs,
      });
    }
    return out;
  }
}

/**
 * The key a packet carried, for a trace or an event: the entry's own string when it is the
 * expected key (no allocation on the completion path), null when no packet carried one.
 */
export function keyAsDequeued(dequeued: bigint | null, entry: KeyEntry): string | null {
  if (dequeued === null) return null;
  return dequeued === entry.key ? entry.keyHex : hex64(dequeued);
}
