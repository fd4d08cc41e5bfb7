// Settings from the config file, the environment and the command line (CLI over environment
// over file over defaults). Any error stops start-up with the path of the bad field.
import { readFileSync } from 'node:fs';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { EngineConfig, ListenerConfig } from '../engine/options.js';
import { type Address, AddressError, formatAddress, parseAddress } from './address.js';
import type { BackendChoice, CliOptions, ListenerSpec } from './cli.js';
import { ConfigFile, type ListenerInput, LOG_LEVELS } from './config-schema.js';
import { DEFAULT_API, DEFAULT_BACKEND, DEFAULT_LISTENER } from './defaults.js';

export class ConfigError extends Error {}

export interface Settings {
  api: Address;
  /** The bearer token, or null when none is configured. Never logged. */
  token: string | null;
  protect: 'commands' | 'all';
  bodyLimitBytes: number;
  requestTimeoutMs: number;
  backend: BackendChoice;
  logLevel: (typeof LOG_LEVELS)[number];
  shutdownDeadlineMs: number;
  engine: EngineConfig;
  listeners: ListenerConfig[];
}

const configCheck = TypeCompiler.Compile(ConfigFile);

function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `config file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path}: not valid JSON (${(err as Error).message})`);
  }
  const first = configCheck.Errors(data).First();
  if (first) {
    const where = first.path || '/';
    throw new ConfigError(`config file ${path}: ${where}: ${first.message}`);
  }
  return data as ConfigFile;
}

function readToken(path: string, what: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(
      `${what} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  if (token.length < 16)
    throw new ConfigError(`${what} ${path}: the token must be at least 16 characters`);
  return token;
}

function address(input: string, where: string, allowZero: boolean): Address {
  try {
    return parseAddress(input, { allowZero });
  } catch (err) {
    if (err instanceof AddressError) throw new ConfigError(`${where}: ${err.message}`);
    throw err;
  }
}

/** A listener as written in a config file or a POST /listeners body → the engine's config. */
export function listenerFromInput(input: ListenerInput, where: string): ListenerConfig {
  const a = address(input.address, `${where}/address`, true);
  const base = {
    host: a.host,
    port: a.port,
    ...(input.acceptDepth !== undefined ? { acceptDepth: input.acceptDepth } : {}),
    ...(input.maxConnections !== undefined ? { maxConnections: input.maxConnections } : {}),
    ...(input.onLimit !== undefined ? { onLimit: input.onLimit } : {}),
    ...(input.idleMinBytes !== undefined ? { idleMinBytes: input.idleMinBytes } : {}),
    ...(input.closeTimeoutMs !== undefined ? { closeTimeoutMs: input.closeTimeoutMs } : {}),
    ...(input.idleTimeoutMs !== undefined ? { idleTimeoutMs: input.idleTimeoutMs } : {}),
    ...(input.connectTimeoutMs !== undefined ? { connectTimeoutMs: input.connectTimeoutMs } : {}),
  };
  if (input.mode === 'echo') {
    if (input.target !== undefined)
      throw new ConfigError(`${where}/target: only a forward listener has a target`);
    return { ...base, mode: 'echo' };
  }
  if (input.target === undefined)
    throw new ConfigError(`${where}/target: a forward listener needs a target HOST:PORT`);
  const t = address(input.target, `${where}/target`, false);
  return { ...base, mode: 'forward', target: { host: t.host, port: t.port } };
}

function listenerFromSpec(spec: ListenerSpec): ListenerConfig {
  const base = { host: spec.address.host, port: spec.address.port };
  return spec.mode === 'echo'
    ? { ...base, mode: 'echo' }
    : { ...base, mode: 'forward', target: { host: spec.target.host, port: spec.target.port } };
}

/**
 * Environment: KEYPORT_API, KEYPORT_BACKEND, KEYPORT_LOG_LEVEL, KEYPORT_TOKEN_FILE, KEYPORT_TOKEN
 * (the token itself, for containers' secret injection; never a CLI flag, which would show in
 * process lists), KEYPORT_CONFIG (a config file when --config is not given).
 */
export function loadSettings(cli: CliOptions, env: NodeJS.ProcessEnv = process.env): Settings {
  const configPath = cli.config ?? env.KEYPORT_CONFIG;
  const file: ConfigFile = configPath ? readConfigFile(configPath) : {};

  let api = file.api?.address
    ? address(file.api.address, `config file ${configPath}: /api/address`, true)
    : DEFAULT_API;
  if (env.KEYPORT_API) api = address(env.KEYPORT_API, 'KEYPORT_API', true);
  if (cli.api) api = cli.api;

  let backend: BackendChoice = file.backend ?? DEFAULT_BACKEND;
  if (env.KEYPORT_BACKEND) {
    if (!['auto', 'iocp', 'uring'].includes(env.KEYPORT_BACKEND)) {
      throw new ConfigError(`KEYPORT_BACKEND=${env.KEYPORT_BACKEND}: must be auto, iocp or uring`);
    }
    backend = env.KEYPORT_BACKEND as BackendChoice;
  }
  if (cli.backend) backend = cli.backend;

  let logLevel = file.logLevel ?? 'info';
  if (env.KEYPORT_LOG_LEVEL) {
    if (!(LOG_LEVELS as readonly string[]).includes(env.KEYPORT_LOG_LEVEL)) {
      throw new ConfigError(
        `KEYPORT_LOG_LEVEL=${env.KEYPORT_LOG_LEVEL}: must be one of ${LOG_LEVELS.join(', ')}`,
      );
    }
    logLevel = env.KEYPORT_LOG_LEVEL as Settings['logLevel'];
  }

  let token: string | null = null;
  if (file.api?.tokenFile)
    token = readToken(file.api.tokenFile, `config file ${configPath}: /api/tokenFile`);
  if (env.KEYPORT_TOKEN_FILE) token = readToken(env.KEYPORT_TOKEN_FILE, 'KEYPORT_TOKEN_FILE');
  if (env.KEYPORT_TOKEN) {
    if (env.KEYPORT_TOKEN.length < 16)
      throw new ConfigError('KEYPORT_TOKEN: the token must be at least 16 characters');
    token = env.KEYPORT_TOKEN;
  }

  // --listener flags replace the file's listeners; with neither, the built-in default applies.
  let listeners: ListenerConfig[];
  if (cli.listeners.length > 0) listeners = cli.listeners.map(listenerFromSpec);
  else if (file.listeners)
    listeners = file.listeners.map((l, i) =>
      listenerFromInput(l, `config file ${configPath}: /listeners/${i}`),
    );
  else listeners = configPath ? [] : [listenerFromSpec(DEFAULT_LISTENER)];

  const engine: EngineConfig = {};
  if (file.engine?.bufferSize) engine.bufferSize = file.engine.bufferSize;
  if (file.engine?.traceDepth) engine.traceDepth = file.engine.traceDepth;
  if (file.engine?.parkAfterMs) engine.parkAfterMs = file.engine.parkAfterMs;

  return {
    api,
    token,
    protect: file.api?.protect ?? 'commands',
    bodyLimitBytes: file.api?.bodyLimitBytes ?? 16 * 1024,
    requestTimeoutMs: file.api?.requestTimeoutMs ?? 10_000,
    backend,
    logLevel,
    shutdownDeadlineMs: file.shutdownDeadlineMs ?? 5000,
    engine,
    listeners,
  };
}

/** A non-loopback API without a token would let anyone who reaches it change the listeners. */
export function checkApiExposure(s: Settings): void {
  const loopback =
    s.api.host === 'localhost' || s.api.host === '::1' || s.api.host.startsWith('127.');
  if (!loopback && !s.token) {
    throw new ConfigError(
      `refusing to serve the API on ${formatAddress(s.api)} without a token: anyone who can reach it could ` +
        'change listeners and close connections. Set KEYPORT_TOKEN_FILE (or api.tokenFile in the config file), ' +
        'or bind the API to 127.0.0.1.',
    );
  }
}
