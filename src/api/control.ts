/**
 * What the HTTP API needs from an engine. The engine implements this; the API never reaches
 * past it (and never calls FFI), so an engine may later live in a worker thread behind a proxy.
 * Grows as resources are added (connections, keys, ops, listeners, commands).
 */
export interface EngineControlLike {
  /** When the engine started, in ms since the epoch (Date.now()). Used for /healthz uptime. */
  readonly startedAt: number;
}
