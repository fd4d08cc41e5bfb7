// A forward listener's upstreams (targets): which one a new client connection is sent to
// (`balance`), and which are fit to be sent to (health). Passive health: `failures`
// consecutive connect failures eject a target for a cool-down that doubles with each ejection
// in a row (ejectMs up to maxEjectMs); after the cool-down the target is tried again, and its
// first connect decides: success makes it up (the backoff starts over), failure ejects it for
// twice as long. Active checks (health-check.ts) may also mark a target down. When no target is
// fit, every one is tried anyway: a try costs a connect, a refusal costs the client.

import type { BalancePolicy, HealthConfig, UpstreamTarget } from '../options.js';
import { CHECK_DEFAULTS, HEALTH_DEFAULTS } from '../options.js';
import { formatTarget } from './connect-failures.js';

export type UpstreamState = 'up' | 'ejected' | 'down';

/** What the active checks know of a target. */
export class CheckState {
  /** null until the first check has answered. */
  up: boolean | null = null;
  /** The last check's outcome, and how many in a row had it. */
  lastOk: boolean | null = null;
  streak = 0;
  checksTotal = 0;
  failuresTotal = 0;
  lastError: string | null = null;
  lastCheckAt: number | null = null;
}

export class Upstream {
  /** HOST:PORT as configured (IPv6 in brackets): its name in the API, logs and metrics. */
  readonly label: string;
  readonly weight: number;
  /** Client connections sent to it now (connecting or open). */
  connections = 0;
  connectionsTotal = 0;
  connectFailuresTotal = 0;
  consecutiveFailures = 0;
  /** performance.now() until which it is ejected (0: not), and the same as a wall time. */
  ejectedUntil = 0;
  ejectedUntilWall = 0;
  /** Ejections in a row (without a connect succeeding in between): the backoff's exponent. */
  ejectionsInRow = 0;
  ejectionsTotal = 0;
  lastError: string | null = null;
  lastErrorAt: number | null = null;
  /** Smooth weighted round-robin's running weight. */
  current = 0;
  readonly check: CheckState | null;

  constructor(
    readonly target: UpstreamTarget,
    checked: boolean,
  ) {
    this.label = formatTarget(target);
    this.weight = target.weight ?? 1;
    this.check = checked ? new CheckState() : null;
  }

  state(now: number): UpstreamState {
    if (this.ejectedUntil > now) return 'ejected';
    if (this.check?.up === false) return 'down';
    return 'up';
  }

  /** Connections per unit of weight: what least-connections and random-two compare. */
  get load(): number {
    return this.connections / this.weight;
  }
}

export interface UpstreamsEvents {
  ejected(u: Upstream, error: string, forMs: number): void;
  back(u: Upstream): void;
}

export class Upstreams {
  readonly list: Upstream[];
  readonly health: Required<Omit<HealthConfig, 'check'>>;
  readonly checks: Required<NonNullable<HealthConfig['check']>> | null;
  /** Where least-connections starts looking, so that equal loads take turns. */
  private cursor = 0;

  constructor(
    targets: UpstreamTarget[],
    readonly policy: BalancePolicy,
    health: HealthConfig | undefined,
    private readonly events: UpstreamsEvents | null = null,
    private readonly random: () => number = Math.random,
  ) {
    this.health = {
      failures: health?.failures ?? HEALTH_DEFAULTS.failures,
      ejectMs: health?.ejectMs ?? HEALTH_DEFAULTS.ejectMs,
      maxEjectMs: health?.maxEjectMs ?? HEALTH_DEFAULTS.maxEjectMs,
    };
    this.checks = health?.check ? { ...CHECK_DEFAULTS, ...health.check } : null;
    this.list = targets.map((t) => new Upstream(t, this.checks !== null));
  }

  /**
   * The target for a new connection, among those it has not tried yet: the fit ones by the
   * policy; when none is fit, any (panic); null when every one was tried.
   */
  pick(tried: readonly Upstream[], now = performance.now()): Upstream | null {
    if (this.list.length === 1) {
      // One target (a plain `target`): nothing to choose, not even in panic.
      const only = this.list[0] as Upstream;
      return tried.includes(only) ? null : only;
    }
    const left = this.list.filter((u) => !tried.includes(u));
    if (left.length === 0) return null;
    const fit = left.filter((u) => u.state(now) === 'up');
    const from = fit.length > 0 ? fit : left;
    if (from.length === 1) return from[0] as Upstream;
    switch (this.policy) {
      case 'least-connections':
        return this.leastLoaded(from);
      case 'random-two':
        return this.betterOfTwo(from);
      default:
        return this.smoothRoundRobin(from);
    }
  }

  /** nginx's smooth weighted round-robin: weights 5,1,1 give a a b a c a a, not a a a a a b c. */
  private smoothRoundRobin(from: Upstream[]): Upstream {
    let total = 0;
    let best = from[0] as Upstream;
    for (const u of from) {
      u.current += u.weight;
      total += u.weight;
      if (u.current > best.current) best = u;
    }
    best.current -= total;
    return best;
  }

  private leastLoaded(from: Upstream[]): Upstream {
    const start = this.cursor++ % from.length;
    let best = from[start] as Upstream;
    for (let i = 1; i < from.length; i++) {
      const u = from[(start + i) % from.length] as Upstream;
      if (u.load < best.load) best = u;
    }
    return best;
  }

  /** Power of two choices: two weighted-random targets, the less loaded of them. */
  private betterOfTwo(from: Upstream[]): Upstream {
    const a = this.weightedRandom(from);
    const b = this.weightedRandom(from.filter((u) => u !== a));
    return b.load < a.load ? b : a;
  }

  private weightedRandom(from: Upstream[]): Upstream {
    let total = 0;
    for (const u of from) total += u.weight;
    let r = this.random() * total;
    for (const u of from) {
      r -= u.weight;
      if (r < 0) return u;
    }
    return from[from.length - 1] as Upstream;
  }

  /** A client connection is sent to `u` (its connect starts). */
  attach(u: Upstream): void {
    u.connections++;
  }

  /** That connection is gone, or moved on to another target. */
  detach(u: Upstream): void {
    u.connections--;
  }

  connected(u: Upstream): void {
    u.connectionsTotal++;
    u.consecutiveFailures = 0;
    // Reached while ejected (every target was out, so all were tried): it is up again now.
    u.ejectedUntil = 0;
    u.ejectedUntilWall = 0;
    if (u.ejectionsInRow > 0) {
      u.ejectionsInRow = 0;
      this.events?.back(u);
    }
  }

  /** Every address of `u` failed to connect (or timed out). */
  connectFailed(u: Upstream, error: string, now = performance.now()): void {
    u.connectFailuresTotal++;
    u.consecutiveFailures++;
    u.lastError = error;
    u.lastErrorAt = Date.now();
    const { failures, ejectMs, maxEjectMs } = this.health;
    if (failures === 0 || u.ejectedUntil > now) return;
    // Back from a cool-down with no success since: one failure is enough.
    if (u.consecutiveFailures >= failures || u.ejectionsInRow > 0) {
      const forMs = Math.min(maxEjectMs, ejectMs * 2 ** Math.min(u.ejectionsInRow, 20));
      u.ejectionsInRow++;
      u.ejectionsTotal++;
      u.ejectedUntil = now + forMs;
      u.ejectedUntilWall = Date.now() + forMs;
      this.events?.ejected(u, error, forMs);
    }
  }
}
