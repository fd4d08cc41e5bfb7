// The API runs on the thread that runs the engine's completions. A client that loops over the
// views as fast as it can would otherwise take as much of that thread as it likes (two such
// clients cut the data plane's round trips by 85% at 15 000 connections). The API's share of
// the thread is metered with a token bucket: the work it does (handlers, page writes) is
// charged in milliseconds; the bucket refills at `share` of wall time and holds `burstMs`, so
// one request, or a status page's poll, is never slowed, while a sustained flood waits.
import type { FastifyInstance } from 'fastify';

export interface ThreadShareOptions {
  /** Fraction of wall time the API may use under sustained load (0 < share ≤ 1). */
  share: number;
  /** Work the API may do at once after a quiet spell (ms). */
  burstMs: number;
}

/** 2%: a status page's poll and a scrape fit in it many times at 15 000 connections. */
export const DEFAULT_THREAD_SHARE: ThreadShareOptions = { share: 0.02, burstMs: 25 };

export class ThreadShare {
  private tokens: number;
  private last = performance.now();
  /** Total ms the API was made to wait, and how many times (GET /healthz shows it). */
  waitedMs = 0;
  waits = 0;

  constructor(readonly options: ThreadShareOptions) {
    this.tokens = options.burstMs;
  }

  private refill(): void {
    const now = performance.now();
    const { share, burstMs } = this.options;
    this.tokens = Math.min(burstMs, this.tokens + (now - this.last) * share);
    this.last = now;
  }

  /** Ms to wait before the API may work again (0: now). */
  debtMs(): number {
    this.refill();
    return this.tokens >= 0 ? 0 : -this.tokens / this.options.share;
  }

  /** Resolves once the bucket is out of debt. */
  async turn(): Promise<void> {
    for (let wait = this.debtMs(); wait > 0; wait = this.debtMs()) {
      this.waits++;
      this.waitedMs += wait;
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(wait)));
    }
  }

  charge(ms: number): void {
    this.refill();
    this.tokens -= ms;
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

/** Probes are answered at once: a readiness probe that waits behind a flood would fail. */
const UNMETERED = new Set(['/healthz', '/readyz']);

/**
 * Every other request waits for the API's turn before it is routed, and the time from its
 * handler's start to its answer being ready is charged (a page's write is charged per slice
 * by paced-body.ts).
 */
export function installThreadShare(app: FastifyInstance, share: ThreadShare): void {
  const started = new WeakMap<object, number>();
  app.addHook('onRequest', async (req) => {
    if (!UNMETERED.has(req.url)) await share.turn();
  });
  app.addHook('preHandler', async (req) => {
    started.set(req, performance.now());
  });
  app.addHook('onSend', async (req) => {
    const t = started.get(req);
    if (t !== undefined) share.charge(performance.now() - t);
  });
}
