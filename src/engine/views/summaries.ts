// Summaries that count without listing: connections by listener and state with the oldest and
// the busiest, ops in flight by kind and age with the oldest (each one pass that keeps only the
// counts and the short lists), and readiness.
import type { Engine } from '../engine.js';
import type { Connection } from '../relay/connection.js';
import type { OpRecord } from '../tables/ops.js';
import type { ConnectionsSummary, OpsSummary, Readiness } from './schemas.js';
import { connectionSnapshot, type OwnerIds, opSnapshot } from './snapshots.js';

/** Age buckets of GET /ops/summary: each counts ops younger than ltMs (the last: the rest). */
export const AGE_BUCKETS: ReadonlyArray<{ label: string; ltMs: number | null }> = [
  { label: '<10ms', ltMs: 10 },
  { label: '<100ms', ltMs: 100 },
  { label: '<1s', ltMs: 1_000 },
  { label: '<10s', ltMs: 10_000 },
  { label: '>=10s', ltMs: null },
];

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

/**
 * Connection counts by listener and by state, and the `top` oldest and busiest (bytes in +
 * out on both sides) connections. One pass; only the `top` kept are materialised.
 */
export function connectionsSummary(
  connections: Iterable<Connection>,
  top: number,
): ConnectionsSummary {
  const now = performance.now();
  const byListener: Record<string, number> = {};
  const byState: Record<string, number> = {};
  const oldest: Connection[] = [];
  const busiest: Connection[] = [];
  let total = 0;
  for (const c of connections) {
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
    oldest: oldest.map((c) => connectionSnapshot(c, now)),
    busiest: busiest.map((c) => connectionSnapshot(c, now)),
  };
}

/**
 * Ops in flight by kind and by age bucket, how many are older than `olderThanMs` by kind,
 * and the `oldest` oldest ops (oldest first). One pass over the record pool; only those kept
 * are materialised.
 */
export function opsSummary(
  records: readonly OpRecord[],
  ownerIds: OwnerIds,
  oldest: number,
  olderThanMs?: number,
): OpsSummary {
  const now = Date.now();
  const byKind: Record<string, number> = {};
  const byAge = AGE_BUCKETS.map((b) => ({ ...b, count: 0 }));
  const olderByKind: Record<string, number> = {};
  const kept: OpRecord[] = [];
  let total = 0;
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
    oldest: kept.map((r) => opSnapshot(r, ownerIds, now)),
  };
}

/** Ready: the completion loop turns, a listener is bound and none is degraded. */
export function readiness(
  engine: Pick<Engine, 'heartbeat' | 'listeners' | 'anomalies' | 'backend' | 'ops'>,
): Readiness {
  const seen = engine.heartbeat.lastSeenAt;
  const hbAge = seen ? Date.now() - seen : null;
  const loopTurning = hbAge !== null && hbAge < 10_000;
  const listening = [...engine.listeners.values()].filter((l) => l.state === 'listening').length;
  const reasons: string[] = [];
  if (!loopTurning)
    reasons.push('the completion loop has not dequeued a heartbeat in the last 10 s');
  if (listening === 0) reasons.push('no listener is bound');
  const degraded = [...engine.listeners.values()].filter((l) => l.degraded);
  for (const l of degraded) {
    reasons.push(`listener ${l.id} has no accept posted (${l.acceptError?.error ?? 'failing'})`);
  }
  const a = engine.anomalies.counts;
  return {
    ready: reasons.length === 0,
    backend: engine.backend.name,
    listeners: listening,
    loopTurning,
    lastHeartbeatAgeMs: hbAge,
    degradedListeners: degraded.map((l) => l.id),
    anomalies: {
      stray: a.stray,
      keyMismatch: a['key-mismatch'],
      duplicate: a.duplicate,
      quarantinedRecords: engine.ops.quarantined,
    },
    reasons,
  };
}
