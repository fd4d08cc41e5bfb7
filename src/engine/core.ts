// What listeners, connections and relay pipes need from the engine: one narrow interface, so
// each of them is a small state machine and only the engine touches the op table.
import type { Backend, OpKind, StartResult } from './backend.js';
import type { BufferPool } from './buffers.js';
import type { Connection } from './connection.js';
import type { KeyEntry, KeyOwner } from './keys.js';
import type { Listener } from './listener.js';
import type { ListenerConfig } from './options.js';
import type { OpRecord } from './records.js';

/** An object that starts ops and is told when each completes (after its dequeue). */
export interface OpOwner {
  complete(rec: OpRecord, code: number, bytes: number): void;
}

export interface EngineCore {
  readonly backend: Backend;
  readonly buffers: BufferPool;
  readonly traceDepth: number;
  /** Starts an op on the socket of `key`; an inline result is completed later, queued. */
  startOp(kind: OpKind, key: KeyEntry, owner: OpOwner, start: (rec: OpRecord) => StartResult): void;
  assignKey(sock: number, owner: KeyOwner): KeyEntry;
  releaseKey(key: KeyEntry): void;
  nextConnectionId(): string;
  connectionOpened(conn: Connection): void;
  connectionClosed(conn: Connection): void;
  listenerClosed(listener: Listener): void;
  countError(op: OpKind | 'shutdown' | 'update-context', errorName: string): void;
  upstreamConnectFailed(listener: Listener, errorName: string): void;
  log(level: 'info' | 'warn' | 'error', obj: Record<string, unknown>, msg: string): void;
  listenerConfig(
    listener: Listener,
  ): Required<Omit<ListenerConfig, 'target'>> & Pick<ListenerConfig, 'target'>;
}
