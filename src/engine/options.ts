// What a listener and the engine can be told, with the defaults a user gets when silent.

export interface TargetAddress {
  /** An IP literal or a name resolved at connect time. */
  host: string;
  port: number;
}

/** One of a forward listener's upstreams. */
export interface UpstreamTarget extends TargetAddress {
  /** Share of new connections relative to the other targets (1–100). */
  weight?: number;
}

export type BalancePolicy = 'round-robin' | 'least-connections' | 'random-two';

/** Health of a listener's targets (upstreams.ts). */
export interface HealthConfig {
  /** Consecutive connect failures that eject a target for a cool-down (0: never). */
  failures?: number;
  /** The first cool-down; each consecutive ejection doubles it, up to maxEjectMs. */
  ejectMs?: number;
  maxEjectMs?: number;
  /** Active checks: a TCP connect to each target every intervalMs (health-check.ts). */
  check?: HealthCheckConfig | null;
}

export interface HealthCheckConfig {
  intervalMs?: number;
  /** A check that has not connected by then failed. */
  timeoutMs?: number;
  /** Consecutive good checks that bring a down target up, and failed ones that take it down. */
  rise?: number;
  fall?: number;
}

export const HEALTH_DEFAULTS = {
  failures: 3,
  ejectMs: 10_000,
  maxEjectMs: 60_000,
  check: null,
} as const;

export const CHECK_DEFAULTS = { intervalMs: 5000, timeoutMs: 2000, rise: 2, fall: 3 } as const;

export interface ListenerConfig {
  host: string;
  port: number;
  mode: 'echo' | 'forward';
  /** Forward mode: the one upstream (or the first of `targets`). */
  target?: TargetAddress;
  /** Forward mode: several upstreams, balanced by `balance` (target is then the first). */
  targets?: UpstreamTarget[];
  balance?: BalancePolicy;
  health?: HealthConfig;
  /** AcceptEx operations kept posted. */
  acceptDepth?: number;
  /** Connections at once; what happens to more is `onLimit`. */
  maxConnections?: number;
  /**
   * At the limit: 'wait' posts no accept, so new clients wait in the kernel backlog until a
   * connection ends; 'reset' keeps accepting and resets the surplus at once.
   */
  onLimit?: 'wait' | 'reset';
  /** Close a connection after this long without traffic (0 = never). */
  idleTimeoutMs?: number;
  /**
   * Bytes that must arrive (from either peer) in each idleTimeoutMs window; fewer closes the
   * connection (1 = any traffic keeps it open; more = a trickling slowloris client is cut off).
   */
  idleMinBytes?: number;
  /**
   * A graceful close (API, idle or too-slow timeout) stops reading and delivers what was read;
   * what is still undelivered after this long is reset (0 = no limit).
   */
  closeTimeoutMs?: number;
  /** Give up on an upstream that does not accept within this time. */
  connectTimeoutMs?: number;
  backlog?: number;
  /**
   * Connections at once from one source IP (0 = no limit); more are reset right after accept,
   * before any read.
   */
  maxConnectionsPerSource?: number;
  /** CIDRs (IPv4, IPv6) of clients served; empty = every address. Checked right after accept. */
  allow?: string[];
  /** CIDRs of clients refused (reset right after accept); deny wins over allow. */
  deny?: string[];
  /** The PROXY protocol (proxy-protocol.ts): send a header upstream, take one from a balancer. */
  proxyProtocol?: ProxyProtocolConfig;
}

export interface ProxyProtocolConfig {
  /** Forward listeners: start each upstream connection with a header of this version. */
  send?: 'v1' | 'v2' | null;
  /** Require a header (v1 or v2) from each client before anything else is read or dialled. */
  accept?: boolean;
  /** Time a client has to send its whole header (ms). */
  timeoutMs?: number;
}

export const LISTENER_DEFAULTS = {
  acceptDepth: 32,
  maxConnections: 10_000,
  onLimit: 'wait',
  idleTimeoutMs: 300_000,
  idleMinBytes: 1,
  connectTimeoutMs: 10_000,
  closeTimeoutMs: 10_000,
  backlog: 511,
  maxConnectionsPerSource: 0,
  allow: [] as string[],
  deny: [] as string[],
  proxyProtocol: { send: null, accept: false, timeoutMs: 5000 } as ProxyProtocolConfig,
  balance: 'round-robin' as BalancePolicy,
  health: HEALTH_DEFAULTS as HealthConfig,
} as const;

export interface EngineConfig {
  /** Size of each I/O buffer; a relay direction holds at most one (bounded memory). */
  bufferSize?: number;
  /** Completions remembered per connection for GET /connections/{id}. */
  traceDepth?: number;
  /** Longest stretch spent completing inline results before yielding to the event loop. */
  inlineBudgetMs?: number;
  /** A buffered read pending this long is swapped for a bufferless wait (idle memory). */
  parkAfterMs?: number;
  /**
   * io_uring: bulk relay directions may splice through kernel pipes, up to this many pipes at
   * once (two descriptors each); 0 turns splicing off (every byte through buffers).
   */
  splicePipes?: number;
  /** Listeners at once (closing and draining ones count: they still hold sockets). */
  maxListeners?: number;
  /**
   * Connections at once across every listener; a client past it is reset right after accept,
   * before any read.
   */
  maxConnections?: number;
}

export const ENGINE_DEFAULTS = {
  bufferSize: 64 * 1024,
  traceDepth: 16,
  inlineBudgetMs: 4,
  parkAfterMs: 1000,
  splicePipes: 1024,
  maxListeners: 256,
  maxConnections: 16_384,
} as const;
