// The API runs on the thread that runs the engine's completions. A client that loops over the
// views as fast as it can would otherwise take as much of that thread as it likes (two such
// clients cut the data plane's round trips by 85% at 15 000 connections). The API's share of
// the thread is metered with a token bucket: the work it does (handlers, page writes) is
// charged in milliseconds; the bucket refills at `share` of wall time and holds `burstMs`, so
// one request, or a status page's poll, is never slowed, while a sustained flood waits. The
// meter is work-conserving: while the data plane completes nothing (an idle engine, or 15 000
// idle connections), the bucket refills at full rate, so the API waits only when traffic does.
import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route is answered at once, never made to wait for the API's turn: a probe that waits
     * behind a flood of view requests would fail, and restart or unroute a healthy engine.
     */
    unmetered?: boolean;
  }
}

export interface ThreadShareOptions {
  /** Fraction of wall time the API may use under sustained load (0 < share ≤ 1). */
  share: number;
  /** Work the API may do at once after a quiet spell (ms). */
  burstMs: number;
}

/** 2%: a status page's poll and a scrape fit in it many times at 15 000 connections. */
export const DEFAULT_THREAD_SHARE: ThreadShareOptions = { share: 0.02, burstMs: 25 };

/** The data plane counts as idle once it has completed nothing for this long. */
const IDLE_AFTER_MS = 100;

export class ThreadShare {
  private tokens: number;
  private last = performance.now();
  /** Total ms the API was made to wait, and how many times (GET /healthz shows it). */
  waitedMs = 0;
  waits = 0;
  /** Total ms of the engine's thread charged to the API (its share, as used). */
  chargedMs = 0;

  private lastActivity: number;
  /** When the activity count last moved. */
  private activeAt = performance.now();

  /**
   * `activity`: a count that grows with the data plane's completions (not the heartbeat's);
   * once it has stood still for IDLE_AFTER_MS the API may use the whole thread.
   */
  constructor(
    readonly options: ThreadShareOptions,
    private readonly activity: (() => number) | null = null,
  ) {
    this.tokens = options.burstMs;
    this.lastActivity = activity?.() ?? 0;
  }

  private refill(): void {
    const now = performance.now();
    const { share, burstMs } = this.options;
    let rate = share;
    if (this.activity) {
      const a = this.activity();
      if (a !== this.lastActivity) {
        this.lastActivity = a;
        this.activeAt = now;
      } else if (now - this.activeAt > IDLE_AFTER_MS) rate = 1;
    }
    this.tokens = Math.min(burstMs, this.tokens + (now - this.last) * rate);
    this.last = now;
  }

  /** Ms to wait before the API may work again (0: now). */
  debtMs(): number {
    this.refill();
    return this.tokens >= 0 ? 0 : -this.tokens / this.options.share;
  }

  /**
   * Resolves once the bucket is out of debt. Waits in steps of at most 10 ms, so that the
   * traffic stopping meanwhile ends the wait early.
   */
  async turn(): Promise<void> {
    let waited = false;
    for (let wait = this.debtMs(); wait > 0; wait = this.debtMs()) {
      if (!waited) this.waits++;
      waited = true;
      const step = Math.min(Math.ceil(wait), 10);
      const t = performance.now();
      await new Promise((resolve) => setTimeout(resolve, step));
      this.waitedMs += performance.now() - t;
    }
  }

  charge(ms: number): void {
    this.refill();
    this.tokens -= ms;
    this.chargedMs += ms;
  }

  /** Runs `fn` and charges the time it took. */
  metered<T>(fn: () => T): T {
    const t = performance.now();
    try {
      return fn();
    } finally {
      this.charge(performance.now() - t);
    }
  }
}

/**
 * Every request but those to routes marked `unmetered` (the probes) waits for the API's turn
 * before its handler runs, and the time from its handler's start to its answer being ready is
 * charged (a page's write is charged per slice by shared/paced-body.ts).
 */
export function installThreadShare(app: FastifyInstance, share: ThreadShare): void {
  const started = new WeakMap<object, number>();
  app.addHook('onRequest', async (req) => {
    if (!req.routeOptions.config?.unmetered) await share.turn();
  });
  app.addHook('preHandler', async (req) => {
    started.set(req, performance.now());
  });
  app.addHook('onSend', async (req) => {
    const t = started.get(req);
    if (t !== undefined) share.charge(performance.now() - t);
  });
}
