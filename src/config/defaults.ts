import type { Address } from './address.js';
// Type-only: cli.ts imports the values below for its help text.
import type { BackendChoice, CliOptions, ListenerSpec } from './cli.js';

export const DEFAULT_API: Readonly<Address> = Object.freeze({
  host: '127.0.0.1',
  port: 9180,
  family: 4,
});

export const DEFAULT_LISTENER: Readonly<ListenerSpec> = Object.freeze({
  address: Object.freeze({ host: '127.0.0.1', port: 7007, family: 4 }),
  mode: 'echo',
});

export const DEFAULT_BACKEND: BackendChoice = 'auto';

/** Options with defaults applied: what start-up acts on. */
export interface ResolvedOptions {
  api: Address;
  listeners: ListenerSpec[];
  backend: BackendChoice;
  /** The config file to load (--config), if any. */
  config?: string;
}

/**
 * Apply built-in defaults. The default echo listener applies only when neither --listener nor
 * --config was given: a config file may define its own listeners.
 * Returns fresh objects, so callers may mutate them without touching the defaults.
 */
export function resolveCli(opts: CliOptions): ResolvedOptions {
  const listeners =
    opts.listeners.length > 0 || opts.config !== undefined
      ? opts.listeners.map(cloneListener)
      : [cloneListener(DEFAULT_LISTENER)];
  const resolved: ResolvedOptions = {
    api: { ...(opts.api ?? DEFAULT_API) },
    listeners,
    backend: opts.backend ?? DEFAULT_BACKEND,
  };
  if (opts.config !== undefined) resolved.config = opts.config;
  return resolved;
}

function cloneListener(spec: Readonly<ListenerSpec>): ListenerSpec {
  return spec.mode === 'echo'
    ? { address: { ...spec.address }, mode: 'echo' }
    : { address: { ...spec.address }, mode: 'forward', target: { ...spec.target } };
}
