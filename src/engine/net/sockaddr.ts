// sockaddr_in / sockaddr_in6, which Windows and Linux lay out alike (family in host order at 0,
// port big-endian at 2, IPv4 at 4, IPv6 at 8); only the AF_INET6 value differs (23 vs 10).
import type { SocketAddress } from '../backend.js';
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from './inet.js';

export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;

export interface SockaddrCodec {
  /** Writes the sockaddr for `addr` at `off` of `view`; returns its length. */
  write(view: DataView, off: number, addr: SocketAddress): number;
  read(view: DataView, off: number): SocketAddress | null;
}

/**
 * Host strings read back from sockaddrs, shared: thousands of connections from the same few
 * peers then hold one string each, not one per endpoint. Bounded, so a scan from many addresses
 * cannot grow it without end (past the bound, strings are simply not shared).
 */
const HOSTS = new Map<string, string>();
const MAX_SHARED_HOSTS = 4096;
function shared(host: string): string {
  const known = HOSTS.get(host);
  if (known !== undefined) return known;
  if (HOSTS.size < MAX_SHARED_HOSTS) HOSTS.set(host, host);
  return host;
}

export function sockaddrCodec(af: { inet: number; inet6: number }): SockaddrCodec {
  return {
    write(view, off, addr) {
      const bytes = new Uint8Array(view.buffer, view.byteOffset + off, SOCKADDR_IN6_SIZE);
      bytes.fill(0);
      view.setUint16(off + 2, addr.port, false);
      if (addr.family === 4) {
        view.setUint16(off, af.inet, true);
        bytes.set(ipv4ToBytes(addr.host), 4);
        return SOCKADDR_IN_SIZE;
      }
      view.setUint16(off, af.inet6, true);
      bytes.set(ipv6ToBytes(addr.host), 8);
      return SOCKADDR_IN6_SIZE;
    },
    read(view, off) {
      const family = view.getUint16(off, true);
      const port = view.getUint16(off + 2, false);
      const at = (start: number, len: number) =>
        new Uint8Array(view.buffer, view.byteOffset + off + start, len);
      if (family === af.inet) return { host: shared(bytesToIpv4(at(4, 4))), port, family: 4 };
      if (family === af.inet6) return { host: shared(bytesToIpv6(at(8, 16))), port, family: 6 };
      return null;
    },
  };
}
