// Tells the engine's hearers (events for GET /events, the metrics observer, the access log,
// the log) what happened to listeners, connections and upstreams. The engine changes its
// tables; this says so, in one place, so the event names and log lines stay consistent.
import type { EventBus } from './events.js';
import type { RejectReason } from './net/sources.js';
import type { ConnectionLog, EngineObserver, LogFn, SocketCall } from './observers.js';
import { ConnectFailureLog, type FailureSummary, formatTarget } from './relay/connect-failures.js';
import type { Connection } from './relay/connection.js';
import { formatSocketAddress } from './relay/endpoint.js';
import type { Listener } from './relay/listener.js';
import type { UpstreamState } from './relay/upstreams.js';
import { hex64 } from './tables/keys.js';

/** Where the hearers are: set on the engine after it is built (metrics, access log). */
export interface Hearers {
  readonly events: EventBus;
  observer: EngineObserver | null;
  connectionLog: ConnectionLog | null;
}

export class Announcer {
  /** Rate-limits the log of upstream connect failures (a storm of them must not flood it). */
  private readonly connectFailureLog = new ConnectFailureLog();

  constructor(
    private readonly to: Hearers,
    private readonly log: LogFn,
  ) {}

  listenerUp(listener: Listener): void {
    const mode = listener.config.mode;
    if (this.to.events.active) {
      this.to.events.emit({
        type: 'listener-up',
        at: Date.now(),
        listener: listener.id,
        address: formatSocketAddress(listener.bound) ?? '',
        mode,
        key: listener.keyEntry?.keyHex ?? '',
      });
    }
    this.log(
      'info',
      { listener: listener.id, mode, address: listener.bound, key: listener.keyEntry?.keyHex },
      'listener started',
    );
  }

  listenerDraining(listener: Listener): void {
    if (this.to.events.active && listener.state !== 'closed') {
      this.to.events.emit({
        type: 'listener-draining',
        at: Date.now(),
        listener: listener.id,
        connections: listener.connections.size,
      });
    }
  }

  listenerDown(listener: Listener): void {
    this.log('info', { listener: listener.id }, 'listener stopped');
    if (this.to.events.active)
      this.to.events.emit({ type: 'listener-down', at: Date.now(), listener: listener.id });
  }

  connectionOpened(conn: Connection, acceptKey: bigint | null): void {
    this.to.observer?.accepted(conn.listener);
    this.to.observer?.connectionOpened(conn);
    this.to.connectionLog?.opened(conn);
    if (this.to.events.active) {
      this.to.events.emit({
        type: 'connection-opened',
        at: Date.now(),
        connection: conn.id,
        listener: conn.listener.id,
        key: conn.client.keyEntry.keyHex,
        acceptKey: acceptKey === null ? null : hex64(acceptKey),
        remote: formatSocketAddress(conn.client.remote),
      });
    }
  }

  connectionRejected(listener: Listener, reason: RejectReason): void {
    this.to.observer?.rejected(listener, reason);
    // Per client: debug, as closes are; counted in keyport_connections_rejected_total.
    this.log('debug', { listener: listener.id, reason }, 'client reset right after accept');
  }

  connectionClosed(conn: Connection): void {
    this.to.observer?.connectionClosed(conn);
    this.to.connectionLog?.closed(conn);
    if (this.to.events.active) {
      this.to.events.emit({
        type: 'connection-closed',
        at: Date.now(),
        connection: conn.id,
        listener: conn.listener.id,
        reason: conn.closeReason ?? 'closed',
        abortive: conn.abortive,
        bytesIn: conn.client.bytesIn,
        bytesOut: conn.client.bytesOut,
        upstreamBytesIn: conn.upstream?.bytesIn ?? null,
        upstreamBytesOut: conn.upstream?.bytesOut ?? null,
      });
    }
    // Per connection: debug (KEYPORT_LOG_LEVEL=debug), so churn does not pay a log line each;
    // closes are counted in metrics and streamed by /events.
    this.log(
      'debug',
      {
        connection: conn.id,
        listener: conn.listener.id,
        reason: conn.closeReason,
        abortive: conn.abortive,
        bytesIn: conn.client.bytesIn,
        bytesOut: conn.client.bytesOut,
      },
      'connection closed',
    );
  }

  /**
   * A forward connection could not reach its upstream (name not resolved, socket not created,
   * connect failed or timed out): counted per listener and error name (a failed connect op was
   * also counted with the completions), and logged at warn: the first of each (listener, error)
   * at once, then a summary per 10 s while more come (due()).
   */
  upstreamConnectFailed(listener: Listener, errorName: string, failed?: string): void {
    this.to.observer?.upstreamConnectFailed(listener, errorName);
    const target = failed ?? formatTarget(listener.target);
    if (this.connectFailureLog.note(listener.id, target, errorName, performance.now())) {
      this.log(
        'warn',
        { listener: listener.id, target, error: errorName },
        'upstream connect failed',
      );
    }
  }

  upstreamChanged(
    listener: Listener,
    target: string,
    state: UpstreamState,
    error: string | null,
    forMs: number | null,
  ): void {
    if (this.to.events.active) {
      this.to.events.emit({
        type: 'upstream',
        at: Date.now(),
        listener: listener.id,
        target,
        state,
        error,
        forMs,
      });
    }
  }

  /** Counted (keyport_socket_errors_total) and logged at debug: the connection ends anyway. */
  socketCallFailed(
    call: SocketCall,
    errorName: string,
    listener: Listener,
    conn: Connection | null,
  ): void {
    this.to.observer?.socketCallFailed(call, errorName);
    this.log(
      'debug',
      { listener: listener.id, connection: conn?.id ?? null, call, error: errorName },
      'socket call failed',
    );
  }

  /** Logs the connect-failure summaries that are due (the sweep); all of them when `flush`. */
  connectFailureSummaries(now: number, flush = false): void {
    const due: FailureSummary[] = flush
      ? this.connectFailureLog.flush(now)
      : this.connectFailureLog.due(now);
    for (const s of due) {
      this.log(
        'warn',
        {
          listener: s.listener,
          target: s.target,
          error: s.error,
          suppressed: s.suppressed,
          windowMs: Math.round(s.windowMs),
        },
        'upstream connect failed again',
      );
    }
  }
}
