// EngineControl: the only door from the API into the engine. It reads the engine into plain
// snapshot objects or JSON pages (no live references leak out) and carries the API's commands
// (start and stop listeners, close connections, cancel ops). What it reads is built in views/:
// the snapshots' shapes (schemas.ts, which the API documents), their building (snapshots.ts),
// the filtered pages (pages.ts) and the summaries (summaries.ts).

import type { CancelOutcome } from './cancel-op.js';
import type { Engine } from './engine.js';
import type { EventListener } from './events.js';
import { ListenError } from './listener-setup.js';
import type { ListenerConfig } from './options.js';
import type { Listener } from './relay/listener.js';
import type { PageWalk } from './views/fragments.js';
import { type ConnectionFilter, type OpFilter, type Page, Pages } from './views/pages.js';
import type {
  ConnectionDetailSnapshot,
  ConnectionSnapshot,
  ConnectionsSummary,
  ListenerSnapshot,
  OpsSummary,
  Readiness,
} from './views/schemas.js';
import { connectionSnapshot, listenerSnapshot, type OwnerIds } from './views/snapshots.js';
import { connectionsSummary, opsSummary, readiness } from './views/summaries.js';

export class EngineControl {
  private readonly ownerIds: OwnerIds;
  private readonly pages: Pages;

  constructor(private readonly engine: Engine) {
    this.ownerIds = (key) => engine.ownerIds(key);
    this.pages = new Pages(engine, this.ownerIds);
  }

  get startedAt(): number {
    return this.engine.startedAt;
  }

  /** Completions of the data plane so far (the heartbeat's are not counted): grows with traffic. */
  get dataPlaneCompletions(): number {
    return this.engine.stats.completions;
  }

  get backendName(): string {
    return this.engine.backend.name;
  }

  // ---- reads ----

  listeners(): ListenerSnapshot[] {
    return [...this.engine.listeners.values()].map((l) => this.listenerSnapshot(l));
  }

  listener(id: string): ListenerSnapshot | null {
    const l = this.engine.listeners.get(id);
    return l ? this.listenerSnapshot(l) : null;
  }

  private listenerSnapshot(l: Listener): ListenerSnapshot {
    return listenerSnapshot(l, this.engine.listenerConfig(l));
  }

  /** A page of connections in the order they opened (views/pages.ts). */
  connections(filter: ConnectionFilter): PageWalk {
    return this.pages.connections(filter);
  }

  /** Counts by listener and by state, and the `top` oldest and busiest connections. */
  connectionsSummary(top: number): ConnectionsSummary {
    return connectionsSummary(this.engine.connections.values(), top);
  }

  connection(id: string): ConnectionDetailSnapshot | null {
    const c = this.engine.connections.get(id);
    if (!c) return null;
    return { ...connectionSnapshot(c, performance.now()), trace: c.trace.entries() };
  }

  /** A page of the completion-key table in slot order. */
  keys(page: Page): PageWalk {
    return this.pages.keys(page);
  }

  /** A page of the in-flight ops matching the filter, in record-pool slot order. */
  ops(filter: OpFilter & Page): PageWalk {
    return this.pages.ops(filter);
  }

  /** Ops in flight by kind and age bucket, those older than `olderThanMs`, and the oldest. */
  opsSummary(oldest: number, olderThanMs?: number): OpsSummary {
    return opsSummary(this.engine.ops.records, this.ownerIds, oldest, olderThanMs);
  }

  readiness(): Readiness {
    return readiness(this.engine);
  }

  // ---- commands ----

  /** Starts a listener; throws ListenError (inUse = the port is taken) when it cannot bind. */
  async createListener(config: ListenerConfig): Promise<ListenerSnapshot> {
    return this.listenerSnapshot(await this.engine.addListener(config));
  }

  closeListener(
    id: string,
    mode: 'drain' | 'abort',
    deadlineMs: number | null,
  ): ListenerSnapshot | null {
    const l = this.engine.closeListener(id, mode, deadlineMs);
    return l ? this.listenerSnapshot(l) : null;
  }

  /** Whether listener `id` exists and still accepts (not closing, draining or closed). */
  isListening(id: string): boolean {
    return this.engine.listeners.get(id)?.state === 'listening';
  }

  /**
   * Drain-and-replace (a config reload changed a listener's options): the old listener stops
   * accepting and closes its listening socket (its accepts cancelled and completed first), then
   * the new one binds the same address. The old connections run on under the old options until
   * they end by themselves: no deadline, nothing is cut. Where the system refuses the address
   * while the old listener's connections live (Windows: SO_EXCLUSIVEADDRUSE), the bind is retried
   * for up to `retryMs`; if it still fails, ListenError (the address is then unserved).
   */
  async replaceListener(
    id: string,
    config: ListenerConfig,
    retryMs: number,
  ): Promise<ListenerSnapshot> {
    const old = this.engine.listeners.get(id);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    if (old) {
      this.engine.closeListener(id, 'drain', null);
      const end = Date.now() + 10_000;
      while (old.state === 'closing' && Date.now() < end) await sleep(5);
    }
    const until = Date.now() + retryMs;
    for (;;) {
      try {
        return await this.createListener(config);
      } catch (err) {
        if (!(err instanceof ListenError) || !err.inUse || Date.now() >= until) throw err;
        await sleep(50);
      }
    }
  }

  closeConnection(id: string, mode: 'graceful' | 'abort'): ConnectionSnapshot | null {
    const c = this.engine.closeConnection(id, mode);
    return c ? connectionSnapshot(c, performance.now()) : null;
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
