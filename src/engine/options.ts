// What a listener and the engine can be told, with the defaults a user gets when silent.

export interface TargetAddress {
  /** An IP literal or a name resolved at connect time. */
  host: string;
  port: number;
}

export interface ListenerConfig {
  host: string;
  port: number;
  mode: 'echo' | 'forward';
  target?: TargetAddress;
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
