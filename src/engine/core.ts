// What listeners, connections and relay directions need from the engine: one narrow interface, so
// each of them is a small state machine and only the engine touches the op table.
import type { Announcer } from './announcer.js';
import type { Backend, OpKind } from './backend.js';
import type { ListenerConfig } from './options.js';
import type { Connection } from './relay/connection.js';
import type { Listener } from './relay/listener.js';
import type { SplicePipes } from './relay/splice.js';
import type { BufferPool } from './tables/buffers.js';
import type { KeyEntry, KeyOwner } from './tables/keys.js';
import type { OpRecord } from './tables/ops.js';

/** An object that starts ops and is told when each completes (after its dequeue). */
export interface OpOwner {
  /**
   * The op's completion: `code` is the status the kernel returned (0 = success), or
   * KEY_MISMATCH when the packet named this op with another socket's key (its data is
   * withheld). The record is released right after this returns, with any buffer it still holds.
   */
  complete(rec: OpRecord, code: number, bytes: number): void;
}

export type ResolvedListenerConfig = Required<Omit<ListenerConfig, 'target' | 'targets'>> &
  Pick<ListenerConfig, 'target' | 'targets'>;

export interface EngineCore {
  /** Tells events, metrics, the access log and the log what happened (announcer.ts). */
  readonly announce: Announcer;
  readonly backend: Backend;
  readonly buffers: BufferPool;
  readonly splicePipes: SplicePipes | null;
  readonly traceDepth: number;
  /** A record for a new op on the socket of `entry`; fill in its arguments, then submit it. */
  newOp(kind: OpKind, entry: KeyEntry, owner: OpOwner): OpRecord;
  /** Hands the op to the kernel; an inline result is completed later, queued. */
  submit(rec: OpRecord): void;
  /** Asks the kernel to cancel one op (its completion still comes, through complete()). */
  cancel(rec: OpRecord): void;
  /** Asks the kernel to cancel every op in flight on the socket of `entry`, one by one. */
  cancelAll(entry: KeyEntry): void;
  assignKey(sock: number, owner: KeyOwner): KeyEntry;
  releaseKey(entry: KeyEntry): void;
  nextConnectionId(): string;
  /** `acceptKey`: the key the accept's packet carried (null: it completed inline). */
  connectionOpened(conn: Connection, acceptKey: bigint | null): void;
  connectionClosed(conn: Connection): void;
  /** Connections open across every listener, and the engine-wide limit on them. */
  connectionCount(): number;
  readonly maxConnections: number;
  listenerClosed(listener: Listener): void;
  /** The name of a status as owners see it (backend codes, plus the engine's KEY_MISMATCH). */
  errorName(code: number): string;
  log(level: 'debug' | 'info' | 'warn' | 'error', obj: Record<string, unknown>, msg: string): void;
  listenerConfig(listener: Listener): ResolvedListenerConfig;
}

/** The status an owner gets for an op whose packet carried another socket's key. */
export const KEY_MISMATCH = -2;
