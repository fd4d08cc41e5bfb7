// The backend-neutral engine: owns the key table, the op table and the buffer pool, turns every
// dequeued (or inline) completion into a call on the op's owner, and keeps listeners and
// connections. Runs on one JS thread; the API reaches it only through EngineControl.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { AnomalyCounter, type AnomalyKind } from './anomalies.js';
import {
  type Backend,
  BackendError,
  type CompletionSink,
  type OpKind,
  PENDING,
  type StartResult,
} from './backend.js';
import {
  type EngineCore,
  KEY_MISMATCH,
  type OpOwner,
  type ResolvedListenerConfig,
} from './core.js';
import { EventBus } from './events.js';
import { FAULTS } from './faults.js';
import { type RejectReason, SourceRules } from './net/sources.js';
import {
  ENGINE_DEFAULTS,
  type EngineConfig,
  LISTENER_DEFAULTS,
  type ListenerConfig,
} from './options.js';
import { ConnectFailureLog, type FailureSummary, formatTarget } from './relay/connect-failures.js';
import type { Connection } from './relay/connection.js';
import { formatSocketAddress } from './relay/endpoint.js';
import { Listener } from './relay/listener.js';
import { SplicePipes } from './relay/splice.js';
import { keyAsDequeued } from './relay/trace.js';
import type { UpstreamState } from './relay/upstreams.js';
import { BufferPool } from './tables/buffers.js';
import { hex64, type KeyEntry, type KeyOwner, KeyTable } from './tables/keys.js';
import { OpPool, type OpRecord } from './tables/ops.js';

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

export class ListenError extends Error {
  constructor(
    message: string,
    /** The address is taken (by keyport or another process). */
    readonly inUse = false,
    /** engine.maxListeners listeners exist already. */
    readonly atLimit = false,
  ) {
    super(message);
  }
}

/** What happened to an op the API asked to cancel. */
export interface CancelOutcome {
  record: string;
  op: OpKind;
  key: string;
  connection: string | null;
  listener: string | null;
  /** CancelIoEx (or ASYNC_CANCEL) was accepted by the kernel. */
  cancelRequested: boolean;
  /** Why not, when it was not (e.g. ERROR_NOT_FOUND: it completed first). */
  cancelError: string | null;
  /** The op's completion was handled within the wait. */
  completed: boolean;
  status: string | null;
  bytes: number | null;
}

const HEARTBEAT_MS = 2000;

export class Engine implements EngineCore, CompletionSink {
  readonly keys = new KeyTable();
  readonly ops: OpPool;
  readonly buffers: BufferPool;
  /** Kernel pipes for splicing bulk directions (io_uring), or null. */
  readonly splicePipes: SplicePipes | null;
  readonly traceDepth: number;
  /** Listeners at once, and connections at once across all of them (issue 16). */
  readonly maxListeners: number;
  readonly maxConnections: number;
  readonly listeners = new Map<string, Listener>();
  readonly connections = new Map<string, Connection>();
  readonly startedAt = Date.now();
  observer: EngineObserver | null = null;
  /** The access log, when one is configured. */
  connectionLog: ConnectionLog | null = null;
  readonly events = new EventBus();

  readonly stats = {
    completions: 0,
    inlineCompletions: 0,
    batches: 0,
    lastBatchAt: 0,
    connectionsClosed: 0,
    /** Idle buffered reads the engine cancelled to give their buffer back. */
    parked: 0,
    /** Selected recvs that found every provided buffer in use (the direction then used its own). */
    providedExhausted: 0,
    heartbeatsSent: 0,
    heartbeatsSeen: 0,
    lastHeartbeatSeenAt: 0,
  };
  /** "op:ERROR_NAME" → count, every non-zero completion status by name. */
  readonly errors = new Map<string, number>();
  /** Completions refused because they disagree with what was issued (DESIGN §1.8). */
  readonly anomalies = new AnomalyCounter();
  /** Rate-limits the log of upstream connect failures (a storm of them must not flood it). */
  private readonly connectFailureLog = new ConnectFailureLog();

  private readonly inlineQueue: OpRecord[] = [];
  private inlineHead = 0;
  private inlineScheduled = false;
  private readonly inlineBudgetMs: number;
  private readonly parkAfterMs: number;
  private nextListener = 1;
  private nextConnection = 1;
  private sweepTimer: NodeJS.Timeout | null = null;
  private heartbeatKey: KeyEntry | null = null;
  private readonly configs = new Map<Listener, ResolvedListenerConfig>();
  private stopped = false;
  /** Connections were reset during the shutdown drain: it did not finish by itself. */
  private resetDuringDrain = false;
  /** API cancels waiting for their op's completion; several may wait on one record. */
  private readonly cancelWaiters = new Map<
    OpRecord,
    { gen: number; done: Array<(s: string, bytes: number) => void> }
  >();

  constructor(
    readonly backend: Backend,
    config: EngineConfig = {},
    private readonly logger: LogFn = () => {},
  ) {
    const bufferSize = config.bufferSize ?? ENGINE_DEFAULTS.bufferSize;
    this.buffers = new BufferPool(
      backend,
      bufferSize,
      backend.provideBuffers?.(bufferSize) ?? null,
    );
    this.ops = new OpPool(backend, backend.recordHeaderSize, this.buffers);
    const pipes = config.splicePipes ?? ENGINE_DEFAULTS.splicePipes;
    this.splicePipes = pipes > 0 && backend.createPipe ? new SplicePipes(backend, pipes) : null;
    this.traceDepth = config.traceDepth ?? ENGINE_DEFAULTS.traceDepth;
    this.inlineBudgetMs = config.inlineBudgetMs ?? ENGINE_DEFAULTS.inlineBudgetMs;
    this.parkAfterMs = config.parkAfterMs ?? ENGINE_DEFAULTS.parkAfterMs;
    this.maxListeners = config.maxListeners ?? ENGINE_DEFAULTS.maxListeners;
    this.maxConnections = config.maxConnections ?? ENGINE_DEFAULTS.maxConnections;
  }

  start(): void {
    this.backend.start(this, (addr) => this.ops.byAddress(addr));
    this.heartbeatKey = this.keys.assign(-1, { kind: 'engine', id: 'heartbeat' });
    this.sweepTimer = setInterval(() => this.sweep(), 250);
    this.sweepTimer.unref();
    this.heartbeat();
  }

  // ---- ops ---------------------------------------------------------------------------------

  newOp(kind: OpKind, key: KeyEntry, owner: OpOwner): OpRecord {
    return this.ops.acquire(kind, key, owner);
  }

  submit(rec: OpRecord): void {
    const key = rec.keyEntry as KeyEntry;
    key.ops.add(rec);
    let result: StartResult;
    try {
      result = this.backend.submit(rec);
    } catch (err) {
      this.logger(
        'error',
        { op: rec.kind, key: key.keyHex, err: (err as Error).message },
        'op failed to start',
      );
      // Completes as a failure through the normal path, in the backend's own code space.
      result = this.backend.codes.invalidArgument;
    }
    if (result === PENDING) return;
    // Finished inline: no packet will come. Complete it ourselves, queued, never recursively.
    rec.inlineQueued = true;
    rec.inlineCode = result;
    rec.inlineBytes = result === 0 ? this.backend.inlineBytes(rec) : 0;
    this.inlineQueue.push(rec);
    if (!this.inlineScheduled) {
      this.inlineScheduled = true;
      setImmediate(() => this.drainInline());
    }
  }

  cancel(rec: OpRecord): void {
    if (!rec.inFlight || rec.inlineQueued || rec.cancelRequested) return;
    rec.cancelRequested = true;
    this.backend.cancel(rec.sock, rec);
  }

  cancelAll(key: KeyEntry): void {
    for (const rec of key.ops) this.cancel(rec as OpRecord);
  }

  /**
   * CompletionSink: one dequeued completion, as the port returned it. It reaches the op's
   * owner only if it is that op's: the record is in flight, the kernel has finished with it,
   * no inline result is queued for it, and the key is its socket's (DESIGN §1.8).
   */
  completion(key: bigint, recordAddr: number, bytes: number, status: number): void {
    const rec = this.ops.byAddress(recordAddr);
    if (!rec?.inFlight) {
      this.anomaly('stray', key, recordAddr, null);
      return;
    }
    const word = this.backend.statusWord;
    if (
      rec.inlineQueued ||
      rec.view.getInt32(word.offset, true) === word.pending ||
      rec.view.getUint32(word.bytesOffset, true) !== bytes
    ) {
      this.anomaly('duplicate', key, recordAddr, rec);
      return;
    }
    if (rec.keyEntry === this.heartbeatKey) {
      // The engine's own posted packet: a copy with another key is refused, the real one kept.
      if (key === rec.key) this.heartbeatSeen(rec);
      else this.anomaly(this.keys.issued(key) ? 'duplicate' : 'key-mismatch', key, recordAddr, rec);
      return;
    }
    if (key !== rec.key) {
      if (this.keys.issued(key)) {
        // A key keyport gave another socket: a stale packet from an earlier use of this record
        // (the current op's own packet is still to come). Dropped; the owner never sees it.
        this.anomaly('duplicate', key, recordAddr, rec);
        return;
      }
      // A key keyport never issued names this op: the socket is tied to the wrong key, so no
      // packet of it can be trusted. Its data must not reach the owner; the owner learns the op
      // is lost (its connection is reset) and the record is never reused.
      this.anomaly('key-mismatch', key, recordAddr, rec);
      this.finish(rec, KEY_MISMATCH, 0, false, key);
      return;
    }
    this.finish(rec, status, bytes, false, key);
  }

  /** CompletionSink: end of a dequeued batch; completes the inline results it caused. */
  batch(size: number): void {
    this.stats.batches++;
    this.stats.lastBatchAt = Date.now();
    this.observer?.batch(size);
    this.drainInline();
  }

  private anomaly(kind: AnomalyKind, key: bigint, recordAddr: number, rec: OpRecord | null): void {
    const skipped = this.anomalies.count(kind, Date.now());
    const detail = {
      kind,
      key: hex64(key), // as dequeued
      expectedKey: rec?.keyEntry?.keyHex ?? null,
      record: hex64(BigInt(recordAddr)),
      op: rec?.kind ?? null,
      ...this.ownerIds(rec?.keyEntry ?? null),
    };
    if (skipped >= 0) {
      this.logger('error', { ...detail, unloggedBefore: skipped }, `completion refused: ${kind}`);
    }
    if (this.events.active) this.events.emit({ type: 'anomaly', at: Date.now(), ...detail });
  }

  private drainInline(): void {
    this.inlineScheduled = false;
    const q = this.inlineQueue;
    const deadline = performance.now() + this.inlineBudgetMs;
    let n = 0;
    while (this.inlineHead < q.length) {
      const rec = q[this.inlineHead++] as OpRecord;
      rec.inlineQueued = false;
      this.stats.inlineCompletions++;
      this.finish(rec, rec.inlineCode, rec.inlineBytes, true, rec.key);
      // Check the clock every 16 completions: a busy socket must not starve the others.
      if ((++n & 15) === 0 && performance.now() > deadline) break;
    }
    if (this.inlineHead >= q.length) {
      q.length = 0;
      this.inlineHead = 0;
    } else if (!this.inlineScheduled) {
      this.inlineScheduled = true;
      setImmediate(() => this.drainInline());
    }
  }

  /**
   * Applies a completion to its owner. `dequeuedKey` is the key the packet carried (for an
   * inline result, which no packet carried, the socket's own key).
   */
  private finish(
    rec: OpRecord,
    code: number,
    bytes: number,
    inline: boolean,
    dequeuedKey: bigint,
  ): void {
    if (FAULTS.throwAfter > 0 && this.stats.completions >= FAULTS.throwAfter) {
      throw new Error(`KEYPORT_TEST_FAULTS throw-after:${FAULTS.throwAfter}: injected throw`);
    }
    const key = rec.keyEntry as KeyEntry;
    key.ops.delete(rec);
    key.completions++;
    this.stats.completions++;
    const latency = (performance.now() - rec.issuedAt) / 1000;
    // A selected recv: the buffer the kernel filled is the record's from now on (released
    // with it, back to the kernel).
    if (rec.selectBuffer && code !== KEY_MISMATCH) rec.buffer = this.buffers.takeProvided(rec);
    let errorName: string | null = null;
    if (rec.parking && code === this.backend.codes.operationAborted) {
      this.stats.parked++; // the engine's own cancel of an idle read: not an error
    } else if (rec.selectBuffer && code === this.buffers.provided?.noBuffers) {
      this.stats.providedExhausted++; // every provided buffer busy: the direction reads into its own
    } else if (code !== 0) {
      errorName = this.errorName(code);
      this.countError(rec.kind, errorName);
      if (this.events.active && code !== this.backend.codes.operationAborted)
        this.emitError(rec, errorName);
    }
    this.observer?.completion(rec.kind, latency, code, errorName, inline);
    if (this.cancelWaiters.size > 0) this.settleCancel(rec, errorName, bytes);
    const owner = rec.owner as OpOwner;
    const ko = key.owner;
    if (ko?.kind === 'connection') {
      const conn = this.connections.get(ko.id);
      conn?.trace.record(
        rec.issuedAtWall + latency * 1000, // completion time, without another clock read
        keyAsDequeued(inline ? null : dequeuedKey, key),
        key.keyHex,
        rec.addressHex,
        rec.kind,
        ko.side,
        bytes,
        code === 0 ? 'SUCCESS' : (errorName ?? this.errorName(code)), // a parked read: aborted
        inline,
        Math.round(latency * 1e6),
      );
    }
    rec.dequeuedKey = inline ? null : dequeuedKey;
    try {
      owner.complete(rec, code, bytes);
    } finally {
      // Only now: the completion has been dequeued and handled.
      if (code === KEY_MISMATCH) this.ops.quarantine(rec);
      else this.ops.release(rec);
    }
  }

  errorName(code: number): string {
    return code === KEY_MISMATCH ? 'KEY_MISMATCH' : this.backend.errorName(code);
  }

  countError(op: string, errorName: string): void {
    const k = `${op}:${errorName}`;
    this.errors.set(k, (this.errors.get(k) ?? 0) + 1);
  }

  private emitError(rec: OpRecord, errorName: string): void {
    const { connection, listener } = this.ownerIds(rec.keyEntry);
    this.events.emit({
      type: 'error',
      at: Date.now(),
      op: rec.kind,
      error: errorName,
      key: rec.keyEntry?.keyHex ?? '',
      connection,
      listener,
    });
  }

  /** The connection and the listener a key belongs to, for views and events. */
  ownerIds(key: KeyEntry | null): { connection: string | null; listener: string | null } {
    const owner = key?.owner;
    if (owner?.kind === 'listener') return { connection: null, listener: owner.id };
    if (owner?.kind !== 'connection') return { connection: null, listener: null };
    return { connection: owner.id, listener: this.connections.get(owner.id)?.listener.id ?? null };
  }

  private settleCancel(rec: OpRecord, errorName: string | null, bytes: number): void {
    const w = this.cancelWaiters.get(rec);
    if (!w || w.gen !== rec.generation) return;
    this.cancelWaiters.delete(rec);
    for (const done of w.done) done(errorName ?? 'SUCCESS', bytes);
  }

  // ---- commands (through EngineControl) ---------------------------------------------------------

  /** Cancels one in-flight op by its record address and reports what became of it. */
  async cancelOp(
    recordAddr: number,
    waitMs = 2000,
  ): Promise<CancelOutcome | 'not-found' | 'not-cancellable'> {
    const rec = this.ops.byAddress(recordAddr);
    if (!rec?.inFlight || !rec.keyEntry) return 'not-found';
    const key = rec.keyEntry;
    if (key.sock < 0) return 'not-cancellable'; // the heartbeat is a posted packet, not I/O
    const { connection, listener } = this.ownerIds(key);
    const outcome: CancelOutcome = {
      record: rec.addressHex,
      op: rec.kind,
      key: key.keyHex,
      connection,
      listener,
      cancelRequested: false,
      cancelError: null,
      completed: false,
      status: null,
      bytes: null,
    };
    const gen = rec.generation;
    const settled = new Promise<boolean>((resolve) => {
      let w = this.cancelWaiters.get(rec);
      if (!w || w.gen !== gen) {
        w = { gen, done: [] };
        this.cancelWaiters.set(rec, w);
      }
      w.done.push((status, bytes) => {
        outcome.completed = true;
        outcome.status = status;
        outcome.bytes = bytes;
        resolve(true);
      });
      setTimeout(() => resolve(false), waitMs).unref();
    });
    // The API's cancel wins over the engine's own parking of an idle read: the read then ends
    // the connection, as any cancelled read does.
    rec.parking = false;
    const code = rec.inlineQueued
      ? this.backend.codes.notFound
      : rec.cancelRequested
        ? 0
        : this.backend.cancel(key.sock, rec);
    if (code !== 0) {
      outcome.cancelError = this.backend.errorName(code);
      return outcome;
    }
    rec.cancelRequested = true;
    outcome.cancelRequested = true;
    await settled;
    const w = this.cancelWaiters.get(rec);
    if (w?.gen === gen && !rec.inFlight) this.cancelWaiters.delete(rec);
    if (this.events.active) {
      const { record, op, key: k, connection: c, listener: l, status } = outcome;
      this.events.emit({
        type: 'op-cancelled',
        at: Date.now(),
        record,
        op,
        key: k,
        connection: c,
        listener: l,
        status,
      });
    }
    return outcome;
  }

  /**
   * Stops a listener. `drain`: refuse new clients, let connections finish, abort those still
   * open at the deadline (null: no deadline, they end by themselves: a reload's replace).
   * `abort`: reset its connections now.
   */
  closeListener(id: string, mode: 'drain' | 'abort', deadlineMs: number | null): Listener | null {
    const l = this.listeners.get(id);
    if (!l) return null;
    l.close();
    if (this.events.active && l.state !== 'closed') {
      this.events.emit({
        type: 'listener-draining',
        at: Date.now(),
        listener: l.id,
        connections: l.connections.size,
      });
    }
    const abortAll = (reason: string) => {
      for (const c of [...l.connections]) c.abort(reason);
    };
    if (mode === 'abort') abortAll('listener aborted');
    else if (l.connections.size > 0 && deadlineMs !== null)
      setTimeout(() => abortAll('listener drain deadline'), deadlineMs).unref();
    return l;
  }

  /**
   * Closes a connection: graceful (stop reading, deliver what was read, then FIN) or abortive
   * (RST).
   */
  closeConnection(id: string, mode: 'graceful' | 'abort'): Connection | null {
    const c = this.connections.get(id);
    if (!c) return null;
    if (mode === 'abort') c.abort('closed by API (abort)');
    else c.closeGracefully('closed by API');
    return c;
  }

  // ---- heartbeat: proves the dequeue loop turns (GET /readyz) ----------------------------------

  private heartbeat(): void {
    if (this.stopped || !this.heartbeatKey) return;
    const rec = this.ops.acquire('nop', this.heartbeatKey, null);
    this.heartbeatKey.ops.add(rec);
    this.stats.heartbeatsSent++;
    this.backend.post(this.heartbeatKey.key, rec, 0);
  }

  private heartbeatSeen(rec: OpRecord): void {
    (this.heartbeatKey as KeyEntry).ops.delete(rec);
    this.ops.release(rec);
    this.stats.heartbeatsSeen++;
    this.stats.lastHeartbeatSeenAt = Date.now();
    setTimeout(() => this.heartbeat(), HEARTBEAT_MS).unref();
  }

  // ---- keys, listeners, connections -------------------------------------------------------------

  assignKey(sock: number, owner: KeyOwner): KeyEntry {
    return this.keys.assign(sock, owner);
  }

  releaseKey(key: KeyEntry): void {
    this.keys.release(key);
  }

  nextConnectionId(): string {
    return `c${this.nextConnection++}`;
  }

  listenerConfig(listener: Listener): ResolvedListenerConfig {
    return this.configs.get(listener) as ResolvedListenerConfig;
  }

  async addListener(config: ListenerConfig): Promise<Listener> {
    if (this.listeners.size >= this.maxListeners) {
      throw new ListenError(
        `engine.maxListeners (${this.maxListeners}) reached: ${this.listeners.size} listeners exist (closing and draining ones count until they are gone); stop one first, or raise engine.maxListeners in the config file`,
        false,
        true,
      );
    }
    try {
      new SourceRules(config.allow ?? [], config.deny ?? []);
    } catch (err) {
      throw new ListenError(`allow/deny: ${(err as Error).message}`);
    }
    let host = config.host;
    if (!isIP(host)) {
      try {
        host = (await lookup(host)).address;
      } catch (err) {
        throw new ListenError(
          `cannot resolve listener address ${config.host}: ${(err as NodeJS.ErrnoException).code}`,
        );
      }
    }
    const family = isIP(host) === 6 ? 6 : 4;
    const resolved: ResolvedListenerConfig = {
      ...LISTENER_DEFAULTS,
      ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
      host,
    } as ResolvedListenerConfig;
    if (resolved.mode === 'forward' && !resolved.target && !resolved.targets?.length)
      throw new ListenError('a forward listener needs a target');
    const listener = new Listener(this, `l${this.nextListener++}`, resolved, {
      host,
      port: config.port,
      family,
    });
    this.configs.set(listener, resolved);
    try {
      listener.open();
    } catch (err) {
      this.configs.delete(listener);
      const where = family === 6 ? `[${host}]:${config.port}` : `${host}:${config.port}`;
      const inUse = err instanceof BackendError && err.errorName.endsWith('ADDRINUSE');
      throw new ListenError(
        inUse
          ? `${where} is already in use (another listener or process holds it)`
          : `cannot listen on ${where}: ${(err as Error).message}`,
        inUse,
      );
    }
    this.listeners.set(listener.id, listener);
    if (this.events.active) {
      this.events.emit({
        type: 'listener-up',
        at: Date.now(),
        listener: listener.id,
        address: formatSocketAddress(listener.bound) ?? '',
        mode: resolved.mode,
        key: listener.key?.keyHex ?? '',
      });
    }
    this.logger(
      'info',
      {
        listener: listener.id,
        mode: resolved.mode,
        address: listener.bound,
        key: listener.key?.keyHex,
      },
      'listener started',
    );
    return listener;
  }

  connectionOpened(conn: Connection, acceptKey: bigint | null): void {
    conn.opened = true;
    this.connections.set(conn.id, conn);
    this.observer?.accepted(conn.listener);
    this.observer?.connectionOpened(conn);
    this.connectionLog?.opened(conn);
    if (this.events.active) {
      this.events.emit({
        type: 'connection-opened',
        at: Date.now(),
        connection: conn.id,
        listener: conn.listener.id,
        key: conn.client.key.keyHex,
        acceptKey: acceptKey === null ? null : hex64(acceptKey),
        remote: formatSocketAddress(conn.client.remote),
      });
    }
  }

  connectionCount(): number {
    return this.connections.size;
  }

  connectionRejected(listener: Listener, reason: RejectReason): void {
    this.observer?.rejected(listener, reason);
    // Per client: debug, as closes are; counted in keyport_connections_rejected_total.
    this.logger('debug', { listener: listener.id, reason }, 'client reset right after accept');
  }

  connectionClosed(conn: Connection): void {
    // One that failed during set-up was never opened: nothing was counted or announced for it.
    if (!conn.opened) return;
    this.connections.delete(conn.id);
    this.stats.connectionsClosed++;
    conn.listener.connectionGone(conn);
    this.observer?.connectionClosed(conn);
    this.connectionLog?.closed(conn);
    if (this.events.active) {
      this.events.emit({
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
    this.logger(
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

  listenerClosed(listener: Listener): void {
    this.listeners.delete(listener.id);
    this.configs.delete(listener);
    this.logger('info', { listener: listener.id }, 'listener stopped');
    if (this.events.active)
      this.events.emit({ type: 'listener-down', at: Date.now(), listener: listener.id });
  }

  /**
   * A forward connection could not reach its upstream (name not resolved, socket not created,
   * connect failed or timed out): counted per listener and error name (a failed connect op was
   * also counted by finish()), and logged at warn: the first of each (listener, error) at once,
   * then a summary per 10 s while more come.
   */
  upstreamConnectFailed(listener: Listener, errorName: string, failed?: string): void {
    this.observer?.upstreamConnectFailed(listener, errorName);
    const target = failed ?? formatTarget(listener.target);
    if (this.connectFailureLog.note(listener.id, target, errorName, performance.now())) {
      this.logger(
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
    if (this.events.active) {
      this.events.emit({
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

  private logConnectFailures(summaries: FailureSummary[]): void {
    for (const s of summaries) {
      this.logger(
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

  log(level: 'debug' | 'info' | 'warn' | 'error', obj: Record<string, unknown>, msg: string): void {
    this.logger(level, obj, msg);
  }

  /** Idle, connect and close timeouts; parking of idle reads. */
  private sweep(): void {
    const now = performance.now();
    this.logConnectFailures(this.connectFailureLog.due(now));
    const parkBefore = now - this.parkAfterMs;
    for (const conn of this.connections.values()) {
      if (conn.state === 'connecting') {
        if (conn.connectDeadline > 0 && now > conn.connectDeadline) conn.connectTimeout();
        continue;
      }
      if (conn.state === 'closing') {
        // A graceful close that cannot deliver in time: what is left is lost, so RST.
        if (conn.closeDeadline > 0 && now > conn.closeDeadline) conn.abort('close deadline');
        continue;
      }
      if (conn.state !== 'open') continue;
      const cfg = this.listenerConfig(conn.listener);
      const idle = cfg.idleTimeoutMs;
      if (idle > 0 && now - conn.windowStart >= idle) {
        // Each idle window must bring at least idleMinBytes (read or written): nothing at all
        // is idle, a trickle below the floor (slowloris) is too slow. Either closes the
        // connection gracefully: what was read is still delivered.
        if (conn.windowBytes < cfg.idleMinBytes) {
          conn.closeGracefully(
            conn.windowBytes === 0
              ? 'idle-timeout'
              : `too-slow: ${conn.windowBytes} B in ${idle} ms`,
          );
          continue;
        }
        conn.windowStart = now;
        conn.windowBytes = 0;
      }
      for (const p of conn.directions) p.park(parkBefore);
    }
  }

  // ---- shutdown ----------------------------------------------------------------------------------

  /**
   * Drains (DESIGN §1.5): stops accepting and lets live connections run to their natural end;
   * at `deadlineMs` resets what is left. Resolves when every op has completed and the backend
   * has stopped, with whether the drain finished before the deadline.
   */
  async shutdown(deadlineMs = 5000): Promise<boolean> {
    if (this.stopped) return true;
    this.stopped = true;
    for (const l of [...this.listeners.values()]) l.close();
    const drained = await this.waitIdle(deadlineMs);
    if (!drained) {
      this.abortAll('shutdown deadline');
      await this.waitIdle(2000);
    }
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.logConnectFailures(this.connectFailureLog.flush(performance.now()));
    await this.backend.stop();
    return drained && !this.resetDuringDrain;
  }

  /**
   * The same drain as shutdown(), done before it returns: completions are dequeued on this
   * thread (backend.pumpSync) and the sweep run by hand, since the event loop cannot turn. For
   * a Windows console handler (`docker stop`, the console closed): the system ends the process
   * as soon as it returns. Also when an asynchronous shutdown is already under way (a Ctrl+C
   * came first): it could only finish after the handler returned, which is too late. Nothing
   * is left to run afterwards but process.exit(). Returns whether everything drained in time.
   */
  drainNow(deadlineMs: number): boolean {
    const pump = this.backend.pumpSync?.bind(this.backend);
    if (!pump) throw new Error(`the ${this.backend.name} backend cannot drain synchronously`);
    this.stopped = true;
    for (const l of [...this.listeners.values()]) l.close();
    const runUntil = (end: number) => {
      for (let now = performance.now(); !this.idle() && now < end; now = performance.now()) {
        // Ops that finished inline wait for a setImmediate that cannot run: complete them here,
        // and do not wait on the port while any is queued.
        const inline = this.inlineHead < this.inlineQueue.length;
        if (inline) this.drainInline();
        pump(inline ? 0 : Math.min(50, end - now));
        this.sweep();
      }
      return this.idle();
    };
    const drained = runUntil(performance.now() + deadlineMs);
    if (!drained) {
      this.abortAll('shutdown deadline');
      runUntil(performance.now() + 2000);
    }
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.logConnectFailures(this.connectFailureLog.flush(performance.now()));
    return drained && !this.resetDuringDrain;
  }

  /** Resets every connection now (a second Ctrl+C during a drain, a drain deadline). */
  abortAll(reason: string): void {
    if (this.stopped && this.connections.size > 0) this.resetDuringDrain = true;
    for (const c of [...this.connections.values()]) c.abort(reason);
  }

  /** No op in flight (but the heartbeat's), no connection and no listener left. */
  private idle(): boolean {
    const hb = this.heartbeatKey?.inFlight ?? 0;
    return (
      this.ops.inFlightTotal - hb === 0 && this.connections.size === 0 && this.listeners.size === 0
    );
  }

  private async waitIdle(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (!this.idle()) {
      if (Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }
}
