// Winsock's sockaddr layout (AF_INET6 = 23).
import { sockaddrCodec } from '../net/sockaddr.js';
import { AF_INET, AF_INET6 } from './win32.js';

export const { write: writeSockaddr, read: readSockaddr } = sockaddrCodec({
  inet: AF_INET,
  inet6: AF_INET6,
});
