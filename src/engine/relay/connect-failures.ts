// The log of upstream connect failures (forward mode), rate-limited: an upstream that is down, or
// a machine out of ports, fails every forwarded connection, and at thousands a second one line
// each would flood the log. The first failure of each (listener, error) is logged at once; while
// more of the same come, one summary line per window (10 s) says how many were not logged. A
// window without any ends the episode: the next failure is logged at once again. Every failure
// is counted regardless (keyport_upstream_connect_failures_total{listener,error}).

/** One summary due: `suppressed` failures of this kind went unlogged over the last `windowMs`. */
export interface FailureSummary {
  listener: string;
  target: string;
  error: string;
  suppressed: number;
  windowMs: number;
}

interface Episode {
  listener: string;
  target: string;
  error: string;
  windowStart: number;
  suppressed: number;
}

export const FAILURE_LOG_WINDOW_MS = 10_000;

export class ConnectFailureLog {
  private readonly episodes = new Map<string, Episode>();

  constructor(private readonly windowMs = FAILURE_LOG_WINDOW_MS) {}

  /** Notes one failure; true when it is to be logged now (the first of its episode). */
  note(listener: string, target: string, error: string, now: number): boolean {
    const id = `${listener}\u0000${error}`;
    const e = this.episodes.get(id);
    if (e) {
      e.suppressed++;
      return false;
    }
    this.episodes.set(id, { listener, target, error, windowStart: now, suppressed: 0 });
    return true;
  }

  /** The summaries whose window has ended (call it often: the engine's sweep, every 250 ms). */
  due(now: number): FailureSummary[] {
    return this.take(now, false);
  }

  /** Every failure not logged yet, window ended or not (at shutdown). */
  flush(now: number): FailureSummary[] {
    return this.take(now, true);
  }

  private take(now: number, all: boolean): FailureSummary[] {
    const out: FailureSummary[] = [];
    for (const [id, e] of this.episodes) {
      if (!all && now - e.windowStart < this.windowMs) continue;
      if (e.suppressed === 0) {
        this.episodes.delete(id); // a quiet window: the episode is over
        continue;
      }
      out.push({
        listener: e.listener,
        target: e.target,
        error: e.error,
        suppressed: e.suppressed,
        windowMs: now - e.windowStart,
      });
      e.suppressed = 0;
      e.windowStart = now;
    }
    return out;
  }
}

/** A forward target as the log shows it: host:port, an IPv6 literal in brackets. */
export function formatTarget(t: { host: string; port: number } | undefined): string {
  if (!t) return '';
  return `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}
