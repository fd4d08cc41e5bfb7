// EngineControl: the only door from the API into the engine. It reads the engine into plain
// snapshot objects or JSON pages (no live references leak out) and carries the API's commands
// (start and stop listeners, close connections, cancel ops).

import type { OpKind } from './backend.js';
import { type CancelOutcome, type Engine, ListenError } from './engine.js';
import type { EventListener } from './events.js';
import type { RejectReason } from './net/sources.js';
import type { BalancePolicy, ListenerConfig } from './options.js';
import { formatTarget } from './relay/connect-failures.js';
import type { Connection } from './relay/connection.js';
import { formatSocketAddress } from './relay/endpoint.js';
import type { Listener } from './relay/listener.js';
import type { TraceEntry } from './relay/trace.js';
import type { Upstream, UpstreamState } from './relay/upstreams.js';
import { hex64, type KeyEntry, type KeyOwner } from './tables/keys.js';
import type { OpRecord } from './tables/ops.js';
import { FragmentCache, type PageWalk, pageWalk } from './view-fragments.js';

export type { PageWalk };

export interface UpstreamSnapshot {
  target: string;
  weight: number;
  state: UpstreamState;
  connections: number;
  connectionsTotal: number;
  connectFailuresTotal: number;
  consecutiveFailures: number;
  ejectedUntil: string | null;
  ejectionsTotal: number;
  lastError: string | null;
  lastErrorAt: string | null;
  check: {
    state: 'up' | 'down' | 'unknown';
    checksTotal: number;
    failuresTotal: number;
    lastError: string | null;
    lastCheckAt: string | null;
  } | null;
}

export interface ListenerSnapshot {
  id: string;
  mode: 'echo' | 'forward';
  address: string;
  target: string | null;
  balance: BalancePolicy | null;
  upstreams: UpstreamSnapshot[];
  state: string;
  key: string | null;
  acceptDepth: number;
  acceptsPending: number;
  connections: number;
  maxConnections: number;
  onLimit: 'wait' | 'reset';
  rejectedTotal: number;
  rejected: Record<RejectReason, number>;
  maxConnectionsPerSource: number | null;
  allow: string[];
  deny: string[];
  proxyProtocol: { send: 'v1' | 'v2' | null; accept: boolean; timeoutMs: number };
  idleTimeoutMs: number;
  idleMinBytes: number;
  closeTimeoutMs: number;
  acceptPostsTotal: number;
  acceptError: string | null;
  acceptErrorAt: string | null;
  connectTimeoutMs: number;
  acceptedTotal: number;
  createdAt: string;
}

export interface ConnectionSnapshot {
  id: string;
  listener: string;
  mode: 'echo' | 'forward';
  state: string;
  key: string;
  upstreamKey: string | null;
  local: string | null;
  remote: string | null;
  upstream: string | null;
  bytesIn: number;
  bytesOut: number;
  upstreamBytesIn: number | null;
  upstreamBytesOut: number | null;
  opsInFlight: number;
  ageMs: number;
  idleMs: number;
  createdAt: string;
}

export interface KeySnapshot {
  key: string;
  index: number;
  generation: number;
  owner: KeyOwner;
  socket: number;
  associatedAt: string;
  completions: number;
  opsInFlight: number;
}

export interface OpSnapshot {
  record: string;
  op: string;
  key: string;
  owner: KeyOwner | null;
  connection: string | null;
  listener: string | null;
  issuedAt: string;
  ageMs: number;
  bufferSize: number | null;
  bufferSelect: boolean;
  splice: boolean;
}

export interface ConnectionFilter {
  listener?: string;
  state?: string;
  offset: number;
  limit: number;
}

export interface Page {
  offset: number;
  limit: number;
}

export interface ConnectionsSummary {
  total: number;
  byListener: Record<string, number>;
  byState: Record<string, number>;
  oldest: ConnectionSnapshot[];
  busiest: ConnectionSnapshot[];
}

/** Age buckets of GET /ops/summary: each counts ops younger than ltMs (the last: the rest). */
export const AGE_BUCKETS: ReadonlyArray<{ label: string; ltMs: number | null }> = [
  { label: '<10ms', ltMs: 10 },
  { label: '<100ms', ltMs: 100 },
  { label: '<1s', ltMs: 1_000 },
  { label: '<10s', ltMs: 10_000 },
  { label: '>=10s', ltMs: null },
];

export interface OpsSummary {
  total: number;
  byKind: Record<string, number>;
  byAge: Array<{ label: string; ltMs: number | null; count: number }>;
  olderThan?: { ms: number; byKind: Record<string, number> };
  oldest: OpSnapshot[];
}

/**
 * Keeps `arr` the `n` best items seen so far, best first (`better(a, b)`: a ranks before b);
 * ties keep the earlier one. n is small (≤ 20), so insertion is cheap and allocates nothing
 * once full.
 */
function keepTop<T>(arr: T[], item: T, n: number, better: (a: T, b: T) => boolean): void {
  if (arr.length === n && !better(item, arr[n - 1] as T)) return;
  let i = arr.length < n ? arr.length : n - 1;
  while (i > 0 && better(item, arr[i - 1] as T)) {
    arr[i] = arr[i - 1] as T;
    i--;
  }
  arr[i] = item;
}

function connBytes(c: Connection): number {
  const up = c.upstream;
  return c.client.bytesIn + c.client.bytesOut + (up ? up.bytesIn + up.bytesOut : 0);
}

export interface OpFilter {
  kind?: string;
  minAgeMs?: number;
  connection?: string;
}

export interface Readiness {
  ready: boolean;
  backend: string;
  listeners: number;
  loopTurning: boolean;
  lastHeartbeatAgeMs: number | null;
  degradedListeners: string[];
  anomalies: { stray: number; keyMismatch: number; duplicate: number; quarantinedRecords: number };
  reasons: string[];
}

/**
 * Wall-clock ms as ISO 8601. Views format thousands of times per page, mostly within the same
 * few seconds, and Date#toISOString was their heaviest cost: the second's prefix is cached.
 */
const isoPrefixes = new Map<number, string>();
function iso(ms: number): string {
  const whole = Math.floor(ms);
  const sec = Math.floor(whole / 1000);
  let prefix = isoPrefixes.get(sec);
  if (prefix === undefined) {
    if (isoPrefixes.size >= 1024) isoPrefixes.clear();
    prefix = new Date(sec * 1000).toISOString().slice(0, 20); // "YYYY-MM-DDTHH:MM:SS."
    isoPrefixes.set(sec, prefix);
  }
  const milli = whole - sec * 1000;
  return `${prefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** A connection's fields that change only with its state or upstream. */
function connectionFixed(c: Connection) {
  const up = c.upstream;
  return {
    id: c.id,
    listener: c.listener.id,
    mode: c.listener.mode,
    key: c.client.keyEntry.keyHex,
    upstreamKey: up ? up.keyEntry.keyHex : null,
    local: formatSocketAddress(c.client.local),
    remote: formatSocketAddress(c.client.remote),
    upstream: up ? formatSocketAddress(up.remote) : null,
    createdAt: iso(c.createdAt),
  };
}

/** A connection's fields that move with its traffic and the clock. */
function connectionMoving(c: Connection, now: number) {
  const up = c.upstream;
  return {
    state: c.state,
    bytesIn: c.client.bytesIn,
    bytesOut: c.client.bytesOut,
    upstreamBytesIn: up ? up.bytesIn : null,
    upstreamBytesOut: up ? up.bytesOut : null,
    opsInFlight: c.opsInFlight,
    ageMs: Date.now() - c.createdAt,
    idleMs: Math.round(now - c.lastActivity),
  };
}

export class EngineControl {
  // Pages' items are served from these (view-fragments.ts): keyed by the table entry itself.
  private readonly keyTexts = new FragmentCache<KeyEntry>();
  private readonly opTexts = new FragmentCache<OpRecord>();
  private readonly connectionTexts = new FragmentCache<Connection>();

  constructor(private readonly engine: Engine) {}

  get startedAt(): number {
    return this.engine.startedAt;
  }

  /** Completions of the data plane so far (the heartbeat's are not counted): grows with traffic. */
  get dataPlaneCompletions(): number {
    return this.engine.stats.completions;
  }

  get backendName(): string {
    return this.engine.backend.name;
  }

  listeners(): ListenerSnapshot[] {
    return [...this.engine.listeners.values()].map((l) => this.listenerSnapshot(l));
  }

  listener(id: string): ListenerSnapshot | null {
    const l = this.engine.listeners.get(id);
    return l ? this.listenerSnapshot(l) : null;
  }

  private listenerSnapshot(l: Listener): ListenerSnapshot {
    const cfg = this.engine.listenerConfig(l);
    const now = performance.now();
    return {
      id: l.id,
      mode: l.mode,
      address: formatSocketAddress(l.bound) ?? '',
      target: l.target ? formatTarget(l.target) : null,
      balance: l.upstreams?.policy ?? null,
      upstreams: l.upstreams ? l.upstreams.list.map((u) => upstreamSnapshot(u, now)) : [],
      state: l.degraded ? 'degraded' : l.state,
      key: l.keyEntry?.keyHex ?? null,
      acceptDepth: cfg.acceptDepth,
      acceptsPending: l.acceptsInFlight,
      connections: l.connections.size,
      maxConnections: cfg.maxConnections,
      onLimit: cfg.onLimit,
      rejectedTotal: l.rejectedTotal,
      rejected: { ...l.rejected },
      maxConnectionsPerSource: cfg.maxConnectionsPerSource > 0 ? cfg.maxConnectionsPerSource : null,
      allow: [...cfg.allow],
      deny: [...cfg.deny],
      proxyProtocol: {
        send: cfg.proxyProtocol.send ?? null,
        accept: cfg.proxyProtocol.accept ?? false,
        timeoutMs: cfg.proxyProtocol.timeoutMs ?? 5000,
      },
      idleTimeoutMs: cfg.idleTimeoutMs,
      idleMinBytes: cfg.idleMinBytes,
      closeTimeoutMs: cfg.closeTimeoutMs,
      acceptPostsTotal: l.acceptPostsTotal,
      acceptError: l.acceptError?.error ?? null,
      acceptErrorAt: l.acceptError ? iso(l.acceptError.at) : null,
      connectTimeoutMs: cfg.connectTimeoutMs,
      acceptedTotal: l.acceptedTotal,
      createdAt: iso(l.createdAt),
    };
  }

  /**
   * A page of connections in the order they opened (the engine's Map and each listener's Set
   * keep insertion order, so a page boundary never moves while the set does not change).
   * Without a state filter the total is a size and the walk ends with the page.
   */
  connections(filter: ConnectionFilter): PageWalk {
    const now = performance.now();
    let source: Iterable<Connection> = this.engine.connections.values();
    let size = this.engine.connections.size;
    if (filter.listener) {
      const l = this.engine.listeners.get(filter.listener);
      source = l ? l.connections : [];
      size = l ? l.connections.size : 0;
    }
    return pageWalk(source[Symbol.iterator](), {
      ...filter,
      knownTotal: filter.state ? null : size,
      matches: (c) => !filter.state || c.state === filter.state,
      render: (c) => this.connectionJson(c, now),
    });
  }

  /**
   * Connection counts by listener and by state, and the `top` oldest and busiest (bytes in +
   * out on both sides) connections. One pass; only the `top` kept are materialised.
   */
  connectionsSummary(top: number): ConnectionsSummary {
    const now = performance.now();
    const byListener: Record<string, number> = {};
    const byState: Record<string, number> = {};
    const oldest: Connection[] = [];
    const busiest: Connection[] = [];
    let total = 0;
    for (const c of this.engine.connections.values()) {
      total++;
      byListener[c.listener.id] = (byListener[c.listener.id] ?? 0) + 1;
      byState[c.state] = (byState[c.state] ?? 0) + 1;
      if (top > 0) keepTop(oldest, c, top, (a, b) => a.createdAt < b.createdAt);
      if (top > 0) keepTop(busiest, c, top, (a, b) => connBytes(a) > connBytes(b));
    }
    return {
      total,
      byListener,
      byState,
      oldest: oldest.map((c) => this.connectionSnapshot(c, now)),
      busiest: busiest.map((c) => this.connectionSnapshot(c, now)),
    };
  }

  connection(id: string): (ConnectionSnapshot & { trace: TraceEntry[] }) | null {
    const c = this.engine.connections.get(id);
    if (!c) return null;
    return { ...this.connectionSnapshot(c, performance.now()), trace: c.trace.entries() };
  }

  /** Stamped with the upstream and the state: the upstream's key and address come later. */
  private connectionJson(c: Connection, now: number): string {
    const stamp = c.upstream ? `${c.state}:${c.upstream.keyEntry.keyHex}` : c.state;
    return this.connectionTexts.json(c, stamp, () => connectionFixed(c), connectionMoving(c, now));
  }

  private connectionSnapshot(c: Connection, now: number): ConnectionSnapshot {
    return { ...connectionFixed(c), ...connectionMoving(c, now) };
  }

  /** A page of the completion-key table in slot order (index ascending). */
  keys(page: Page): PageWalk {
    return pageWalk(this.engine.keys.live(), {
      ...page,
      knownTotal: this.engine.keys.size,
      matches: () => true,
      render: (k) =>
        this.keyTexts.json(
          k,
          k.generation,
          () => ({
            key: k.keyHex,
            index: k.index,
            generation: k.generation,
            owner: { ...(k.owner as KeyOwner) },
            socket: k.sock,
            associatedAt: iso(k.associatedAt),
          }),
          { completions: k.completions, opsInFlight: k.inFlight },
        ),
    });
  }

  /**
   * A page of the in-flight ops matching the filter, in record-pool slot order (stable while
   * the set of ops does not change; not by age: the oldest are in opsSummary). A connection
   * filter walks only that connection's sockets; without an age filter the total comes from
   * the pool's counts and the walk ends with the page.
   */
  ops(filter: OpFilter & Page): PageWalk {
    const now = Date.now();
    const matches = (rec: OpRecord) =>
      (!filter.kind || rec.kind === filter.kind) &&
      (filter.minAgeMs === undefined || now - rec.issuedAtWall >= filter.minAgeMs);
    const render = (rec: OpRecord) => this.opJson(rec, now);
    if (filter.connection) {
      const c = this.engine.connections.get(filter.connection);
      const mine: OpRecord[] = [];
      for (const side of c ? [c.client, c.upstream] : [])
        for (const rec of side?.keyEntry.ops ?? []) mine.push(rec as OpRecord);
      mine.sort((a, b) => a.slot - b.slot);
      return pageWalk(mine.values(), { ...filter, knownTotal: null, matches, render });
    }
    const pool = this.engine.ops;
    const knownTotal =
      filter.minAgeMs !== undefined
        ? null
        : filter.kind
          ? pool.inFlightOfKind(filter.kind as OpKind)
          : pool.inFlightTotal;
    return pageWalk(pool.inFlight(), { ...filter, knownTotal, matches, render });
  }

  /**
   * Ops in flight by kind and by age bucket, how many are older than `olderThanMs` by kind,
   * and the `oldest` oldest ops (oldest first). One pass; only those kept are materialised.
   */
  opsSummary(oldest: number, olderThanMs?: number): OpsSummary {
    const now = Date.now();
    const byKind: Record<string, number> = {};
    const byAge = AGE_BUCKETS.map((b) => ({ ...b, count: 0 }));
    const olderByKind: Record<string, number> = {};
    const kept: OpRecord[] = [];
    let total = 0;
    const records = this.engine.ops.records;
    for (let r = 0; r < records.length; r++) {
      const rec = records[r] as OpRecord;
      if (!rec.inFlight) continue;
      total++;
      const age = now - rec.issuedAtWall;
      byKind[rec.kind] = (byKind[rec.kind] ?? 0) + 1;
      let i = 0;
      while (i < byAge.length - 1 && age >= (byAge[i]?.ltMs as number)) i++;
      (byAge[i] as { count: number }).count++;
      if (olderThanMs !== undefined && age >= olderThanMs)
        olderByKind[rec.kind] = (olderByKind[rec.kind] ?? 0) + 1;
      if (oldest > 0) keepTop(kept, rec, oldest, (a, b) => a.issuedAtWall < b.issuedAtWall);
    }
    return {
      total,
      byKind,
      byAge,
      ...(olderThanMs !== undefined ? { olderThan: { ms: olderThanMs, byKind: olderByKind } } : {}),
      oldest: kept.map((r) => this.opSnapshot(r, now)),
    };
  }

  private opJson(rec: OpRecord, now: number): string {
    return this.opTexts.json(rec, rec.generation, () => this.opFixed(rec), {
      ageMs: Math.round(now - rec.issuedAtWall),
    });
  }

  private opSnapshot(rec: OpRecord, now: number): OpSnapshot {
    return { ...this.opFixed(rec), ageMs: Math.round(now - rec.issuedAtWall) };
  }

  /** An op's fields that do not change while it is in flight. */
  private opFixed(rec: OpRecord): Omit<OpSnapshot, 'ageMs'> {
    const owner = rec.keyEntry?.owner ?? null;
    const { connection, listener } = this.engine.ownerIds(rec.keyEntry);
    return {
      record: rec.addressHex,
      op: rec.kind,
      key: rec.keyEntry?.keyHex ?? hex64(rec.key),
      owner: owner ? { ...owner } : null,
      connection,
      listener,
      issuedAt: iso(rec.issuedAtWall),
      bufferSize: rec.buffer ? rec.buffer.bytes.byteLength : null,
      bufferSelect: rec.selectBuffer,
      splice: rec.splice >= 0,
    };
  }

  readiness(): Readiness {
    const seen = this.engine.heartbeat.lastSeenAt;
    const hbAge = seen ? Date.now() - seen : null;
    const loopTurning = hbAge !== null && hbAge < 10_000;
    const listening = [...this.engine.listeners.values()].filter(
      (l) => l.state === 'listening',
    ).length;
    const reasons: string[] = [];
    if (!loopTurning)
      reasons.push('the completion loop has not dequeued a heartbeat in the last 10 s');
    if (listening === 0) reasons.push('no listener is bound');
    const degraded = [...this.engine.listeners.values()].filter((l) => l.degraded);
    for (const l of degraded) {
      reasons.push(`listener ${l.id} has no accept posted (${l.acceptError?.error ?? 'failing'})`);
    }
    const a = this.engine.anomalies.counts;
    return {
      ready: reasons.length === 0,
      backend: this.engine.backend.name,
      listeners: listening,
      loopTurning,
      lastHeartbeatAgeMs: hbAge,
      degradedListeners: degraded.map((l) => l.id),
      anomalies: {
        stray: a.stray,
        keyMismatch: a['key-mismatch'],
        duplicate: a.duplicate,
        quarantinedRecords: this.engine.ops.quarantined,
      },
      reasons,
    };
  }

  // ---- commands ----

  /** Starts a listener; throws ListenError (inUse = the port is taken) when it cannot bind. */
  async createListener(config: ListenerConfig): Promise<ListenerSnapshot> {
    return this.listenerSnapshot(await this.engine.addListener(config));
  }

  closeListener(
    id: string,
    mode: 'drain' | 'abort',
    deadlineMs: number | null,
  ): ListenerSnapshot | null {
    const l = this.engine.closeListener(id, mode, deadlineMs);
    return l ? this.listenerSnapshot(l) : null;
  }

  /** Whether listener `id` exists and still accepts (not closing, draining or closed). */
  isListening(id: string): boolean {
    return this.engine.listeners.get(id)?.state === 'listening';
  }

  /**
   * Drain-and-replace (a config reload changed a listener's options): the old listener stops
   * accepting and closes its listening socket (its accepts cancelled and completed first), then
   * the new one binds the same address. The old connections run on under the old options until
   * they end by themselves: no deadline, nothing is cut. Where the system refuses the address
   * while the old listener's connections live (Windows: SO_EXCLUSIVEADDRUSE), the bind is retried
   * for up to `retryMs`; if it still fails, ListenError (the address is then unserved).
   */
  async replaceListener(
    id: string,
    config: ListenerConfig,
    retryMs: number,
  ): Promise<ListenerSnapshot> {
    const old = this.engine.listeners.get(id);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    if (old) {
      this.engine.closeListener(id, 'drain', null);
      const end = Date.now() + 10_000;
      while (old.state === 'closing' && Date.now() < end) await sleep(5);
    }
    const until = Date.now() + retryMs;
    for (;;) {
      try {
        return await this.createListener(config);
      } catch (err) {
        if (!(err instanceof ListenError) || !err.inUse || Date.now() >= until) throw err;
        await sleep(50);
      }
    }
  }

  closeConnection(id: string, mode: 'graceful' | 'abort'): ConnectionSnapshot | null {
    const c = this.engine.closeConnection(id, mode);
    return c ? this.connectionSnapshot(c, performance.now()) : null;
  }

  /** `record` is the hex address shown by GET /ops. */
  cancelOp(record: string): Promise<CancelOutcome | 'not-found' | 'not-cancellable'> {
    return this.engine.cancelOp(Number.parseInt(record, 16));
  }

  /** Live engine events (GET /events); returns the unsubscribe function. */
  subscribe(fn: EventListener): () => void {
    return this.engine.events.subscribe(fn);
  }
}

function upstreamSnapshot(u: Upstream, now: number): UpstreamSnapshot {
  const c = u.check;
  const state = u.state(now);
  return {
    target: u.label,
    weight: u.weight,
    state,
    connections: u.connections,
    connectionsTotal: u.connectionsTotal,
    connectFailuresTotal: u.connectFailuresTotal,
    consecutiveFailures: u.consecutiveFailures,
    ejectedUntil: state === 'ejected' ? iso(u.ejectedUntilWall) : null,
    ejectionsTotal: u.ejectionsTotal,
    lastError: u.lastError,
    lastErrorAt: u.lastErrorAt === null ? null : iso(u.lastErrorAt),
    check: c
      ? {
          state: c.up === null ? 'unknown' : c.up ? 'up' : 'down',
          checksTotal: c.checksTotal,
          failuresTotal: c.failuresTotal,
          lastError: c.lastError,
          lastCheckAt: c.lastCheckAt === null ? null : iso(c.lastCheckAt),
        }
      : null,
  };
}
