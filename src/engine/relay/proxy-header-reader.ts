// A listener with `proxyProtocol.accept` sits behind a load balancer that starts each
// connection with a PROXY header naming the real client. Until the header is whole nothing is
// relayed and no upstream is dialled; what arrived after it (the client's first bytes) goes
// first once the relay starts. A connection whose header is malformed, cut short or late is
// reset, with a close reason of its own (`proxy header …`, counted as `proxy-header`).
import type { SocketAddress } from '../backend.js';
import type { EngineCore, OpOwner } from '../core.js';
import type { OpRecord } from '../tables/ops.js';
import type { Endpoint } from './endpoint.js';
import { parseProxyHeader, V2_MAX } from './proxy-protocol.js';

export interface ProxyHeaderResult {
  /** The real client and the address it reached; null when the sender proxied nothing. */
  src: SocketAddress | null;
  dst: SocketAddress | null;
  /** Bytes read after the header: the client's own, to be relayed first. */
  rest: Uint8Array;
}

export interface ProxyHeaderSink {
  readonly abortive: boolean;
  headerRead(result: ProxyHeaderResult): void;
  abort(reason: string, errorName?: string): void;
  failed(kind: 'recv', ep: Endpoint, code: number): void;
  settled(): void;
}

export class ProxyHeaderReader implements OpOwner {
  private got: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly core: EngineCore,
    private readonly conn: ProxyHeaderSink,
    private readonly client: Endpoint,
  ) {}

  start(): void {
    this.read();
  }

  private read(): void {
    const rec = this.core.newOp('recv', this.client.keyEntry, this);
    const buf = this.core.buffers.acquire();
    rec.buffer = buf;
    // Never more than the longest header could still need: little of the client's data is
    // read here, and it fits in one buffer with the header keyport may send on.
    rec.length = Math.min(buf.bytes.byteLength, V2_MAX - this.got.length);
    this.core.submit(rec);
  }

  complete(rec: OpRecord, code: number, bytes: number): void {
    if (this.conn.abortive) {
      this.conn.settled(); // resetting (a late or bad header, a shutdown): nothing to do
      return;
    }
    if (code !== 0) {
      this.conn.failed('recv', this.client, code);
      return;
    }
    if (bytes === 0) {
      this.conn.abort('proxy header missing: the client closed before sending one');
      return;
    }
    const chunk = (rec.buffer as NonNullable<OpRecord['buffer']>).bytes.subarray(0, bytes);
    const all = Buffer.concat([this.got, chunk]); // copies: the record's buffer goes back
    this.got = all;
    const r = parseProxyHeader(all);
    if (r.kind === 'more') {
      this.read();
      return;
    }
    if (r.kind === 'invalid') {
      this.conn.abort(`proxy header invalid: ${r.why}`);
      return;
    }
    this.conn.headerRead({ src: r.src, dst: r.dst, rest: all.slice(r.length) });
  }
}
