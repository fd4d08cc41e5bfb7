// The built-in defaults: the API's address, the echo listener a bare `keyport` starts, the
// backend. Type-only imports: cli.ts imports the values below for its help text.
import type { Address } from './address.js';
import type { BackendChoice, ListenerSpec } from './cli.js';

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
