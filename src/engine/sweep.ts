// The sweep, four times a second: the deadlines no completion reports (an upstream connect that
// takes too long, a graceful close that cannot deliver, an idle or too-slow client) and the
// parking of idle buffered reads, which gives their buffers back (DESIGN §1.4).
import type { ResolvedListenerConfig } from './core.js';
import type { Connection } from './relay/connection.js';
import type { Listener } from './relay/listener.js';

const SWEEP_MS = 250;

export interface SweepTarget {
  readonly connections: ReadonlyMap<string, Connection>;
  listenerConfig(listener: Listener): ResolvedListenerConfig;
}

export class Sweep {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly engine: SweepTarget,
    /** A buffered read pending this long is parked. */
    private readonly parkAfterMs: number,
    /** Also due each sweep (the summaries of upstream connect failures). */
    private readonly alsoDue: (now: number) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.run(), SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  run(): void {
    const now = performance.now();
    this.alsoDue(now);
    const parkBefore = now - this.parkAfterMs;
    for (const conn of this.engine.connections.values()) {
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
      const cfg = this.engine.listenerConfig(conn.listener);
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
      for (const d of conn.directions) d.park(parkBefore);
    }
  }
}
