// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a header a relay sends
// first on its upstream connection, naming the client's address and the address the client
// reached, so the upstream sees the real client. keyport sends one to its upstream
// (`proxyProtocol.send`) and takes one from a load balancer in front (`proxyProtocol.accept`).
import { isIPv4, isIPv6 } from 'node:net';
import type { SocketAddress } from '../backend.js';
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from '../net/inet.js';

export type ProxyVersion = 'v1' | 'v2';

const V2_SIGNATURE = Uint8Array.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = 'PROXY ';
/** The longest v1 line, CRLF included (the specification's own bound). */
const V1_MAX = 107;
/** The longest v2 header keyport takes (16 + addresses + TLVs); the specification allows 64 KiB. */
export const V2_MAX = 16 + 2048;

/**
 * The header for a client at `src` that reached `dst`. Without both addresses of one family
 * (an address that could not be read) it says so: v1 UNKNOWN, v2 LOCAL, and the upstream then
 * uses the connection's own addresses.
 */
export function encodeProxyHeader(
  version: ProxyVersion,
  src: SocketAddress | null,
  dst: SocketAddress | null,
): Buffer {
  const known = src !== null && dst !== null && src.family === dst.family;
  if (version === 'v1') {
    if (!known) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    const proto = src.family === 6 ? 'TCP6' : 'TCP4';
    return Buffer.from(
      `PROXY ${proto} ${src.host} ${dst.host} ${src.port} ${dst.port}\r\n`,
      'latin1',
    );
  }
  if (!known) {
    const h = Buffer.alloc(16);
    h.set(V2_SIGNATURE, 0);
    h[12] = 0x20; // version 2, LOCAL
    return h;
  }
  const v6 = src.family === 6;
  const addrLen = v6 ? 36 : 12;
  const h = Buffer.alloc(16 + addrLen);
  h.set(V2_SIGNATURE, 0);
  h[12] = 0x21; // version 2, PROXY
  h[13] = v6 ? 0x21 : 0x11; // AF_INET6 / AF_INET, STREAM
  h.writeUInt16BE(addrLen, 14);
  const bytes = v6 ? ipv6ToBytes : ipv4ToBytes;
  const n = v6 ? 16 : 4;
  h.set(bytes(src.host), 16);
  h.set(bytes(dst.host), 16 + n);
  h.writeUInt16BE(src.port, 16 + 2 * n);
  h.writeUInt16BE(dst.port, 18 + 2 * n);
  return h;
}

export type ProxyParse =
  | { kind: 'more' }
  | { kind: 'invalid'; why: string }
  | {
      kind: 'ok';
      /** Bytes of the header; what follows is the client's own data. */
      length: number;
      /** null: the sender proxied nothing (v1 UNKNOWN, v2 LOCAL or UNSPEC). */
      src: SocketAddress | null;
      dst: SocketAddress | null;
    };

/** Reads a header at the start of `b`: complete, invalid, or more bytes needed. */
export function parseProxyHeader(b: Uint8Array): ProxyParse {
  if (b.length === 0) return { kind: 'more' };
  if (b[0] === V2_SIGNATURE[0]) return parseV2(b);
  if (b[0] === 0x50 /* P */) return parseV1(b);
  return { kind: 'invalid', why: 'no PROXY header (neither "PROXY " nor the v2 signature)' };
}

function parseV1(b: Uint8Array): ProxyParse {
  const head = Buffer.from(b.subarray(0, Math.min(b.length, V1_MAX)));
  const text = head.toString('latin1');
  if (!text.startsWith(V1_PREFIX.slice(0, Math.min(text.length, V1_PREFIX.length))))
    return { kind: 'invalid', why: 'no PROXY header (neither "PROXY " nor the v2 signature)' };
  const end = text.indexOf('\r\n');
  if (end < 0)
    return b.length < V1_MAX
      ? { kind: 'more' }
      : { kind: 'invalid', why: `v1 line without CRLF in its first ${V1_MAX} bytes` };
  const parts = text.slice(0, end).split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { kind: 'ok', length, src: null, dst: null };
  if (parts.length !== 6) return { kind: 'invalid', why: `v1 line with ${parts.length} fields` };
  const [, proto, srcIp, dstIp, srcPort, dstPort] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (!family) return { kind: 'invalid', why: `v1 protocol ${JSON.stringify(proto)}` };
  const isIp = family === 4 ? isIPv4 : isIPv6;
  if (!isIp(srcIp) || !isIp(dstIp)) return { kind: 'invalid', why: `v1 address not ${proto}` };
  const sp = port(srcPort);
  const dp = port(dstPort);
  if (sp === null || dp === null) return { kind: 'invalid', why: 'v1 port not 0..65535' };
  return {
    kind: 'ok',
    length,
    src: { host: srcIp, port: sp, family },
    dst: { host: dstIp, port: dp, family },
  };
}

function port(s: string): number | null {
  if (!/^(0|[1-9]\d{0,4})$/.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? n : null;
}

function parseV2(b: Uint8Array): ProxyParse {
  const n = Math.min(b.length, V2_SIGNATURE.length);
  for (let i = 0; i < n; i++)
    if (b[i] !== V2_SIGNATURE[i]) return { kind: 'invalid', why: 'v2 signature mismatch' };
  if (b.length < 16) return { kind: 'more' };
  const verCmd = b[12] as number;
  if (verCmd >> 4 !== 2) return { kind: 'invalid', why: `v2 version ${verCmd >> 4}` };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { kind: 'invalid', why: `v2 command ${cmd}` };
  const fam = b[13] as number;
  const len = ((b[14] as number) << 8) | (b[15] as number);
  if (16 + len > V2_MAX) return { kind: 'invalid', why: `v2 header of ${16 + len} bytes` };
  if (b.length < 16 + len) return { kind: 'more' };
  const length = 16 + len;
  if (cmd === 0 || fam === 0x00) return { kind: 'ok', length, src: null, dst: null }; // LOCAL
  // TCP over IPv4 (0x11) or IPv6 (0x21): both addresses, then both ports.
  const family = fam === 0x11 ? 4 : fam === 0x21 ? 6 : 0;
  if (family) {
    const n = family === 4 ? 4 : 16;
    if (len < 2 * n + 4)
      return { kind: 'invalid', why: `v2 TCP${family} with ${len} address bytes` };
    const a = b.subarray(16, 16 + len);
    const v = new DataView(a.buffer, a.byteOffset, a.byteLength);
    const ip = family === 4 ? bytesToIpv4 : bytesToIpv6;
    return {
      kind: 'ok',
      length,
      src: { host: ip(a.subarray(0, n)), port: v.getUint16(2 * n), family },
      dst: { host: ip(a.subarray(n, 2 * n)), port: v.getUint16(2 * n + 2), family },
    };
  }
  // UDP and UNIX sockets are not TCP clients: nothing keyport could show as an address.
  return { kind: 'invalid', why: `v2 family/protocol 0x${fam.toString(16).padStart(2, '0')}` };
}
