// Which clients a listener serves (issue 16): `allow` and `deny` lists of CIDRs, IPv4 and IPv6,
// decided on the peer's address right after accept, before any read or upstream connect. Deny
// wins; an empty allow list allows every address. Node's BlockList does the matching (no
// dependency needed: it takes IPv4 and IPv6 subnets and runs under Windows Node too).
import { BlockList, isIP } from 'node:net';

/** Why a client was refused right after accept (keyport_connections_rejected_total{reason}). */
export const REJECT_REASONS = [
  'max-connections',
  'engine-max-connections',
  'per-source',
  'denied',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** An IPv4-mapped IPv6 address (::ffff:127.0.0.1) as its IPv4 form; anything else unchanged. */
export function plainIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1] ?? ip;
}

/**
 * `10.0.0.0/8`, `fd00::/8`, or a single address (`192.0.2.7`, `::1`) → its family and prefix.
 * Throws an Error that quotes the entry and says what is wrong with it.
 */
export function parseCidr(text: string): { ip: string; prefix: number; family: 4 | 6 } {
  const slash = text.indexOf('/');
  const ip = slash >= 0 ? text.slice(0, slash) : text;
  const f = isIP(ip);
  if (f === 0)
    throw new Error(
      `${JSON.stringify(text)} is not a CIDR: ${JSON.stringify(ip)} is not an IPv4 or IPv6 address (expected e.g. 10.0.0.0/8, fd00::/8 or 192.0.2.7)`,
    );
  const family = f === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (slash < 0) return { ip, prefix: max, family };
  const p = text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(p) || Number(p) > max)
    throw new Error(
      `${JSON.stringify(text)} is not a CIDR: the prefix length must be 0-${max} for IPv${family}`,
    );
  return { ip, prefix: Number(p), family };
}

function compile(list: readonly string[]): BlockList | null {
  if (list.length === 0) return null;
  const b = new BlockList();
  for (const text of list) {
    const c = parseCidr(text);
    b.addSubnet(c.ip, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
  }
  return b;
}

/** A listener's allow/deny rules, compiled once. Throws (naming the entry) on a bad CIDR. */
export class SourceRules {
  private readonly allow: BlockList | null;
  private readonly deny: BlockList | null;

  constructor(allow: readonly string[], deny: readonly string[]) {
    this.allow = compile(allow);
    this.deny = compile(deny);
  }

  /** Whether any rule is set (else the peer's address need not be asked at all). */
  get active(): boolean {
    return this.allow !== null || this.deny !== null;
  }

  /** Deny wins; an empty allow list allows everything. `ip` may be IPv4-mapped. */
  permits(ip: string): boolean {
    const a = plainIp(ip);
    const f = isIP(a);
    if (f === 0) return false;
    const type = f === 4 ? 'ipv4' : 'ipv6';
    if (this.deny?.check(a, type)) return false;
    return this.allow === null || this.allow.check(a, type);
  }
}
