// The backend-neutral engine: owns the key table, the op table and the buffer pool, turns every
// dequeued (or inline) completion into a call on the op's owner, and keeps listeners and
// connections. Runs on one JS thread; the API reaches it only through EngineControl.
//
// This file is the completion path, top to bottom: submit → (inline queue) → completion() →
// finish() → owner.complete() → release. The other jobs are beside it: the heartbeat
// (heartbeat.ts), the API's cancel (cancel-op.ts), a new listener's checks (listener-setup.ts),
// telling events, metrics and logs (announcer.ts), timeouts and parking (sweep.ts), and the
// drain (shutdown.ts).

import { Announcer } from './announcer.js';
import { AnomalyCounter, type AnomalyKind } from './anomalies.js';
import {
  type Backend,
  type CompletionSink,
  type OpKind,
  PENDING,
  type StartResult,
} from './backend.js';
import { type CancelOutcome, OpCancels } from './cancel-op.js';
import {
  type EngineCore,
  KEY_MISMATCH,
  type OpOwner,
  type ResolvedListenerConfig,
} from './core.js';
import { EventBus } from './events.js';
import { FAULTS } from './faults.js';
import { Heartbeat } from './heartbeat.js';
import { openFailed, planListener } from './listener-setup.js';
import type { ConnectionLog, EngineObserver, LogFn } from './observers.js';
import { ENGINE_DEFAULTS, type EngineConfig, type ListenerConfig } from './options.js';
import type { Connection } from './relay/connection.js';
import { Listener } from './relay/listener.js';
import { SplicePipes } from './relay/splice.js';
import { keyAsDequeued } from './relay/trace.js';
import { drain, drainNow } from './shutdown.js';
import { Sweep } from './sweep.js';
import { BufferPool } from './tables/buffers.js';
import { hex64, type KeyEntry, type KeyOwner, KeyTable } from './tables/keys.js';
import { OpPool, type OpRecord } from './tables/ops.js';

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
  /** The metrics, when they are on. */
  observer: EngineObserver | null = null;
  /** The access log, when one is configured. */
  connectionLog: ConnectionLog | null = null;
  readonly events = new EventBus();
  readonly heartbeat: Heartbeat;
  /** Counts no observer keeps: the API's activity, and two of the metrics' collected counters. */
  readonly stats = {
    /** Completions of the data plane applied (the heartbeat's are not counted). */
    completions: 0,
    /** Idle buffered reads the engine cancelled to give their buffer back. */
    parkedReads: 0,
    /** Selected recvs that found every provided buffer in use (the direction then used its own). */
    providedExhausted: 0,
  };
  /** Completions refused because they disagree with what was issued (DESIGN §1.8). */
  readonly anomalies = new AnomalyCounter();

  readonly announce: Announcer;
  private readonly cancels: OpCancels;
  private readonly sweeper: Sweep;
  private readonly inlineQueue: OpRecord[] = [];
  private inlineHead = 0;
  private inlineScheduled = false;
  private readonly inlineBudgetMs: number;
  private nextListener = 1;
  private nextConnection = 1;
  private readonly configs = new Map<Listener, ResolvedListenerConfig>();
  private stopped = false;
  /** Connections were reset during the shutdown drain: it did not finish by itself. */
  private resetDuringDrain = false;

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
    this.maxListeners = config.maxListeners ?? ENGINE_DEFAULTS.maxListeners;
    this.maxConnections = config.maxConnections ?? ENGINE_DEFAULTS.maxConnections;
    this.heartbeat = new Heartbeat(this.keys, this.ops, backend);
    this.announce = new Announcer(this, logger);
    this.cancels = new OpCancels(this.ops, backend, this.events, (k) => this.ownerIds(k));
    this.sweeper = new Sweep(this, config.parkAfterMs ?? ENGINE_DEFAULTS.parkAfterMs, (now) =>
      this.announce.connectFailureSummaries(now),
    );
  }

  start(): void {
    this.backend.start(this, (addr) => this.ops.byAddress(addr));
    this.heartbeat.start();
    this.sweeper.start();
  }

  // ---- ops: issue, cancel ------------------------------------------------------------------------

  newOp(kind: OpKind, entry: KeyEntry, owner: OpOwner): OpRecord {
    return this.ops.acquire(kind, entry, owner);
  }

  submit(rec: OpRecord): void {
    const entry = rec.keyEntry as KeyEntry;
    entry.ops.add(rec);
    let result: StartResult;
    try {
      result = this.backend.submit(rec);
    } catch (err) {
      this.logger(
        'error',
        { op: rec.kind, key: entry.keyHex, err: (err as Error).message },
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

  cancelAll(entry: KeyEntry): void {
    for (const rec of entry.ops) this.cancel(rec as OpRecord);
  }

  // ---- completions: dequeued, inline, applied ----------------------------------------------------

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
    if (rec.keyEntry === this.heartbeat.entry) {
      // The engine's own posted packet: a copy with another key is refused, the real one kept.
      if (key === rec.key) this.heartbeat.seen(rec);
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
    this.observer?.batch(size);
    this.drainInline();
  }

  /** Completes queued inline results, within a time budget; the rest on the next turn. */
  drainInline(): void {
    this.inlineScheduled = false;
    const q = this.inlineQueue;
    const deadline = performance.now() + this.inlineBudgetMs;
    let n = 0;
    while (this.inlineHead < q.length) {
      const rec = q[this.inlineHead++] as OpRecord;
      rec.inlineQueued = false;
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

  inlineWaiting(): boolean {
    return this.inlineHead < this.inlineQueue.length;
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
    const entry = rec.keyEntry as KeyEntry;
    entry.ops.delete(rec);
    entry.completions++;
    this.stats.completions++;
    const latency = (performance.now() - rec.issuedAt) / 1000;
    // A selected recv: the buffer the kernel filled is the record's from now on (released
    // with it, back to the kernel).
    if (rec.selectBuffer && code !== KEY_MISMATCH) rec.buffer = this.buffers.takeProvided(rec);
    let errorName: string | null = null;
    if (rec.parking && code === this.backend.codes.operationAborted) {
      this.stats.parkedReads++; // the engine's own cancel of an idle read: not an error
    } else if (rec.selectBuffer && code === this.buffers.provided?.noBuffers) {
      this.stats.providedExhausted++; // every provided buffer busy: the direction reads into its own
    } else if (code !== 0) {
      errorName = this.errorName(code);
      if (this.events.active && code !== this.backend.codes.operationAborted)
        this.emitError(rec, errorName);
    }
    this.observer?.completion(rec.kind, latency, code, errorName, inline);
    if (this.cancels.waiting) this.cancels.settle(rec, errorName, bytes);
    const ko = entry.owner;
    if (ko?.kind === 'connection') {
      const conn = this.connections.get(ko.id);
      conn?.trace.record(
        rec.issuedAtWall + latency * 1000, // completion time, without another clock read
        keyAsDequeued(inline ? null : dequeuedKey, entry),
        entry.keyHex,
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
      (rec.owner as OpOwner).complete(rec, code, bytes);
    } finally {
      // Only now: the completion has been dequeued and handled.
      if (code === KEY_MISMATCH) this.ops.quarantine(rec);
      else this.ops.release(rec);
    }
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

  errorName(code: number): string {
    return code === KEY_MISMATCH ? 'KEY_MISMATCH' : this.backend.errorName(code);
  }

  /** The connection and the listener a key belongs to, for views and events. */
  ownerIds(entry: KeyEntry | null): { connection: string | null; listener: string | null } {
    const owner = entry?.owner;
    if (owner?.kind === 'listener' || owner?.kind === 'check')
      return { connection: null, listener: owner.id };
    if (owner?.kind !== 'connection') return { connection: null, listener: null };
    return { connection: owner.id, listener: this.connections.get(owner.id)?.listener.id ?? null };
  }

  // ---- commands (through EngineControl) ---------------------------------------------------------

  /** Cancels one in-flight op by its record address and reports what became of it. */
  cancelOp(
    recordAddr: number,
    waitMs = 2000,
  ): Promise<CancelOutcome | 'not-found' | 'not-cancellable'> {
    return this.cancels.cancel(recordAddr, waitMs);
  }

  async addListener(config: ListenerConfig): Promise<Listener> {
    const plan = await planListener(config, this.listeners.size, this.maxListeners);
    const listener = new Listener(this, `l${this.nextListener++}`, plan.config, {
      host: plan.host,
      port: config.port,
      family: plan.family,
    });
    this.configs.set(listener, plan.config);
    try {
      listener.open();
    } catch (err) {
      this.configs.delete(listener);
      throw openFailed(err, plan, config.port);
    }
    this.listeners.set(listener.id, listener);
    this.announce.listenerUp(listener);
    return listener;
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
    this.announce.listenerDraining(l);
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

  // ---- EngineCore: what listeners and connections tell the engine --------------------------------

  assignKey(sock: number, owner: KeyOwner): KeyEntry {
    return this.keys.assign(sock, owner);
  }

  releaseKey(entry: KeyEntry): void {
    this.keys.release(entry);
  }

  nextConnectionId(): string {
    return `c${this.nextConnection++}`;
  }

  listenerConfig(listener: Listener): ResolvedListenerConfig {
    return this.configs.get(listener) as ResolvedListenerConfig;
  }

  connectionOpened(conn: Connection, acceptKey: bigint | null): void {
    conn.opened = true;
    this.connections.set(conn.id, conn);
    this.announce.connectionOpened(conn, acceptKey);
  }

  connectionCount(): number {
    return this.connections.size;
  }

  connectionClosed(conn: Connection): void {
    // One that failed during set-up was never opened: nothing was counted or announced for it.
    if (!conn.opened) return;
    this.connections.delete(conn.id);
    conn.listener.connectionGone(conn);
    this.announce.connectionClosed(conn);
  }

  listenerClosed(listener: Listener): void {
    this.listeners.delete(listener.id);
    this.configs.delete(listener);
    this.announce.listenerDown(listener);
  }

  log(level: 'debug' | 'info' | 'warn' | 'error', obj: Record<string, unknown>, msg: string): void {
    this.logger(level, obj, msg);
  }

  // ---- shutdown (shutdown.ts) ----------------------------------------------------------------------

  /**
   * Drains (DESIGN §1.5): stops accepting and lets live connections run to their natural end;
   * at `deadlineMs` resets what is left. Resolves when every op has completed and the backend
   * has stopped, with whether the drain finished before the deadline.
   */
  async shutdown(deadlineMs = 5000): Promise<boolean> {
    if (this.stopped) return true;
    const drained = await drain(this, deadlineMs);
    return drained && !this.resetDuringDrain;
  }

  /** The drain done before it returns, for a Windows console handler (shutdown.ts drainNow). */
  drainNow(deadlineMs: number): boolean {
    return drainNow(this, deadlineMs) && !this.resetDuringDrain;
  }

  stopAccepting(): void {
    this.stopped = true;
    this.heartbeat.stop();
    for (const l of [...this.listeners.values()]) l.close();
  }

  /** Resets every connection now (a second Ctrl+C during a drain, a drain deadline). */
  abortAll(reason: string): void {
    if (this.stopped && this.connections.size > 0) this.resetDuringDrain = true;
    for (const c of [...this.connections.values()]) c.abort(reason);
  }

  idle(): boolean {
    return (
      this.ops.inFlightTotal - this.heartbeat.inFlight === 0 &&
      this.connections.size === 0 &&
      this.listeners.size === 0
    );
  }

  sweep(): void {
    this.sweeper.run();
  }

  stopSweeping(): void {
    this.sweeper.stop();
    this.announce.connectFailureSummaries(performance.now(), true);
  }
}
