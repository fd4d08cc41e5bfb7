/**
 * What the HTTP API needs from an engine: the engine's EngineControl, reached only through
 * these members (snapshots and commands). The API never reaches past it and never calls
 * FFI, so an engine may later live in a worker thread behind a proxy with the same shape.
 */

import type { ConfigLifecycle } from '../config/lifecycle.js';
import type { EngineControl } from '../engine/control.js';

/** What the HTTP API needs from the configuration's keeper (GET /config, reload, the state file). */
export type ConfigControlLike = Pick<
  ConfigLifecycle,
  'effective' | 'reload' | 'apiCreated' | 'apiClosed' | 'serial'
>;

export type EngineControlLike = Pick<
  EngineControl,
  | 'startedAt'
  | 'backendName'
  | 'listeners'
  | 'listener'
  | 'connections'
  | 'connection'
  | 'connectionsSummary'
  | 'keys'
  | 'ops'
  | 'opsSummary'
  | 'readiness'
  | 'createListener'
  | 'closeListener'
  | 'closeConnection'
  | 'cancelOp'
  | 'subscribe'
>;
