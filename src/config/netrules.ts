// Address rules decided on IP addresses, never on text: what is loopback, what a name resolves
// to, and the api.allowTargets patterns (CIDRs and HOST:PORT) forward targets are checked against.
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Resolves a name to every address it has (dns.lookup with all: true). Injectable for tests. */
export type Resolver = (host: string) => Promise<string[]>;

export const systemResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** An IPv4-mapped IPv6 address (::ffff:127.0.0.1) as its IPv4 form; anything else unchanged. */
export function unmapIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1] ?? ip;
}

const loopbacks = new BlockList();
loopbacks.addSubnet('127.0.0.0', 8, 'ipv4');
loopbacks.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. False for names: resolve them first. */
export function isLoopbackIp(ip: string): boolean {
  const a = unmapIp(ip);
  const family = isIP(a);
  if (family === 0) return false;
  return loopbacks.check(a, family === 4 ? 'ipv4' : 'ipv6');
}

export function isWildcardIp(ip: string): boolean {
  const a = unmapIp(ip);
  return a === '0.0.0.0' || (isIP(a) === 6 && /^[0:]+$/.test(a));
}

/**
 * Whether `host` (a literal or a name) is loopback by address: a literal is checked as an IP; a
 * name is resolved and every address must be loopback. `localhost` is resolved like any name.
 * Returns the addresses seen, and why not when it is not.
 */
export async function loopbackByAddress(
  host: string,
  resolve: Resolver = systemResolver,
): Promise<{ ok: boolean; addresses: string[]; why: string | null }> {
  if (isIP(host)) {
    const ok = isLoopbackIp(host);
    return { ok, addresses: [host], why: ok ? null : `${host} is not a loopback address` };
  }
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return {
      ok: false,
      addresses: [],
      why: `the name ${host} cannot be resolved (${code}), so it cannot be verified to be loopback`,
    };
  }
  if (addresses.length === 0)
    return { ok: false, addresses, why: `the name ${host} resolves to no address` };
  const off = addresses.filter((a) => !isLoopbackIp(a));
  if (off.length > 0)
    return {
      ok: false,
      addresses,
      why: `the name ${host} resolves to ${off.join(', ')}, which is not loopback`,
    };
  return { ok: true, addresses, why: null };
}

// ---- api.allowTargets ----

/** One allowTargets entry, parsed. host: a name (lower case), or a subnet; port null = any. */
export interface TargetRule {
  text: string;
  name: string | null;
  subnet: { list: BlockList } | null;
  anyHost: boolean;
  port: number | null;
}

function parseHostPart(host: string): Pick<TargetRule, 'name' | 'subnet' | 'anyHost'> | null {
  if (host === '*') return { name: null, subnet: null, anyHost: true };
  const slash = host.indexOf('/');
  const ip = slash >= 0 ? host.slice(0, slash) : host;
  const family = isIP(ip);
  if (family !== 0) {
    const max = family === 4 ? 32 : 128;
    const prefixText = slash >= 0 ? host.slice(slash + 1) : String(max);
    if (!/^[0-9]{1,3}$/.test(prefixText)) return null;
    const prefix = Number(prefixText);
    if (prefix > max) return null;
    const list = new BlockList();
    list.addSubnet(ip, prefix, family === 4 ? 'ipv4' : 'ipv6');
    return { name: null, subnet: { list }, anyHost: false };
  }
  if (slash >= 0) return null;
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?$/.test(host)) return null;
  return { name: host.toLowerCase().replace(/\.$/, ''), subnet: null, anyHost: false };
}

/**
 * Parses an allowTargets entry: `CIDR` or `IP` (any port), `HOST:PORT`, `HOST:*`, `*:PORT`,
 * `CIDR:PORT`, and IPv6 in brackets (`[fd00::/8]:5432`). Throws an Error saying what is wrong.
 */
export function parseTargetRule(text: string): TargetRule {
  const bad = (why: string): never => {
    throw new Error(`${JSON.stringify(text)}: ${why} (expected CIDR, IP, HOST:PORT or HOST:*)`);
  };
  let hostText: string;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) bad('missing "]"');
    hostText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) bad('expected ":PORT" after "]"');
      portText = rest.slice(1);
    }
    if (isIP(hostText.split('/')[0] ?? '') !== 6) bad('brackets are only for IPv6');
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) {
      // A bare IPv6 address or CIDR, any port.
      hostText = text;
    } else if (colons === 1) {
      const c = text.indexOf(':');
      hostText = text.slice(0, c);
      portText = text.slice(c + 1);
    } else hostText = text;
  }
  const host = parseHostPart(hostText);
  if (!host) return bad(`${JSON.stringify(hostText)} is not a host name, IP address or CIDR`);
  let port: number | null = null;
  if (portText !== null && portText !== '*') {
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)
      bad(`port ${JSON.stringify(portText)} is not 1-65535 or *`);
    port = Number(portText);
  } else if (portText === null && host.name !== null) {
    bad('a host name needs a port (HOST:PORT, or HOST:* for any)');
  }
  return { text, ...host, port };
}

/**
 * The first rule that allows the target, or null. A name rule matches the target's name as
 * written; a subnet rule matches when every address of the target (its literal, or what its name
 * resolves to now) is inside it.
 */
export function matchTarget(
  rules: TargetRule[],
  target: { host: string; port: number },
  addresses: string[],
): TargetRule | null {
  const name = isIP(target.host) ? null : target.host.toLowerCase().replace(/\.$/, '');
  for (const r of rules) {
    if (r.port !== null && r.port !== target.port) continue;
    if (r.anyHost) return r;
    if (r.name !== null) {
      if (name === r.name) return r;
      continue;
    }
    if (r.subnet && addresses.length > 0) {
      const list = r.subnet.list;
      const inside = addresses.every((a) => {
        const u = unmapIp(a);
        const f = isIP(u);
        return f !== 0 && list.check(u, f === 4 ? 'ipv4' : 'ipv6');
      });
      if (inside) return r;
    }
  }
  return null;
}
