// One socket of a connection (the client's, or the upstream's in forward mode) under its own
// completion key, with its byte counts and its addresses, asked of the socket when first needed.
import type { SocketAddress } from '../backend.js';
import type { EngineCore } from '../core.js';
import type { KeyEntry, KeyOwner } from '../tables/keys.js';

/** Where an endpoint asks its addresses from (the backend). */
export interface AddressSource {
  localAddress(sock: number): SocketAddress | null;
  peerAddress(sock: number): SocketAddress | null;
}

export class Endpoint {
  bytesIn = 0;
  bytesOut = 0;
  /** keyport shut this socket's sending side (its FIN is out). */
  sendShut = false;
  /** The handle was closed: it may name another socket now, so nothing more is asked of it. */
  closed = false;
  // Asked of the socket on first use (a view, an event), not per connection: two system calls
  // and three objects fewer for each connection nobody looks at.
  private localAddr: SocketAddress | null | undefined = undefined;
  private remoteAddr: SocketAddress | null | undefined = undefined;

  constructor(
    readonly side: 'client' | 'upstream',
    readonly sock: number,
    readonly keyEntry: KeyEntry,
    private readonly addresses: AddressSource,
  ) {}

  get local(): SocketAddress | null {
    if (this.localAddr === undefined && !this.closed)
      this.localAddr = ask(() => this.addresses.localAddress(this.sock));
    return this.localAddr ?? null;
  }

  /** null when it cannot be read (a peer that already reset: getpeername says ENOTCONN). */
  get remote(): SocketAddress | null {
    if (this.remoteAddr === undefined && !this.closed)
      this.remoteAddr = ask(() => this.addresses.peerAddress(this.sock));
    return this.remoteAddr ?? null;
  }

  /** Known without asking (the upstream's target; a client named by a PROXY header). */
  set remote(addr: SocketAddress | null) {
    this.remoteAddr = addr;
  }

  /** Known without asking (the address a client reached, named by a PROXY header). */
  set local(addr: SocketAddress | null) {
    this.localAddr = addr;
  }

  /**
   * Asks both addresses now, while the socket is open, so that they can still be told after it
   * closed (the access log writes them at close; a peer that reset cannot be asked then).
   */
  keepAddresses(): void {
    void this.local;
    void this.remote;
  }
}

/**
 * Whether a connected upstream socket's own address is its peer's. Asked once per connect, not
 * cached on the endpoint (its views read the address lazily, when somebody looks).
 */
export function connectedToItself(addresses: AddressSource, up: Endpoint): boolean {
  const target = up.remote;
  if (!target) return false;
  const local = ask(() => addresses.localAddress(up.sock));
  return local !== null && local.port === target.port && local.host === target.host;
}

/** An address that cannot be read is unknown (null), never a failure of the connection. */
function ask(read: () => SocketAddress | null): SocketAddress | null {
  try {
    return read();
  } catch {
    return null;
  }
}

export function formatSocketAddress(a: SocketAddress | null): string | null {
  if (!a) return null;
  return a.family === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * A socket for an outgoing connect (an upstream attempt, a health check): created, bound to the
 * wildcard (ConnectEx needs a bound socket), given a key of its own and associated with the
 * port. When a step fails nothing is left open or assigned, and the error is rethrown.
 */
export function openConnectEndpoint(
  core: EngineCore,
  family: SocketAddress['family'],
  owner: KeyOwner,
): Endpoint {
  const backend = core.backend;
  const sock = backend.createSocket(family);
  let entry: KeyEntry | null = null;
  try {
    backend.bindAny(sock, family);
    entry = core.assignKey(sock, owner);
    backend.associate(sock, entry.key);
    return new Endpoint('upstream', sock, entry, backend);
  } catch (err) {
    backend.closeSocket(sock, true);
    if (entry) core.releaseKey(entry);
    throw err;
  }
}
