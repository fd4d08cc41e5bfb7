// Who hears of what the engine does, besides GET /events: the metrics (on the hot path, so
// without allocating), the access log (a line per closed connection), and the process's log.
import type { OpKind } from './backend.js';
import type { RejectReason } from './net/sources.js';
import type { Connection } from './relay/connection.js';
import type { Listener } from './relay/listener.js';

/** A socket call made outside any op (no completion reports it), that can fail. */
export type SocketCall = 'shutdown' | 'update-context';

/** Observes the data plane (metrics); called on the hot path, so it must not allocate. */
export interface EngineObserver {
  completion(
    op: OpKind,
    latencySeconds: number,
    code: number,
    errorName: string | null,
    inline: boolean,
  ): void;
  batch(size: number): void;
  accepted(listener: Listener): void;
  connectionOpened(conn: Connection): void;
  connectionClosed(conn: Connection): void;
  upstreamConnectFailed(listener: Listener, errorName: string): void;
  rejected(listener: Listener, reason: RejectReason): void;
  /** shutdown(SD_SEND) after a relayed EOF, or SO_UPDATE_CONNECT_CONTEXT, failed. */
  socketCallFailed(call: SocketCall, errorName: string): void;
}

/**
 * Hears of each connection's open and close, for one record per connection (the access log).
 * Off the metrics' observer slot: it may allocate (a line per close), and it is null unless
 * configured, so a connection then pays one null test at open and one at close.
 */
export interface ConnectionLog {
  /** Announced: the moment to keep what the close will need (the sockets' addresses). */
  opened(conn: Connection): void;
  /** Closed: both sockets are closed, its keys released, its counts final. */
  closed(conn: Connection): void;
}

export type LogFn = (
  level: 'debug' | 'info' | 'warn' | 'error',
  obj: Record<string, unknown>,
  msg: string,
) => void;
