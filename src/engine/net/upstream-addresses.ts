// Every address a forward target's name resolves to, in the order a connect tries them. A
// name is resolved at each connect (it may change); a service that listens on ::1 only is
// reached through `localhost` even when the resolver lists 127.0.0.1 first. The order follows
// RFC 8305 §4: the resolver's first address first, then the families alternate, so one dead
// family does not hold back every attempt of the other.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { SocketAddress } from '../backend.js';

/** An IP literal target needs no resolver (and no wait: the connect starts at once). */
export function literalAddress(host: string, port: number): SocketAddress | null {
  const literal = isIP(host);
  return literal ? { host, port, family: literal === 6 ? 6 : 4 } : null;
}

export async function upstreamAddresses(host: string, port: number): Promise<SocketAddress[]> {
  const literal = literalAddress(host, port);
  if (literal) return [literal];
  const all = await lookup(host, { all: true, order: 'verbatim' });
  const seen = new Set<string>();
  const byFamily: Record<4 | 6, SocketAddress[]> = { 4: [], 6: [] };
  for (const r of all) {
    if (seen.has(r.address)) continue; // resolvers repeat an address per socket type
    seen.add(r.address);
    const family = r.family === 6 ? 6 : 4;
    byFamily[family].push({ host: r.address, port, family });
  }
  const first = all[0]?.family === 6 ? 6 : 4;
  const [a, b] = [byFamily[first], byFamily[first === 6 ? 4 : 6]];
  const out: SocketAddress[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i]) out.push(a[i] as SocketAddress);
    if (b[i]) out.push(b[i] as SocketAddress);
  }
  return out;
}
