// Shutdown (DESIGN §1.5): stop accepting, let live connections run to their natural end, and at
// the deadline reset what is left; done when every op's completion has been dequeued. Two ways:
// asynchronously (signals, the API), or at once on this thread for a Windows console handler,
// which must finish before it returns (the system ends the process then).
import type { Backend } from './backend.js';

/** What a drain needs of the engine. */
export interface Drainable {
  readonly backend: Backend;
  /** Closes every listener and stops the heartbeat; new connections are refused. */
  stopAccepting(): void;
  /** No op in flight (but the heartbeat's), no connection and no listener left. */
  idle(): boolean;
  abortAll(reason: string): void;
  /** Ops that finished inline and wait in the engine's queue. */
  inlineWaiting(): boolean;
  drainInline(): void;
  sweep(): void;
  /** The sweep's timer stops and the last connect-failure summaries are logged. */
  stopSweeping(): void;
}

const AFTER_RESET_MS = 2000;

export async function drain(e: Drainable, deadlineMs: number): Promise<boolean> {
  e.stopAccepting();
  const drained = await waitIdle(e, deadlineMs);
  if (!drained) {
    e.abortAll('shutdown deadline');
    await waitIdle(e, AFTER_RESET_MS);
  }
  e.stopSweeping();
  await e.backend.stop();
  return drained;
}

/**
 * The same drain, done before it returns: completions are dequeued on this thread
 * (backend.pumpSync) and the sweep run by hand, since the event loop cannot turn. For a Windows
 * console handler (`docker stop`, the console closed), and also when an asynchronous shutdown is
 * already under way (a Ctrl+C came first): it could only finish after the handler returned,
 * which is too late. Nothing is left to run afterwards but process.exit().
 */
export function drainNow(e: Drainable, deadlineMs: number): boolean {
  const pump = e.backend.pumpSync?.bind(e.backend);
  if (!pump) throw new Error(`the ${e.backend.name} backend cannot drain synchronously`);
  e.stopAccepting();
  const runUntil = (end: number) => {
    for (let now = performance.now(); !e.idle() && now < end; now = performance.now()) {
      // Ops that finished inline wait for a setImmediate that cannot run: complete them here,
      // and do not wait on the port while any is queued.
      const inline = e.inlineWaiting();
      if (inline) e.drainInline();
      pump(inline ? 0 : Math.min(50, end - now));
      e.sweep();
    }
    return e.idle();
  };
  const drained = runUntil(performance.now() + deadlineMs);
  if (!drained) {
    e.abortAll('shutdown deadline');
    runUntil(performance.now() + AFTER_RESET_MS);
  }
  e.stopSweeping();
  return drained;
}

async function waitIdle(e: Drainable, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!e.idle()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
