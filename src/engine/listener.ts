// A listening socket with AcceptEx operations kept posted (DESIGN §1.3). Every accept completes
// with the listener's key; the accepted socket then gets a key of its own. An accept that fails
// is re-posted, or the listener would silently die.

import type { SocketAddress } from './backend.js';
import { Connection, Endpoint } from './connection.js';
import type { EngineCore, OpOwner } from './core.js';
import type { KeyEntry } from './keys.js';
import type { ListenerConfig, TargetAddress } from './options.js';
import type { OpRecord } from './records.js';

/**
 * listening → closing (accepts being cancelled) → draining (socket closed, so new clients are
 * refused; existing connections finish) → closed.
 */
export type ListenerState = 'listening' | 'closing' | 'draining' | 'closed';

export class Listener implements OpOwner {
  state: ListenerState = 'listening';
  readonly createdAt = Date.now();
  pendingAccepts = 0;
  acceptedTotal = 0;
  /** Clients reset because the listener was at its connection limit (onLimit: 'reset'). */
  rejectedTotal = 0;
  readonly connections = new Set<Connection>();
  sock = -1;
  key: KeyEntry | null = null;
  bound: SocketAddress;

  constructor(
    private readonly core: EngineCore,
    readonly id: string,
    readonly config: ListenerConfig,
    private readonly address: SocketAddress,
  ) {
    this.bound = address;
  }

  get mode(): 'echo' | 'forward' {
    return this.config.mode;
  }

  get target(): TargetAddress | undefined {
    return this.config.target;
  }

  /** Binds, listens and posts the accepts; throws (BackendError) when the address is taken. */
  open(): void {
    const backend = this.core.backend;
    this.sock = backend.createSocket(this.address.family);
    try {
      this.bound = backend.listen(this.sock, this.address, this.core.listenerConfig(this).backlog);
      this.key = this.core.assignKey(this.sock, { kind: 'listener', id: this.id });
      backend.associate(this.sock, this.key.key);
    } catch (err) {
      if (this.key) this.core.releaseKey(this.key);
      backend.closeSocket(this.sock, true);
      this.state = 'closed';
      throw err;
    }
    this.postAccepts();
  }

  /** Keeps `acceptDepth` accepts posted, but never more than the connection limit leaves room for. */
  postAccepts(): void {
    const cfg = this.core.listenerConfig(this);
    while (
      this.state === 'listening' &&
      this.pendingAccepts < cfg.acceptDepth &&
      (cfg.onLimit === 'reset' || this.connections.size + this.pendingAccepts < cfg.maxConnections)
    ) {
      if (!this.postAccept()) break;
    }
  }

  private postAccept(): boolean {
    const backend = this.core.backend;
    let s = -1;
    try {
      if (backend.preCreatesAcceptSocket) s = backend.createSocket(this.address.family);
    } catch (err) {
      this.core.log(
        'error',
        { listener: this.id, err: (err as Error).message },
        'cannot create accept socket',
      );
      return false;
    }
    this.pendingAccepts++;
    this.core.startOp('accept', this.key as KeyEntry, this, (rec) => {
      rec.acceptSock = s;
      return backend.accept(this.sock, s, rec);
    });
    return true;
  }

  complete(rec: OpRecord, code: number): void {
    this.pendingAccepts--;
    const backend = this.core.backend;
    if (code !== 0 || this.state !== 'listening') {
      if (rec.acceptSock >= 0) backend.closeSocket(rec.acceptSock, true);
      const accepted = code === 0 ? backend.acceptedSocket(rec, rec.acceptSock) : -1;
      if (accepted >= 0 && accepted !== rec.acceptSock) backend.closeSocket(accepted, true);
      if (this.state === 'closing') this.tryFinishClose();
      else this.postAccepts(); // re-post, whatever happened
      return;
    }
    const s = backend.acceptedSocket(rec, rec.acceptSock);
    if (this.connections.size >= this.core.listenerConfig(this).maxConnections) {
      // onLimit 'reset' (with 'wait' no accept is posted at the limit): refuse the surplus now.
      this.rejectedTotal++;
      backend.closeSocket(s, true);
      this.core.countError('accept', 'OVER_CONNECTION_LIMIT');
      this.postAccepts();
      return;
    }
    this.acceptedTotal++;
    // Inherit the listener's properties; a client that already left makes this fail, which
    // must not break the accept chain: the connection's first recv then fails and cleans up.
    const uc = backend.finishAccept(this.sock, s);
    if (uc !== 0) this.core.countError('update-context', backend.errorName(uc));
    let conn: Connection | null = null;
    try {
      const key = this.core.assignKey(s, { kind: 'connection', id: '', side: 'client' });
      const client = new Endpoint('client', s, key);
      conn = new Connection(this.core, this, this.core.nextConnectionId(), client);
      if (key.owner?.kind === 'connection') key.owner.id = conn.id;
      backend.associate(s, key.key);
      client.local = backend.localAddress(s);
      client.remote = backend.peerAddress(s);
    } catch (err) {
      this.core.log(
        'error',
        { listener: this.id, err: (err as Error).message },
        'cannot set up accepted socket',
      );
      if (conn) conn.close('setup failed', true);
      else backend.closeSocket(s, true);
      this.postAccepts();
      return;
    }
    this.connections.add(conn);
    this.core.connectionOpened(conn);
    conn.start();
    this.postAccepts();
  }

  connectionGone(conn: Connection): void {
    this.connections.delete(conn);
    if (this.state === 'listening') this.postAccepts();
    else this.tryFinishClose();
  }

  /**
   * Stops accepting: cancels the posted accepts and closes the socket once they completed (new
   * clients are then refused). The listener lives on, draining, until its connections are gone.
   */
  close(): void {
    if (this.state !== 'listening') return;
    this.state = 'closing';
    if (this.pendingAccepts > 0) this.core.backend.cancel(this.sock, null);
    this.tryFinishClose();
  }

  private tryFinishClose(): void {
    if (this.state === 'closing') {
      if (this.key && this.key.pending > 0) return;
      this.core.backend.closeSocket(this.sock, false);
      if (this.key) this.core.releaseKey(this.key);
      this.key = null;
      this.state = 'draining';
    }
    if (this.state === 'draining' && this.connections.size === 0) {
      this.state = 'closed';
      this.core.listenerClosed(this);
    }
  }
}
