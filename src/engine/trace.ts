// A connection's recent completions (key, record, op, bytes, named status, latency), kept in a
// small ring of reused objects so recording one allocates nothing.
import type { OpKind } from './backend.js';

export interface TraceEntry {
  at: number;
  key: string;
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
    key: string,
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
      e = { at, key, record, op, side, bytes, status, inline, latencyUs };
      this.ring.push(e);
    }
    e.at = at;
    e.key = key;
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
