// Snapshots: a listener (with its upstreams), a connection, a key and an op read into plain
// objects of the view schemas' types (schemas.ts), so nothing live leaks out. A connection's,
// a key's and an op's fields come in two parts, the part that cannot change while the table
// slot keeps its occupant and the part that moves: pages.ts serialises the first once per
// occupant and keeps it (fragments.ts).
import type { ResolvedListenerConfig } from '../core.js';
import { formatTarget } from '../relay/connect-failures.js';
import type { Connection } from '../relay/connection.js';
import { formatSocketAddress } from '../relay/endpoint.js';
import type { Listener } from '../relay/listener.js';
import type { Upstream } from '../relay/upstreams.js';
import { hex64, type KeyEntry } from '../tables/keys.js';
import type { OpRecord } from '../tables/ops.js';
import type {
  ConnectionSnapshot,
  KeyOwnerSnapshot,
  KeySnapshot,
  ListenerSnapshot,
  OpSnapshot,
  UpstreamSnapshot,
} from './schemas.js';

/** The connection and the listener a key belongs to (Engine#ownerIds). */
export type OwnerIds = (key: KeyEntry | null) => {
  connection: string | null;
  listener: string | null;
};

/**
 * Wall-clock ms as ISO 8601. Views format thousands of times per page, mostly within the same
 * few seconds, and Date#toISOString was their heaviest cost: the second's prefix is cached.
 */
const isoPrefixes = new Map<number, string>();
export function iso(ms: number): string {
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

export function listenerSnapshot(l: Listener, cfg: ResolvedListenerConfig): ListenerSnapshot {
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

type ConnectionMoving =
  | 'state'
  | 'bytesIn'
  | 'bytesOut'
  | 'upstreamBytesIn'
  | 'upstreamBytesOut'
  | 'opsInFlight'
  | 'ageMs'
  | 'idleMs';

/** A connection's fields that change only with its state or upstream. */
export function connectionFixed(c: Connection): Omit<ConnectionSnapshot, ConnectionMoving> {
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

/** A connection's fields that move with its traffic and the clock (`now`: performance.now()). */
export function connectionMoving(
  c: Connection,
  now: number,
): Pick<ConnectionSnapshot, ConnectionMoving> {
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

export function connectionSnapshot(c: Connection, now: number): ConnectionSnapshot {
  return { ...connectionFixed(c), ...connectionMoving(c, now) };
}

type KeyMoving = 'completions' | 'opsInFlight';

/** A key's fields that do not change while its slot keeps one generation. */
export function keyFixed(k: KeyEntry): Omit<KeySnapshot, KeyMoving> {
  return {
    key: k.keyHex,
    index: k.index,
    generation: k.generation,
    owner: { ...(k.owner as KeyOwnerSnapshot) },
    socket: k.sock,
    associatedAt: iso(k.associatedAt),
  };
}

export function keyMoving(k: KeyEntry): Pick<KeySnapshot, KeyMoving> {
  return { completions: k.completions, opsInFlight: k.inFlight };
}

/** An op's fields that do not change while it is in flight. */
export function opFixed(rec: OpRecord, ownerIds: OwnerIds): Omit<OpSnapshot, 'ageMs'> {
  const owner = rec.keyEntry?.owner ?? null;
  const { connection, listener } = ownerIds(rec.keyEntry);
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

/** `now`: Date.now() (an op's issue time is wall-clock). */
export function opMoving(rec: OpRecord, now: number): Pick<OpSnapshot, 'ageMs'> {
  return { ageMs: Math.round(now - rec.issuedAtWall) };
}

export function opSnapshot(rec: OpRecord, ownerIds: OwnerIds, now: number): OpSnapshot {
  return { ...opFixed(rec, ownerIds), ...opMoving(rec, now) };
}
