// A connection's recent completions (key as dequeued, record, op, bytes, named status, latency),
// kept in a small ring of reused objects so recording one allocates nothing.
import type { OpKind } from './backend.js';
import { hex64, type KeyEntry } from './keys.js';

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

export class CompletionTrace {
  private readonly ring: TraceEntry[] = [];
  private next = 0;

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
      e = {
        at,
        key,
        expectedKey,
        keyMismatch: false,
        record,
        op,
        side,
        bytes,
        status,
        inline,
        latencyUs,
      };
      this.ring.push(e);
    }
    e.at = at;
    e.key = key;
    e.expectedKey = expectedKey;
    e.keyMismatch = key !== null && key !== expectedKey;
    e.record = record;
    e.op = op;
    e.side = side;
    e.bytes = bytes;
    e.status = status;
    e.inline = inline;
    e.latencyUs = latencyUs;
    this.next++;
  }

  /** Oldest first. */
  entries(): TraceEntry[] {
    const n = this.ring.length;
    const start = n < this.depth ? 0 : this.next % n;
    const out: TraceEntry[] = [];
    for (let i = 0; i < n; i++) out.push({ ...(this.ring[(start + i) % n] as TraceEntry) });
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
