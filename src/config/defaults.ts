// The built-in defaults: the API's address, the echo listener a bare `keyport` starts, the
// backend, the access log's rotation. cli.ts shows them in its help text.
import type { Address } from './address.js';
import type { BackendChoice } from './backend.js';

export const DEFAULT_API: Readonly<Address> = Object.freeze({
  host: '127.0.0.1',
  port: 9180,
  family: 4,
});

export const DEFAULT_LISTENER: Readonly<{ address: Address; mode: 'echo' }> = Object.freeze({
  address: Object.freeze({ host: '127.0.0.1', port: 7007, family: 4 }),
  mode: 'echo',
});

export const DEFAULT_BACKEND: BackendChoice = 'auto';

/** The access log's rotation: a file rotates past maxBytes, and keep old files stay. */
export const ACCESS_LOG_DEFAULTS = { maxBytes: 10 * 1024 * 1024, keep: 5 } as const;
