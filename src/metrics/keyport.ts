// keyport's Prometheus metrics (DESIGN §4): an EngineObserver that records into children made
// up front, so the per-completion calls only add to numbers, plus gauges and byte counters read
// from engine state at scrape time. Labels stay bounded: op kind, listener id, error name (capped).
import { exponentialBuckets } from 'prom-client';
import { ANOMALY_KINDS, type AnomalyKind } from '../engine/anomalies.js';
import { OP_KINDS, type OpKind } from '../engine/backend.js';
import { REJECT_REASONS, type RejectReason } from '../engine/net/sources.js';
import type { EngineObserver, SocketCall } from '../engine/observers.js';
import {
  CLOSE_REASON_KINDS,
  type CloseReasonKind,
  closeReasonKind,
} from '../engine/relay/close-reasons.js';
import type { Upstream } from '../engine/relay/upstreams.js';
import { VERSION } from '../version.js';
import { Exposition, type Rendered } from './exposition.js';
import {
  CollectedFamily,
  type CounterChild,
  CounterVec,
  type HistogramChild,
  HistogramVec,
  type Sample,
} from './families.js';

/** What the metrics read from the engine (the Engine satisfies it). */
export interface MetricsEngine {
  readonly ops: { inFlightOfKind(kind: OpKind): number; readonly quarantined: number };
  readonly listeners: ReadonlyMap<
    string,
    {
      readonly id: string;
      connections: { size: number };
      readonly degraded: boolean;
      readonly upstreams?: { readonly list: readonly Upstream[] } | null;
    }
  >;
  readonly anomalies: { readonly counts: Readonly<Record<AnomalyKind, number>> };
  readonly connections: ReadonlyMap<string, ConnectionLike>;
  readonly buffers: {
    readonly inUse: number;
    readonly provided: { readonly available: number } | null;
  };
  readonly stats: { readonly providedExhausted: number; readonly parkedReads: number };
  readonly splicePipes: { readonly bytes: number; readonly inUse: number } | null;
  /** For keyport_build_info{backend}. */
  readonly backend?: { readonly name: string };
}

interface ListenerLike {
  readonly id: string;
}

interface ConnectionLike {
  readonly listener: ListenerLike;
  readonly client: { readonly bytesIn: number; readonly bytesOut: number };
  /** As the connection recorded it; counted by kind (closeReasonKind), never verbatim. */
  readonly closeReason: string | null;
  /** performance.now() at accept. */
  readonly startedAt: number;
}

/** Distinct (op, error) series before further unknown names are counted as error="other". */
export const MAX_ERROR_SERIES = 64;

/** 10 µs doubling to ~10.5 s: loopback completions sit in the low buckets, stalls at the top. */
export const LATENCY_BUCKETS = exponentialBuckets(0.00001, 2, 21);
/** 1 to 256: both backends take at most 256 completions per dequeue. */
export const BATCH_BUCKETS = exponentialBuckets(1, 2, 9);

/**
 * Connection lifetimes, 1 ms to 1 h: a refused or reset client ends in milliseconds, a request
 * in seconds, a long-lived session (database, SSH) in minutes to hours; longer ones land in +Inf.
 */
export const DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600,
];

const REASON_INDEX = new Map<CloseReasonKind, number>(CLOSE_REASON_KINDS.map((k, i) => [k, i]));
const REASON_OTHER = CLOSE_REASON_KINDS.indexOf('other');

/** Per-listener totals; bytes of closed connections are folded in when they close. */
class ListenerTotals {
  accepted = 0;
  /** Closed connections by CLOSE_REASON_KINDS index. */
  readonly closed = new Float64Array(CLOSE_REASON_KINDS.length);
  constructor(readonly duration: HistogramChild) {}
  /** Upstream connect failures by error name. */
  readonly connectFailures = new Map<string, number>();
  closedBytesIn = 0;
  closedBytesOut = 0;
  /** Clients reset right after accept, by reason. */
  readonly rejected: Record<RejectReason, number> = {
    'max-connections': 0,
    'engine-max-connections': 0,
    'per-source': 0,
    denied: 0,
  };
}

export class KeyportMetrics implements EngineObserver {
  readonly exposition: Exposition;
  private readonly latency = new HistogramVec(
    'keyport_completion_latency_seconds',
    'Time from issuing an op to dequeuing (or inline-completing) its completion',
    LATENCY_BUCKETS,
  );
  private readonly batchSize = new HistogramVec(
    'keyport_dequeue_batch_size',
    'Completions taken by one dequeue (GetQueuedCompletionStatusEx, or one io_uring CQ reap)',
    BATCH_BUCKETS,
  );
  private readonly inline = new CounterVec(
    'keyport_inline_completions_total',
    'Ops that completed at issue, without a completion packet',
    ['op'],
  );
  private readonly errors = new CounterVec(
    'keyport_completion_errors_total',
    'Completions with a non-zero status, by op and error name',
    ['op', 'error'],
  );
  private readonly socketErrors = new CounterVec(
    'keyport_socket_errors_total',
    'Socket calls made outside any op that failed, by call and error name: shutdown (the FIN after a relayed EOF) and update-context (SO_UPDATE_ACCEPT_CONTEXT / SO_UPDATE_CONNECT_CONTEXT on Windows)',
    ['call', 'error'],
  );
  private readonly socketErrorChildren = new Map<string, CounterChild>();
  private readonly duration = new HistogramVec(
    'keyport_connection_duration_seconds',
    'Lifetime of closed connections, from accept to close',
    DURATION_BUCKETS,
  );
  private readonly latencyByOp = {} as Record<OpKind, HistogramChild>;
  private readonly inlineByOp = {} as Record<OpKind, CounterChild>;
  private readonly errorsByOp = {} as Record<OpKind, Map<string, CounterChild>>;
  private readonly batchChild: HistogramChild;
  private readonly totals = new Map<string, ListenerTotals>();
  private connectFailureSeries = 0;

  constructor(
    private readonly engine: MetricsEngine,
    opts: MetricsOptions = {},
  ) {
    for (const op of OP_KINDS) {
      this.latencyByOp[op] = this.latency.child({ op });
      this.inlineByOp[op] = this.inline.child(op);
      this.errorsByOp[op] = new Map();
    }
    this.batchChild = this.batchSize.child();

    const x = new Exposition(opts);
    this.exposition = x;
    x.add(
      new CollectedFamily(
        'keyport_build_info',
        'Always 1; the labels say which keyport this is: version, completion backend (iocp or uring) and Node.js version',
        'gauge',
        () => [
          {
            labels: {
              version: VERSION,
              backend: this.engine.backend?.name ?? 'none',
              node: process.version,
            },
            value: 1,
          },
        ],
      ),
    );
    x.add(this.latency);
    x.add(this.batchSize);
    const throttle = opts.apiThrottle;
    if (throttle) {
      x.add(
        new CollectedFamily(
          'keyport_api_throttled_total',
          "Times an API request or page slice waited because the API had used its share of the engine's thread (api.threadShare)",
          'counter',
          () => [{ labels: {}, value: throttle.waits }],
        ),
      );
      x.add(
        new CollectedFamily(
          'keyport_api_throttled_seconds_total',
          'Time API requests and page slices spent waiting for their share of the engine thread',
          'counter',
          () => [{ labels: {}, value: throttle.waitedMs / 1000 }],
        ),
      );
      x.add(
        new CollectedFamily(
          'keyport_api_thread_seconds_total',
          "Time of the engine's thread the API's handlers and page writes took (what api.threadShare meters)",
          'counter',
          () => [{ labels: {}, value: throttle.chargedMs / 1000 }],
        ),
      );
    }
    x.add(
      new CollectedFamily(
        'keyport_ops_in_flight',
        'Ops issued and not yet completed',
        'gauge',
        () => this.opsInFlight(),
      ),
    );
    x.add(
      new CollectedFamily('keyport_connections', 'Open connections per listener', 'gauge', () =>
        [...this.engine.listeners.values()].map((l) => ({
          labels: { listener: l.id },
          value: l.connections.size,
        })),
      ),
    );
    x.add(this.perListener('keyport_accepted_total', 'Connections accepted', (t) => t.accepted));
    x.add(
      new CollectedFamily(
        'keyport_connections_closed_total',
        'Connections closed, by the kind of their close reason (eof, client-error, idle-timeout, …)',
        'counter',
        () => this.closed(),
      ),
    );
    x.add(this.duration);
    x.add(
      new CollectedFamily(
        'keyport_connections_rejected_total',
        "Clients reset right after accept, before any read or upstream connect, by reason: max-connections (the listener's maxConnections, onLimit reset), engine-max-connections (engine.maxConnections), per-source (maxConnectionsPerSource), denied (allow/deny rules)",
        'counter',
        () => this.rejectedSamples(),
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_bytes_total',
        'Bytes relayed, as seen from the client: in = received from it, out = sent to it',
        'counter',
        () => this.bytes(),
      ),
    );
    x.add(this.errors);
    x.add(this.socketErrors);
    x.add(
      new CollectedFamily(
        'keyport_upstream_connect_failures_total',
        'Forward connections whose upstream could not be reached (name not resolved, no socket, connect failed or timed out), by error name',
        'counter',
        () => this.connectFailures(),
      ),
    );
    x.add(this.inline);
    const perTarget = (
      name: string,
      help: string,
      type: 'gauge' | 'counter',
      value: (u: Upstream, now: number) => number,
    ) =>
      new CollectedFamily(name, help, type, () => {
        const now = performance.now();
        const out: { labels: Record<string, string>; value: number }[] = [];
        for (const l of this.engine.listeners.values())
          for (const u of l.upstreams?.list ?? [])
            out.push({ labels: { listener: l.id, target: u.label }, value: value(u, now) });
        return out;
      });
    x.add(
      perTarget(
        'keyport_upstream_up',
        '1 while a forward target gets new connections; 0 while it is ejected (connect failures) or down (active checks)',
        'gauge',
        (u, now) => (u.state(now) === 'up' ? 1 : 0),
      ),
    );
    x.add(
      perTarget(
        'keyport_upstream_connections',
        'Client connections sent to a target now (connecting or open)',
        'gauge',
        (u) => u.connections,
      ),
    );
    x.add(
      perTarget(
        'keyport_upstream_connections_total',
        'Client connections a target accepted',
        'counter',
        (u) => u.connectionsTotal,
      ),
    );
    x.add(
      perTarget(
        'keyport_upstream_target_failures_total',
        'Connects to a target that failed (every address its name resolved to), retried on the next target when one is left',
        'counter',
        (u) => u.connectFailuresTotal,
      ),
    );
    x.add(
      perTarget(
        'keyport_upstream_ejections_total',
        'Times a target was ejected for a cool-down after consecutive connect failures',
        'counter',
        (u) => u.ejectionsTotal,
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_completion_anomalies_total',
        "Completions refused because they disagree with what was issued: stray (no op in flight on that record), key-mismatch (the key is not the socket's), duplicate (the kernel still held the op, or its byte count differs)",
        'counter',
        () =>
          ANOMALY_KINDS.map((kind) => ({
            labels: { kind },
            value: this.engine.anomalies.counts[kind],
          })),
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_op_records_quarantined',
        'Op records taken out of use for good after a key mismatch (their memory stays pinned)',
        'gauge',
        () => [{ labels: {}, value: this.engine.ops.quarantined }],
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_data_buffers',
        'Data buffers: in_use = held by ops and relays; provided_free = io_uring provided buffers waiting in the kernel for data (absent on IOCP)',
        'gauge',
        () => {
          const b = this.engine.buffers;
          const out = [{ labels: { state: 'in_use' }, value: b.inUse }];
          if (b.provided)
            out.push({ labels: { state: 'provided_free' }, value: b.provided.available });
          return out;
        },
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_provided_buffers_exhausted_total',
        'Reads that found every io_uring provided buffer in use and read into a buffer of their own instead',
        'counter',
        () => [{ labels: {}, value: this.engine.stats.providedExhausted }],
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_idle_reads_parked_total',
        'Buffered reads idle for engine.parkAfterMs that the engine cancelled to give their buffer back (the direction then waits without one)',
        'counter',
        () => [{ labels: {}, value: this.engine.stats.parkedReads }],
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_spliced_bytes_total',
        'Bytes relayed by splice through kernel pipes (io_uring bulk directions), never copied to user memory; also counted in keyport_bytes_total',
        'counter',
        () => [{ labels: {}, value: this.engine.splicePipes?.bytes ?? 0 }],
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_splice_pipes',
        'Kernel pipes open for splicing relay directions (two descriptors each)',
        'gauge',
        () => [{ labels: {}, value: this.engine.splicePipes?.inUse ?? 0 }],
      ),
    );
    const accessLog = opts.accessLog;
    x.add(
      new CollectedFamily(
        'keyport_access_log_dropped_total',
        'Access log lines dropped because more than 4 MiB of lines were waiting to be written (the disk or stdout did not keep up); 0 when the access log is off',
        'counter',
        () => [{ labels: {}, value: accessLog?.dropped ?? 0 }],
      ),
    );
    x.add(
      new CollectedFamily(
        'keyport_listener_degraded',
        '1 while a listener has no accept posted (retrying after accept failures such as EMFILE)',
        'gauge',
        () =>
          [...this.engine.listeners.values()].map((l) => ({
            labels: { listener: l.id },
            value: l.degraded ? 1 : 0,
          })),
      ),
    );
  }

  render(accept?: string): Promise<Rendered> {
    return this.exposition.render(accept);
  }

  // ---- EngineObserver: called on the data path; no allocation past the first sighting --------

  completion(
    op: OpKind,
    latencySeconds: number,
    _code: number,
    errorName: string | null,
    inline: boolean,
  ): void {
    this.latencyByOp[op].observe(latencySeconds);
    if (inline) this.inlineByOp[op].inc();
    if (errorName !== null) this.errorChild(op, errorName).inc();
  }

  batch(size: number): void {
    this.batchChild.observe(size);
  }

  accepted(listener: ListenerLike): void {
    this.listenerTotals(listener.id).accepted++;
  }

  connectionOpened(): void {}

  connectionClosed(conn: ConnectionLike): void {
    // Live connections are summed at scrape time; a closed one's final count moves here.
    const t = this.listenerTotals(conn.listener.id);
    t.closedBytesIn += conn.client.bytesIn;
    t.closedBytesOut += conn.client.bytesOut;
    t.closed[REASON_INDEX.get(closeReasonKind(conn.closeReason)) ?? REASON_OTHER] += 1;
    t.duration.observe((performance.now() - conn.startedAt) / 1000);
  }

  socketCallFailed(call: SocketCall, errorName: string): void {
    const id = `${call}:${errorName}`;
    let c = this.socketErrorChildren.get(id);
    if (!c) {
      // Error names come from the OS: cap the series, as for completion errors.
      const name = this.socketErrorChildren.size < MAX_ERROR_SERIES ? errorName : 'other';
      c = this.socketErrors.child(call, name);
      this.socketErrorChildren.set(id, c);
    }
    c.inc();
  }

  rejected(listener: ListenerLike, reason: RejectReason): void {
    this.listenerTotals(listener.id).rejected[reason]++;
  }

  upstreamConnectFailed(listener: ListenerLike, errorName: string): void {
    const byName = this.listenerTotals(listener.id).connectFailures;
    // Error names come from the OS: cap the series they can create, as for completion errors.
    const name =
      byName.has(errorName) || this.connectFailureSeries < MAX_ERROR_SERIES ? errorName : 'other';
    const n = byName.get(name);
    if (n === undefined) this.connectFailureSeries++;
    byName.set(name, (n ?? 0) + 1);
  }

  // ---- helpers -----------------------------------------------------------------------------

  private errorChild(op: OpKind, name: string): CounterChild {
    const byName = this.errorsByOp[op];
    let c = byName.get(name);
    if (c) return c;
    // Error names come from the OS (WIN32_<n>, NTSTATUS_0x…): cap the series they can create.
    const key = this.errors.size < MAX_ERROR_SERIES ? name : 'other';
    c = byName.get(key) ?? this.errors.child(op, key);
    byName.set(key, c);
    return c;
  }

  private listenerTotals(id: string): ListenerTotals {
    let t = this.totals.get(id);
    if (!t) {
      t = new ListenerTotals(this.duration.child({ listener: id }));
      this.totals.set(id, t);
    }
    return t;
  }

  /** Every listener gets its series from the start (at 0), so rate() sees the first increase. */
  private perListener(name: string, help: string, pick: (t: ListenerTotals) => number) {
    return new CollectedFamily(name, help, 'counter', () => {
      for (const id of this.engine.listeners.keys()) this.listenerTotals(id);
      return [...this.totals].map(([listener, t]) => ({ labels: { listener }, value: pick(t) }));
    });
  }

  /**
   * One series per listener and error name; a listener without any failure yet has one series
   * without `error`, at 0, so that it is there from the start.
   */
  private connectFailures(): Sample[] {
    for (const id of this.engine.listeners.keys()) this.listenerTotals(id);
    const out: Sample[] = [];
    for (const [listener, t] of this.totals) {
      if (t.connectFailures.size === 0) out.push({ labels: { listener }, value: 0 });
      for (const [error, value] of t.connectFailures)
        out.push({ labels: { listener, error }, value });
    }
    return out;
  }

  /**
   * One series per listener and reason kind seen; a listener without any close yet has one
   * series without `reason`, at 0, as for connect failures.
   */
  private closed(): Sample[] {
    for (const id of this.engine.listeners.keys()) this.listenerTotals(id);
    const out: Sample[] = [];
    for (const [listener, t] of this.totals) {
      let any = false;
      t.closed.forEach((value, i) => {
        if (value === 0) return;
        any = true;
        out.push({ labels: { listener, reason: CLOSE_REASON_KINDS[i] as string }, value });
      });
      if (!any) out.push({ labels: { listener }, value: 0 });
    }
    return out;
  }

  /** Every reason of every listener, from 0, so rate() sees the first refusal. */
  private rejectedSamples(): Sample[] {
    for (const id of this.engine.listeners.keys()) this.listenerTotals(id);
    const out: Sample[] = [];
    for (const [listener, t] of this.totals)
      for (const reason of REJECT_REASONS)
        out.push({ labels: { listener, reason }, value: t.rejected[reason] });
    return out;
  }

  private opsInFlight(): Sample[] {
    return OP_KINDS.map((op) => ({ labels: { op }, value: this.engine.ops.inFlightOfKind(op) }));
  }

  private bytes(): Sample[] {
    for (const id of this.engine.listeners.keys()) this.listenerTotals(id);
    const live = new Map<string, { in: number; out: number }>();
    for (const c of this.engine.connections.values()) {
      const b = live.get(c.listener.id) ?? { in: 0, out: 0 };
      b.in += c.client.bytesIn;
      b.out += c.client.bytesOut;
      live.set(c.listener.id, b);
    }
    const out: Sample[] = [];
    for (const [listener, t] of this.totals) {
      const b = live.get(listener);
      out.push(
        { labels: { listener, direction: 'in' }, value: t.closedBytesIn + (b?.in ?? 0) },
        { labels: { listener, direction: 'out' }, value: t.closedBytesOut + (b?.out ?? 0) },
      );
    }
    return out;
  }
}

export interface MetricsOptions {
  processMetrics?: boolean;
  /** The API's thread-share meter (api/thread-share.ts): how often and how long it waited. */
  apiThrottle?: { readonly waits: number; readonly waitedMs: number; readonly chargedMs: number };
  /** The access log (main/access-log.ts), when one is configured: its dropped lines. */
  accessLog?: { readonly dropped: number };
}

export function createMetrics(engine: MetricsEngine, opts: MetricsOptions = {}): KeyportMetrics {
  return new KeyportMetrics(engine, opts);
}
