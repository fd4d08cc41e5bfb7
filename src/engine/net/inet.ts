// IPv4/IPv6 literals ↔ bytes, for writing and reading sockaddr structures. Pure JS, shared by
// both backends (names are resolved by the engine before they reach a backend).
import { isIPv4, isIPv6 } from 'node:net';

export function ipv4ToBytes(ip: string): Uint8Array {
  if (!isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
  return Uint8Array.from(ip.split('.').map(Number));
}

export function ipv6ToBytes(ip: string): Uint8Array {
  const bare = ip.replace(/%.*$/, '');
  if (!isIPv6(bare)) throw new Error(`not an IPv6 address: ${ip}`);
  let text = bare;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes its two hex groups.
  const v4 = text.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (v4?.[1] && v4[2]) {
    const b = ipv4ToBytes(v4[2]);
    text = `${v4[1]}${(((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16)}:${(((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const parse = (s: string) => (s ? s.split(':').map((h) => Number.parseInt(h, 16)) : []);
  const a = parse(head);
  const b = rest === undefined ? [] : parse(rest);
  const fill = 8 - a.length - b.length;
  const groups = rest === undefined ? a : [...a, ...new Array<number>(fill).fill(0), ...b];
  const out = new Uint8Array(16);
  groups.slice(0, 8).forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

export function bytesToIpv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

export function bytesToIpv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0));
  // Compress the longest run of two or more zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}
