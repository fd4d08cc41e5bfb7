// Who may create which listeners (docs/security.md): without a token only loopback binds, and
// never a forward to the API itself or outside api.allowTargets. Decided on the addresses a
// name resolves to.
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import {
  isLoopbackIp,
  isWildcardIp,
  loopbackByAddress,
  matchTarget,
  type Resolver,
  systemResolver,
  type TargetRule,
  unmapIp,
} from '../../config/netrules.js';
import type { ListenerConfig, TargetAddress } from '../../engine/options.js';

/** Who may create which listeners (docs/security.md). */
export interface ListenerPolicy {
  /** Without a token, listeners may only bind loopback addresses. */
  tokenConfigured: boolean;
  /** Forward targets allowed; null = anything (but never the API itself). */
  allowTargets: TargetRule[] | null;
  resolve?: Resolver;
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Every address of this machine, for a target that would reach an API bound to 0.0.0.0/::. */
function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) out.add(unmapIp(a.address));
  return out;
}

/**
 * Why this listener may not be created, or null. `api` is where the API itself listens: a
 * forward to it would serve the API (without its Host checks' protection from the network, on a
 * data port that may be bound wider) to whoever reaches that listener.
 */
export async function refusal(
  config: ListenerConfig,
  policy: ListenerPolicy,
  api: { address: string; port: number }[],
): Promise<string | null> {
  const resolve = policy.resolve ?? systemResolver;
  if (!policy.tokenConfigured) {
    const r = await loopbackByAddress(config.host, resolve);
    if (!r.ok) {
      return (
        `body/address: ${formatHostPort(config.host, config.port)} refused: without an API token, listeners may only bind ` +
        `loopback addresses (${r.why}), or any local process or web page could open this machine to the network. ` +
        'To allow other addresses, configure a token (KEYPORT_TOKEN_FILE or api.tokenFile): commands then need it.'
      );
    }
  }
  if (config.mode !== 'forward') return null;
  const targets = config.targets ?? (config.target ? [config.target] : []);
  for (const [i, target] of targets.entries()) {
    const why = await targetRefused(target, policy, api, resolve);
    if (why) return `${config.targets ? `body/targets/${i}` : 'body/target'}: ${why}`;
  }
  return null;
}

/** Why a forward target is refused (the API itself, or outside api.allowTargets), or null. */
async function targetRefused(
  target: TargetAddress,
  policy: ListenerPolicy,
  api: { address: string; port: number }[],
  resolve: (host: string) => Promise<string[]>,
): Promise<string | null> {
  const shown = formatHostPort(target.host, target.port);
  let addresses: string[] = [];
  if (isIP(target.host)) addresses = [target.host];
  else {
    try {
      addresses = await resolve(target.host);
    } catch {
      addresses = [];
    }
  }
  const samePort = api.filter((a) => a.port === target.port);
  if (samePort.length > 0) {
    const local = samePort.some((a) => isWildcardIp(a.address)) ? localAddresses() : null;
    for (const t of addresses) {
      const u = unmapIp(t);
      if (
        isLoopbackIp(u) ||
        isWildcardIp(u) ||
        samePort.some((a) => unmapIp(a.address) === u) ||
        local?.has(u)
      ) {
        return (
          `${shown} refused: it is keyport's own API address, and a forward to it would expose the API ` +
          "on a data port (to whoever can reach that listener, bypassing the API's own bind and checks)"
        );
      }
    }
  }
  if (policy.allowTargets && !matchTarget(policy.allowTargets, target, addresses)) {
    return (
      `${shown} refused: it matches no rule of api.allowTargets (${policy.allowTargets.map((r) => r.text).join(', ') || 'empty: no forward target is allowed'})` +
      (addresses.length > 0 && !isIP(target.host) ? `; it resolves to ${addresses.join(', ')}` : '')
    );
  }
  return null;
}

export function apiAddresses(app: { addresses(): (string | { address: string; port: number })[] }) {
  return app.addresses().filter((a) => typeof a === 'object');
}
