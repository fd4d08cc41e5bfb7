// EngineControl: the only door from the API into the engine. It reads the engine into plain
// snapshot objects (no live references leak out) and will carry commands; an engine in a worker
// thread could later sit behind the same interface.
import { type Connection, formatSocketAddress } from './connection.js';
import type { CancelOutcome, Engine } from './engine.js';
import type { EventListener } from './events.js';
import { hex64, type KeyOwner } from './keys.js';
import type { Listener } from './listener.js';
import type { ListenerConfig } from './options.js';
import type { TraceEntry } from './trace.js';

export interface ListenerSnapshot {
  id: string;
  mode: 'echo' | 'forward';
  address: string;
  target: string | null;
  state: string;
  key: string | null;
  acceptDepth: number;
  acceptsPending: number;
  connections: number;
  maxConnections: number;
  onLimit: 'wait' | 'reset';
  rejectedTotal: number;
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

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class EngineControl {
  constructor(private readonly engine: Engine) {}

  get startedAt(): number {
    return this.engine.startedAt;
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
    return {
      id: l.id,
      mode: l.mode,
      address: formatSocketAddress(l.bound) ?? '',
      target: l.target
        ? `${l.target.host.includes(':') ? `[${l.target.host}]` : l.target.host}:${l.target.port}`
        : null,
      state: l.degraded ? 'degraded' : l.state,
      key: l.key?.keyHex ?? null,
      acceptDepth: cfg.acceptDepth,
      acceptsPending: l.pendingAccepts,
      connections: l.connections.size,
      maxConnections: cfg.maxConnections,
      onLimit: cfg.onLimit,
      rejectedTotal: l.rejectedTotal,
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

  connections(filter: ConnectionFilter): { total: number; items: ConnectionSnapshot[] } {
    const now = performance.now();
    const all = [...this.engine.connections.values()].filter(
      (c) =>
        (!filter.listener || c.listener.id === filter.listener) &&
        (!filter.state || c.state === filter.state),
    );
    return {
      total: all.length,
      items: all
        .slice(filter.offset, filter.offset + filter.limit)
        .map((c) => this.connectionSnapshot(c, now)),
    };
  }

  connection(id: string): (ConnectionSnapshot & { trace: TraceEntry[] }) | null {
    const c = this.engine.connections.get(id);
    if (!c) return null;
    return { ...this.connectionSnapshot(c, performance.now()), trace: c.trace.entries() };
  }

  private connectionSnapshot(c: Connection, now: number): ConnectionSnapshot {
    const up = c.upstream;
    return {
      id: c.id,
      listener: c.listener.id,
      mode: c.listener.mode,
      state: c.state,
      key: c.client.key.keyHex,
      upstreamKey: up ? up.key.keyHex : null,
      local: formatSocketAddress(c.client.local),
      remote: formatSocketAddress(c.client.remote),
      upstream: up ? formatSocketAddress(up.remote) : null,
      bytesIn: c.client.bytesIn,
      bytesOut: c.client.bytesOut,
      upstreamBytesIn: up ? up.bytesIn : null,
      upstreamBytesOut: up ? up.bytesOut : null,
      opsInFlight: c.opsInFlight,
      ageMs: Date.now() - c.createdAt,
      idleMs: Math.round(now - c.lastActivity),
      createdAt: iso(c.createdAt),
    };
  }

  keys(): KeySnapshot[] {
    return [...this.engine.keys.live()].map((k) => ({
      key: k.keyHex,
      index: k.index,
      generation: k.generation,
      owner: { ...(k.owner as KeyOwner) },
      socket: k.sock,
      associatedAt: iso(k.associatedAt),
      completions: k.completions,
      opsInFlight: k.inFlight,
    }));
  }

  ops(filter: OpFilter): OpSnapshot[] {
    const now = Date.now();
    const out: OpSnapshot[] = [];
    for (const rec of this.engine.ops.inFlight()) {
      const age = now - rec.issuedAtWall;
      if (filter.kind && rec.kind !== filter.kind) continue;
      if (filter.minAgeMs !== undefined && age < filter.minAgeMs) continue;
      const owner = rec.keyEntry?.owner ?? null;
      const { connection, listener } = this.engine.ownerIds(rec.keyEntry);
      if (filter.connection && connection !== filter.connection) continue;
      out.push({
        record: rec.addressHex,
        op: rec.kind,
        key: rec.keyEntry?.keyHex ?? hex64(rec.key),
        owner: owner ? { ...owner } : null,
        connection,
        listener,
        issuedAt: iso(rec.issuedAtWall),
        ageMs: age,
        bufferSize: rec.buffer ? rec.buffer.bytes.byteLength : null,
        bufferSelect: rec.selectBuffer,
        splice: rec.splice >= 0,
      });
    }
    return out;
  }

  readiness(): Readiness {
    const s = this.engine.stats;
    const hbAge = s.lastHeartbeatSeenAt ? Date.now() - s.lastHeartbeatSeenAt : null;
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

  closeListener(id: string, mode: 'drain' | 'abort', deadlineMs: number): ListenerSnapshot | null {
    const l = this.engine.closeListener(id, mode, deadlineMs);
    return l ? this.listenerSnapshot(l) : null;
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
