// A listening socket with AcceptEx operations kept posted (DESIGN §1.3). Every accept completes
// with the listener's key; the accepted socket then gets a key of its own. The accept chain
// heals itself (DESIGN §1.9): an accept that fails, or cannot be posted (no handles, EMFILE), is
// re-posted after a backoff (10 ms doubling to 1 s) instead of at once, so it neither dies nor
// spins; while no accept is posted the listener is `degraded` and /readyz says so.

import { BackendError, type SocketAddress } from '../backend.js';
import type { EngineCore, OpOwner } from '../core.js';
import { plainIp, type RejectReason, SourceRules } from '../net/sources.js';
import type { ListenerConfig, TargetAddress } from '../options.js';
import type { KeyEntry } from '../tables/keys.js';
import type { OpRecord } from '../tables/ops.js';
import { Connection } from './connection.js';
import { Endpoint } from './endpoint.js';
import { HealthChecks } from './health-check.js';
import { keyAsDequeued } from './trace.js';
import { Upstreams } from './upstreams.js';

const ACCEPT_RETRY_MIN_MS = 10;
const ACCEPT_RETRY_MAX_MS = 1000;

/**
 * listening → closing (accepts being cancelled) → draining (socket closed, so new clients are
 * refused; existing connections finish) → closed.
 */
export type ListenerState = 'listening' | 'closing' | 'draining' | 'closed';

export class Listener implements OpOwner {
  state: ListenerState = 'listening';
  readonly createdAt = Date.now();
  acceptsInFlight = 0;
  acceptedTotal = 0;
  /**
   * Clients reset right after accept, before any read, by reason: this listener's limit
   * (onLimit: 'reset'), the engine-wide limit, the per-source limit, allow/deny rules.
   */
  readonly rejected: Record<RejectReason, number> = {
    'max-connections': 0,
    'engine-max-connections': 0,
    'per-source': 0,
    denied: 0,
  };
  /** Open connections per source IP (kept only when maxConnectionsPerSource is set). */
  readonly perSource = new Map<string, number>();
  /** The allow/deny rules, compiled. */
  readonly sources: SourceRules;
  /** Accept ops handed to the kernel, ever (a spinning chain shows here). */
  acceptPostsTotal = 0;
  /** The last accept failure, while the chain is backing off; null once an accept succeeds. */
  acceptError: { error: string; at: number } | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs = 0;
  readonly connections = new Set<Connection>();
  sock = -1;
  keyEntry: KeyEntry | null = null;
  bound: SocketAddress;
  /** Forward mode: the targets, their balance and health (null in echo mode). */
  readonly upstreams: Upstreams | null;
  private readonly checks: HealthChecks | null;

  constructor(
    private readonly core: EngineCore,
    readonly id: string,
    readonly config: ListenerConfig,
    private readonly address: SocketAddress,
  ) {
    this.bound = address;
    this.sources = new SourceRules(config.allow ?? [], config.deny ?? []);
    const targets = config.targets ?? (config.target ? [config.target] : []);
    this.upstreams =
      config.mode === 'forward'
        ? new Upstreams(targets, config.balance ?? 'round-robin', config.health, {
            ejected: (u, error, forMs) => {
              core.log(
                'warn',
                { listener: id, target: u.label, error, forMs, failures: u.consecutiveFailures },
                'upstream ejected',
              );
              core.announce.upstreamChanged(this, u.label, 'ejected', error, forMs);
            },
            back: (u) => {
              core.log('info', { listener: id, target: u.label }, 'upstream back');
              core.announce.upstreamChanged(this, u.label, 'up', null, null);
            },
          })
        : null;
    this.checks =
      this.upstreams?.checks != null
        ? new HealthChecks(core, id, this.upstreams, {
            changed: (u, up, error) => {
              core.log(
                up ? 'info' : 'warn',
                { listener: id, target: u.label, error },
                up ? 'upstream check up' : 'upstream check down',
              );
              core.announce.upstreamChanged(this, u.label, up ? 'up' : 'down', error, null);
            },
          })
        : null;
  }

  get rejectedTotal(): number {
    let n = 0;
    for (const v of Object.values(this.rejected)) n += v;
    return n;
  }

  get mode(): 'echo' | 'forward' {
    return this.config.mode;
  }

  /** The one target, or the first of several. */
  get target(): TargetAddress | undefined {
    return this.config.target ?? this.config.targets?.[0];
  }

  /** Listening, but no accept is posted: the chain is waiting to retry after failures. */
  get degraded(): boolean {
    return this.state === 'listening' && this.acceptsInFlight === 0 && this.retryTimer !== null;
  }

  /** Binds, listens and posts the accepts; throws (BackendError) when the address is taken. */
  open(): void {
    const backend = this.core.backend;
    this.sock = backend.createSocket(this.address.family);
    try {
      this.bound = backend.listen(this.sock, this.address, this.core.listenerConfig(this).backlog);
      this.keyEntry = this.core.assignKey(this.sock, { kind: 'listener', id: this.id });
      backend.associate(this.sock, this.keyEntry.key);
    } catch (err) {
      if (this.keyEntry) this.core.releaseKey(this.keyEntry);
      backend.closeSocket(this.sock, true);
      this.state = 'closed';
      throw err;
    }
    this.postAccepts();
    this.checks?.start();
  }

  /** Keeps `acceptDepth` accepts posted, but never more than the connection limit leaves room for. */
  postAccepts(): void {
    const cfg = this.core.listenerConfig(this);
    while (
      this.state === 'listening' &&
      this.retryTimer === null &&
      this.acceptsInFlight < cfg.acceptDepth &&
      (cfg.onLimit === 'reset' || this.connections.size + this.acceptsInFlight < cfg.maxConnections)
    ) {
      if (!this.postAccept()) break;
    }
  }

  private postAccept(): boolean {
    const backend = this.core.backend;
    let s = -1;
    try {
      if (backend.preCreatesAcceptSocket) s = backend.createSocket(this.address.family);
    } catch (err) {
      this.acceptFailed(err instanceof BackendError ? err.errorName : (err as Error).message);
      return false;
    }
    this.acceptsInFlight++;
    this.acceptPostsTotal++;
    const rec = this.core.newOp('accept', this.keyEntry as KeyEntry, this);
    rec.acceptSock = s;
    this.core.submit(rec);
    return true;
  }

  /** The chain could not go on: retry after a backoff that doubles while failures continue. */
  private acceptFailed(error: string): void {
    this.acceptError = { error, at: Date.now() };
    if (this.retryTimer !== null || this.state !== 'listening') return;
    this.retryMs = Math.min(
      ACCEPT_RETRY_MAX_MS,
      this.retryMs ? this.retryMs * 2 : ACCEPT_RETRY_MIN_MS,
    );
    if (this.retryMs === ACCEPT_RETRY_MIN_MS || this.acceptsInFlight === 0) {
      this.core.log(
        'warn',
        { listener: this.id, error, retryInMs: this.retryMs, acceptsPending: this.acceptsInFlight },
        'accept failed; retrying after a backoff',
      );
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.postAccepts();
    }, this.retryMs);
    this.retryTimer.unref();
  }

  complete(rec: OpRecord, code: number): void {
    this.acceptsInFlight--;
    const backend = this.core.backend;
    if (code !== 0 || this.state !== 'listening') {
      if (rec.acceptSock >= 0) backend.closeSocket(rec.acceptSock, true);
      const accepted = code === 0 ? backend.acceptedSocket(rec, rec.acceptSock) : -1;
      if (accepted >= 0 && accepted !== rec.acceptSock) backend.closeSocket(accepted, true);
      if (this.state === 'closing') this.tryFinishClose();
      else if (code !== 0) this.acceptFailed(this.core.errorName(code));
      else this.postAccepts();
      return;
    }
    if (this.retryTimer === null) {
      // Healthy again (an accept posted before the failures may still succeed meanwhile).
      this.retryMs = 0;
      this.acceptError = null;
    }
    const s = backend.acceptedSocket(rec, rec.acceptSock);
    const cfg = this.core.listenerConfig(this);
    // Refusals happen here, before any read is posted or any upstream connect is made: the
    // client is reset (linger 0) and counted by reason.
    let reason: RejectReason | null = null;
    let source: string | null = null;
    let peer: SocketAddress | null = null;
    let contextDone = false;
    let uc = 0;
    if (this.connections.size >= cfg.maxConnections) {
      // onLimit 'reset' (with 'wait' no accept is posted at the limit): refuse the surplus now.
      reason = 'max-connections';
    } else if (this.core.connectionCount() >= this.core.maxConnections) {
      reason = 'engine-max-connections';
    } else if (this.sources.active || cfg.maxConnectionsPerSource > 0) {
      // The peer's address: on IOCP getpeername works only after SO_UPDATE_ACCEPT_CONTEXT.
      uc = backend.finishAccept(this.sock, s);
      contextDone = true;
      try {
        peer = backend.peerAddress(s);
      } catch {
        peer = null; // never a failure of the accept chain (a throw here would be fatal)
      }
      // A client whose address cannot be read (it already left) cannot be shown to be allowed.
      source = peer ? plainIp(peer.host) : null;
      if (source === null || !this.sources.permits(source)) reason = 'denied';
      else if (
        cfg.maxConnectionsPerSource > 0 &&
        (this.perSource.get(source) ?? 0) >= cfg.maxConnectionsPerSource
      )
        reason = 'per-source';
    }
    if (reason !== null) {
      this.rejected[reason]++;
      backend.closeSocket(s, true);
      this.core.announce.connectionRejected(this, reason);
      this.postAccepts();
      return;
    }
    this.acceptedTotal++;
    // Inherit the listener's properties; a client that already left makes this fail, which
    // must not break the accept chain: the connection's first recv then fails and cleans up.
    if (!contextDone) uc = backend.finishAccept(this.sock, s);
    if (uc !== 0)
      this.core.announce.socketCallFailed('update-context', backend.errorName(uc), this, null);
    let conn: Connection | null = null;
    try {
      const entry = this.core.assignKey(s, { kind: 'connection', id: '', side: 'client' });
      const client = new Endpoint('client', s, entry, backend);
      if (peer) client.remote = peer; // already asked: no second getpeername
      conn = new Connection(this.core, this, this.core.nextConnectionId(), client);
      if (entry.owner?.kind === 'connection') entry.owner.id = conn.id;
      backend.associate(s, entry.key);
    } catch (err) {
      this.core.log(
        'error',
        { listener: this.id, err: (err as Error).message },
        'cannot set up accepted socket',
      );
      if (conn) conn.abort('setup failed');
      else backend.closeSocket(s, true);
      this.postAccepts();
      return;
    }
    // The connection's trace starts with its accept: dequeued on the LISTENER's key.
    const lk = this.keyEntry as KeyEntry;
    conn.trace.record(
      Date.now(),
      keyAsDequeued(rec.dequeuedKey, lk),
      lk.keyHex,
      rec.addressHex,
      'accept',
      'client',
      0,
      'SUCCESS',
      rec.dequeuedKey === null,
      Math.round((performance.now() - rec.issuedAt) * 1000),
    );
    this.connections.add(conn);
    if (cfg.maxConnectionsPerSource > 0 && source !== null) {
      conn.source = source;
      this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    }
    this.core.connectionOpened(conn, rec.dequeuedKey);
    conn.start();
    this.postAccepts();
  }

  connectionGone(conn: Connection): void {
    this.connections.delete(conn);
    if (conn.source !== null) {
      const n = (this.perSource.get(conn.source) ?? 1) - 1;
      if (n > 0) this.perSource.set(conn.source, n);
      else this.perSource.delete(conn.source);
    }
    if (this.state === 'listening') this.postAccepts();
    else this.tryFinishClose();
  }

  /**
   * Stops accepting: cancels the posted accepts and closes the socket once they completed (new
   * clients are then refused). The listener lives on, draining, until its connections are gone.
   */
  close(): void {
    if (this.state !== 'listening') return;
    this.state = 'closing';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.checks?.stop();
    if (this.keyEntry) this.core.cancelAll(this.keyEntry);
    this.tryFinishClose();
  }

  private tryFinishClose(): void {
    if (this.state === 'closing') {
      if (this.keyEntry && this.keyEntry.inFlight > 0) return;
      this.core.backend.closeSocket(this.sock, false);
      if (this.keyEntry) this.core.releaseKey(this.keyEntry);
      this.keyEntry = null;
      this.state = 'draining';
    }
    if (this.state === 'draining' && this.connections.size === 0) {
      this.state = 'closed';
      this.core.listenerClosed(this);
    }
  }
}
