// sockaddr_in / sockaddr_in6 as Linux lays them out (family in host order, port big-endian).
import type { SocketAddress } from '../backend.js';
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from '../inet.js';
import { SOCKADDR_IN_SIZE, SOCKADDR_IN6_SIZE } from './layout.js';
import { AF_INET, AF_INET6 } from './syscalls.js';

/** Writes the sockaddr for `addr` at `off` of `view`; returns its length. */
export function writeSockaddr(view: DataView, off: number, addr: SocketAddress): number {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + off, SOCKADDR_IN6_SIZE);
  bytes.fill(0);
  view.setUint16(off + 2, addr.port, false);
  if (addr.family === 4) {
    view.setUint16(off, AF_INET, true);
    bytes.set(ipv4ToBytes(addr.host), 4);
    return SOCKADDR_IN_SIZE;
  }
  view.setUint16(off, AF_INET6, true);
  bytes.set(ipv6ToBytes(addr.host), 8);
  return SOCKADDR_IN6_SIZE;
}

export function readSockaddr(view: DataView, off: number): SocketAddress | null {
  const family = view.getUint16(off, true);
  const port = view.getUint16(off + 2, false);
  const at = (start: number, len: number) =>
    new Uint8Array(view.buffer, view.byteOffset + off + start, len);
  if (family === AF_INET) return { host: bytesToIpv4(at(4, 4)), port, family: 4 };
  if (family === AF_INET6) return { host: bytesToIpv6(at(8, 16)), port, family: 6 };
  return null;
}
