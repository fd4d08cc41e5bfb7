// A listener as an operator writes it (a config file's listeners, a POST /listeners body, a
// --listener flag) → the engine's ListenerConfig. The schema (schema.ts) has checked the shape;
// this checks what a schema cannot (addresses, CIDRs, one of target/targets, timings that must
// agree) and names the field at fault, from `where` (e.g. "/listeners/2" or "body").
import { parseCidr } from '../engine/net/sources.js';
import type { HealthConfig, ListenerConfig, UpstreamTarget } from '../engine/options.js';
import { CHECK_DEFAULTS, HEALTH_DEFAULTS } from '../engine/options.js';
import { type Address, AddressError, formatAddress, parseAddress } from './address.js';
import type { ListenerSpec } from './cli.js';
import { ConfigError } from './config-error.js';
import type { ListenerInput } from './schema.js';

export function address(input: string, where: string, allowZero: boolean): Address {
  try {
    return parseAddress(input, { allowZero });
  } catch (err) {
    if (err instanceof AddressError) throw new ConfigError(`${where}: ${err.message}`);
    throw err;
  }
}

/** Checks each entry of an allow/deny list; the error names the bad entry by its index. */
function cidrs(list: string[], where: string): string[] {
  list.forEach((text, i) => {
    try {
      parseCidr(text);
    } catch (err) {
      throw new ConfigError(`${where}/${i}: ${(err as Error).message}`);
    }
  });
  return [...list];
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
    ...(input.maxConnectionsPerSource !== undefined
      ? { maxConnectionsPerSource: input.maxConnectionsPerSource }
      : {}),
    ...(input.allow !== undefined ? { allow: cidrs(input.allow, `${where}/allow`) } : {}),
    ...(input.deny !== undefined ? { deny: cidrs(input.deny, `${where}/deny`) } : {}),
    ...(input.proxyProtocol !== undefined ? { proxyProtocol: { ...input.proxyProtocol } } : {}),
  };
  if (input.mode === 'echo') {
    for (const field of ['target', 'targets', 'balance', 'health'] as const)
      if (input[field] !== undefined)
        throw new ConfigError(`${where}/${field}: only a forward listener has upstreams`);
    if (input.proxyProtocol?.send !== undefined)
      throw new ConfigError(
        `${where}/proxyProtocol/send: only a forward listener has an upstream to send a PROXY header to`,
      );
    return { ...base, mode: 'echo' };
  }
  const upstream = {
    ...(input.balance !== undefined ? { balance: input.balance } : {}),
    ...(input.health !== undefined
      ? { health: healthFromInput(input.health, `${where}/health`) }
      : {}),
  };
  if (input.targets !== undefined) {
    if (input.target !== undefined)
      throw new ConfigError(`${where}/targets: give target or targets, not both`);
    const targets = targetsFromInput(input.targets, `${where}/targets`);
    return { ...base, ...upstream, mode: 'forward', targets };
  }
  if (input.target === undefined)
    throw new ConfigError(
      `${where}/target: a forward listener needs a target HOST:PORT (or targets)`,
    );
  const t = address(input.target, `${where}/target`, false);
  return { ...base, ...upstream, mode: 'forward', target: { host: t.host, port: t.port } };
}

function targetsFromInput(
  list: NonNullable<ListenerInput['targets']>,
  where: string,
): UpstreamTarget[] {
  if (list.length === 0) throw new ConfigError(`${where}: at least one target`);
  const seen = new Map<string, number>();
  return list.map((item, i) => {
    const text = typeof item === 'string' ? item : item.address;
    const a = address(text, `${where}/${i}`, false);
    const key = formatAddress(a);
    const first = seen.get(key);
    if (first !== undefined)
      throw new ConfigError(`${where}/${i}: ${key} is already target ${first}`);
    seen.set(key, i);
    const weight = typeof item === 'string' ? undefined : item.weight;
    return { host: a.host, port: a.port, ...(weight !== undefined ? { weight } : {}) };
  });
}

function healthFromInput(h: NonNullable<ListenerInput['health']>, where: string): HealthConfig {
  const ejectMs = h.ejectMs ?? HEALTH_DEFAULTS.ejectMs;
  if (h.maxEjectMs !== undefined && h.maxEjectMs < ejectMs)
    throw new ConfigError(
      `${where}/maxEjectMs: ${h.maxEjectMs} is shorter than ejectMs (${ejectMs})`,
    );
  const c = h.check;
  if (c && c.timeoutMs !== undefined && c.timeoutMs > (c.intervalMs ?? CHECK_DEFAULTS.intervalMs))
    throw new ConfigError(`${where}/check/timeoutMs: longer than the check interval`);
  // A first cool-down longer than the default longest one raises that, rather than being cut.
  const maxEjectMs = h.maxEjectMs ?? Math.max(HEALTH_DEFAULTS.maxEjectMs, ejectMs);
  return { ...h, maxEjectMs, ...(c ? { check: { ...c } } : {}) };
}

/** A --listener flag as a config-file listener entry. */
export function inputFromSpec(spec: ListenerSpec): ListenerInput {
  return spec.mode === 'echo'
    ? { address: formatAddress(spec.address), mode: 'echo' }
    : { address: formatAddress(spec.address), mode: 'forward', target: formatAddress(spec.target) };
}
