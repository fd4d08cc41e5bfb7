// Settings from the config file, the environment and the command line (CLI over environment
// over file over defaults). Any error stops start-up with the path of the bad field.
import { readFileSync } from 'node:fs';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { EngineConfig, ListenerConfig } from '../engine/options.js';
import { ENGINE_DEFAULTS } from '../engine/options.js';
import { type Address, formatAddress } from './address.js';
import type { BackendChoice } from './backend.js';
import type { CliOptions, ListenerSpec } from './cli.js';
import { ConfigError } from './config-error.js';
import { ACCESS_LOG_DEFAULTS, DEFAULT_API, DEFAULT_BACKEND, DEFAULT_LISTENER } from './defaults.js';
import { readJsonFile } from './json-file.js';
import { address, inputFromSpec, listenerFromInput } from './listener-input.js';
import {
  isLoopbackIp,
  loopbackByAddress,
  parseTargetRule,
  type Resolver,
  systemResolver,
  type TargetRule,
} from './netrules.js';
import { ConfigFile, type ListenerInput, LOG_LEVELS } from './schema.js';

export interface Settings {
  api: Address;
  /** Where the API address came from (the flag, variable or config field), for error messages. */
  apiSource: string;
  /** The bearer token, or null when none is configured. Never logged. */
  token: string | null;
  protect: 'commands' | 'all';
  /** Host header names accepted besides loopback and the bound address (lower case). */
  allowedHosts: string[];
  /** Forward targets allowed to POST /listeners; null = anything (but the API itself). */
  allowTargets: TargetRule[] | null;
  maxEventClients: number;
  /** The API's share of the engine's thread under sustained load (api.threadShare); null: the API's default. */
  threadShare: number | null;
  /** The API server's own connections at once. */
  maxApiConnections: number;
  bodyLimitBytes: number;
  requestTimeoutMs: number;
  backend: BackendChoice;
  logLevel: (typeof LOG_LEVELS)[number];
  shutdownDeadlineMs: number;
  engine: EngineConfig;
  listeners: ListenerConfig[];
  /** The listeners as written (config file entries, or --listener flags as the same shape). */
  listenerInputs: ListenerInput[];
  /** Where the listeners came from: a reload only changes 'config' ones. */
  listenerSource: 'config' | 'cli' | 'default';
  /** The config file's path, or null when keyport runs from flags and environment only. */
  configPath: string | null;
  /** Where API-created listeners are kept (--state-file over stateFile), or null. */
  stateFile: string | null;
  /** Where the token came from (a file path or KEYPORT_TOKEN), never the token itself. */
  tokenSource: string | null;
  /** 'off', 'stdout' or a file; `source` names the flag or field it came from, for errors. */
  accessLog: { to: string; maxBytes: number; keep: number; source: string };
}

const configCheck = TypeCompiler.Compile(ConfigFile);

function readConfigFile(path: string): ConfigFile {
  return readJsonFile(path, configCheck, { what: 'config file' });
}

/**
 * A token as read (file or variable) → the token: surrounding whitespace and newlines trimmed
 * (`echo secret > file` adds one), then it must be visible ASCII (what a Bearer header carries)
 * and at least 16 characters. `source` names where it came from.
 */
export function checkToken(raw: string, source: string): string {
  const token = raw.trim();
  if (token.length === 0) throw new ConfigError(`${source}: the token is empty`);
  const bad = /[^\x21-\x7e]/.exec(token);
  if (bad) {
    const code = bad[0].codePointAt(0)?.toString(16).padStart(4, '0');
    throw new ConfigError(
      `${source}: the token must be visible ASCII characters only (found U+${code} at position ${bad.index + 1}; no spaces or control characters inside it)`,
    );
  }
  if (token.length < 16)
    throw new ConfigError(
      `${source}: the token must be at least 16 characters (it has ${token.length})`,
    );
  return token;
}

function readToken(path: string, what: string): string {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${what} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  return checkToken(raw, `${what} ${path}`);
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
  let apiSource = file.api?.address ? `config file ${configPath}: /api/address` : 'the default';
  if (env.KEYPORT_API) {
    api = address(env.KEYPORT_API, 'KEYPORT_API', true);
    apiSource = 'KEYPORT_API';
  }
  if (cli.api) {
    api = cli.api;
    apiSource = '--api';
  }

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
  let tokenSource: string | null = null;
  if (file.api?.tokenFile) {
    token = readToken(file.api.tokenFile, `config file ${configPath}: /api/tokenFile`);
    tokenSource = file.api.tokenFile;
  }
  if (env.KEYPORT_TOKEN_FILE) {
    token = readToken(env.KEYPORT_TOKEN_FILE, 'KEYPORT_TOKEN_FILE');
    tokenSource = env.KEYPORT_TOKEN_FILE;
  }
  if (env.KEYPORT_TOKEN !== undefined && env.KEYPORT_TOKEN !== '') {
    token = checkToken(env.KEYPORT_TOKEN, 'KEYPORT_TOKEN');
    tokenSource = 'KEYPORT_TOKEN';
  }

  let allowTargets: TargetRule[] | null = null;
  if (file.api?.allowTargets) {
    allowTargets = file.api.allowTargets.map((text, i) => {
      try {
        return parseTargetRule(text);
      } catch (err) {
        throw new ConfigError(
          `config file ${configPath}: /api/allowTargets/${i}: ${(err as Error).message}`,
        );
      }
    });
  }
  const allowedHosts = (file.api?.allowedHosts ?? []).map((h) =>
    h.toLowerCase().replace(/\.$/, ''),
  );

  // --listener flags replace the file's listeners; with neither, the built-in default applies.
  let listeners: ListenerConfig[];
  let listenerInputs: ListenerInput[];
  let listenerSource: Settings['listenerSource'] = 'config';
  if (cli.listeners.length > 0) {
    listeners = cli.listeners.map(listenerFromSpec);
    listenerInputs = cli.listeners.map(inputFromSpec);
    listenerSource = 'cli';
  } else if (file.listeners) {
    listeners = file.listeners.map((l, i) =>
      listenerFromInput(l, `config file ${configPath}: /listeners/${i}`),
    );
    listenerInputs = file.listeners.map((l) => ({ ...l }));
  } else if (configPath) {
    listeners = [];
    listenerInputs = [];
  } else {
    listeners = [listenerFromSpec(DEFAULT_LISTENER)];
    listenerInputs = [inputFromSpec(DEFAULT_LISTENER)];
    listenerSource = 'default';
  }
  // Two entries on one fixed address could never both bind: said now, with both fields.
  const seen = new Map<string, number>();
  listeners.forEach((l, i) => {
    if (l.port === 0) return;
    const key = formatAddress({ host: l.host, port: l.port, family: l.host.includes(':') ? 6 : 4 });
    const first = seen.get(key);
    if (first !== undefined) {
      throw new ConfigError(
        listenerSource === 'cli'
          ? `--listener: ${key} is named twice`
          : `config file ${configPath}: /listeners/${i}/address: ${key} is already /listeners/${first}/address`,
      );
    }
    seen.set(key, i);
  });

  const engine: EngineConfig = {};
  if (file.engine?.bufferSize) engine.bufferSize = file.engine.bufferSize;
  if (file.engine?.traceDepth) engine.traceDepth = file.engine.traceDepth;
  if (file.engine?.parkAfterMs) engine.parkAfterMs = file.engine.parkAfterMs;
  if (file.engine?.splicePipes !== undefined) engine.splicePipes = file.engine.splicePipes;
  if (file.engine?.maxListeners) engine.maxListeners = file.engine.maxListeners;
  if (file.engine?.maxConnections) engine.maxConnections = file.engine.maxConnections;
  const maxListeners = engine.maxListeners ?? ENGINE_DEFAULTS.maxListeners;
  if (listeners.length > maxListeners) {
    throw new ConfigError(
      `${cli.listeners.length > 0 ? '--listener' : `config file ${configPath}: /listeners`}: ${listeners.length} listeners, more than engine.maxListeners (${maxListeners}); raise engine.maxListeners or list fewer`,
    );
  }

  const accessLog = {
    to: cli.accessLog ?? file.accessLog?.to ?? 'off',
    maxBytes: file.accessLog?.maxBytes ?? ACCESS_LOG_DEFAULTS.maxBytes,
    keep: file.accessLog?.keep ?? ACCESS_LOG_DEFAULTS.keep,
    source:
      cli.accessLog !== undefined ? '--access-log' : `config file ${configPath}: /accessLog/to`,
  };

  return {
    api,
    apiSource,
    token,
    protect: file.api?.protect ?? 'commands',
    allowedHosts,
    allowTargets,
    maxEventClients: file.api?.maxEventClients ?? 32,
    threadShare: file.api?.threadShare ?? null,
    maxApiConnections: file.api?.maxConnections ?? 64,
    bodyLimitBytes: file.api?.bodyLimitBytes ?? 16 * 1024,
    requestTimeoutMs: file.api?.requestTimeoutMs ?? 10_000,
    backend,
    logLevel,
    shutdownDeadlineMs: file.shutdownDeadlineMs ?? 5000,
    engine,
    listeners,
    listenerInputs,
    listenerSource,
    configPath: configPath ?? null,
    stateFile: cli.stateFile ?? file.stateFile ?? null,
    tokenSource,
    accessLog,
  };
}

/**
 * A non-loopback API without a token would let anyone who reaches it change the listeners.
 * Decided on addresses: a literal is checked as an IP, a name is resolved and every address it
 * has must be loopback (`127.attacker.example` is a name, whatever it starts with).
 */
export async function checkApiExposure(
  s: Settings,
  resolve: Resolver = systemResolver,
): Promise<void> {
  if (s.token) return;
  const r = await loopbackByAddress(s.api.host, resolve);
  if (r.ok) return;
  throw new ConfigError(
    `${s.apiSource}: refusing to serve the API on ${formatAddress(s.api)} without a token: ${r.why}, and anyone who can reach ` +
      'a non-loopback API could change listeners and close connections. Set KEYPORT_TOKEN_FILE (or api.tokenFile in the config file), ' +
      'or bind the API to 127.0.0.1.',
  );
}

/** After listen: every address the API is bound to must be loopback when there is no token. */
export function checkBoundAddresses(s: Settings, bound: string[]): void {
  if (s.token) return;
  const off = bound.filter((a) => !isLoopbackIp(a));
  if (off.length === 0) return;
  throw new ConfigError(
    `${s.apiSource}: refusing to serve the API without a token: it is bound to ${off.join(', ')}, which is not loopback. ` +
      'Set KEYPORT_TOKEN_FILE (or api.tokenFile in the config file), or bind the API to 127.0.0.1.',
  );
}
