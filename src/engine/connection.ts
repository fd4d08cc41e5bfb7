// A connection: the accepted client socket, in forward mode an upstream socket too, each under
// its own completion key, and the relay pipes between them. Closing follows DESIGN §1.5:
//  - naturally: both directions carried their EOF across; nothing is in flight;
//  - gracefully: stop reading, let the bytes already read be written, FIN, then close (bounded
//    by the listener's closeTimeoutMs; what cannot be delivered in time is reset);
//  - abortively: cancel every op, wait until each has completed, closesocket with RST.
// Sockets are closed only once no op is in flight, then the keys are released.
import { BackendError, type OpKind, type SocketAddress } from './backend.js';
import type { EngineCore, OpOwner } from './core.js';
import { connectedToItself, Endpoint, formatSocketAddress } from './endpoint.js';
import type { Listener } from './listener.js';
import { Pipe } from './pipe.js';
import { ProxyHeaderReader, type ProxyHeaderResult } from './proxy-header-reader.js';
import { encodeProxyHeader } from './proxy-protocol.js';
import type { OpRecord } from './records.js';
import { CompletionTrace } from './trace.js';
import { literalAddress, upstreamAddresses } from './upstream-addresses.js';

export type ConnectionState = 'connecting' | 'open' | 'closing' | 'closed';

export class Connection implements OpOwner {
  state: ConnectionState = 'connecting';
  readonly createdAt = Date.now();
  /** performance.now() at accept: keyport_connection_duration_seconds runs from here. */
  readonly startedAt = performance.now();
  lastActivity = performance.now();
  /** Start of the current idle-timeout window, and the bytes read or written in it. */
  windowStart = performance.now();
  windowBytes = 0;
  upstream: Endpoint | null = null;
  pipes: Pipe[] = [];
  closeReason: string | null = null;
  /** The error name (ECONNRESET, ERROR_NETNAME_DELETED, CONNECT_TIMEOUT, …) that caused the close, if one did. */
  closeError: string | null = null;
  /** The client's IP, when its listener counts connections per source (else null). */
  source: string | null = null;
  /** Closing with RST: bytes could not be delivered, or a peer failed. */
  abortive = false;
  /** Announced by the engine (connectionOpened); one that failed in set-up never is. */
  opened = false;
  connectDeadline = 0;
  /** performance.now() by which a graceful close must have delivered everything (0: none). */
  closeDeadline = 0;
  private connectTimedOut = false;
  /** Forward mode: the addresses the target resolved to, and how many were tried. */
  private candidates: SocketAddress[] = [];
  private tried = 0;
  /** Reading a PROXY header from the client (proxyProtocol.accept), until it is whole. */
  private header: ProxyHeaderReader | null = null;
  /** Client bytes that came with its PROXY header, relayed first. */
  private early: Uint8Array | null = null;
  readonly trace: CompletionTrace;

  constructor(
    private readonly core: EngineCore,
    readonly listener: Listener,
    readonly id: string,
    readonly client: Endpoint,
  ) {
    this.trace = new CompletionTrace(core.traceDepth);
  }

  get endpoints(): Endpoint[] {
    return this.upstream ? [this.client, this.upstream] : [this.client];
  }

  get opsInFlight(): number {
    let n = 0;
    for (const ep of this.endpoints) n += ep.key.inFlight;
    return n;
  }

  start(): void {
    const pp = this.core.listenerConfig(this.listener).proxyProtocol;
    if (pp?.accept) {
      // The balancer in front names the client first: nothing else until its header is whole.
      this.connectDeadline = performance.now() + (pp.timeoutMs ?? 5000);
      this.header = new ProxyHeaderReader(this.core, this, this.client);
      this.header.start();
      return;
    }
    this.begin();
  }

  /** The PROXY header was read: the client is the one it names, and its first bytes wait. */
  headerRead(r: ProxyHeaderResult): void {
    this.header = null;
    this.connectDeadline = 0;
    if (r.src && r.dst) {
      this.client.remote = r.src;
      this.client.local = r.dst;
    }
    this.client.bytesIn += r.rest.length;
    if (r.rest.length > 0) this.touch();
    this.early = r.rest;
    this.begin();
  }

  private begin(): void {
    if (this.listener.mode === 'echo') {
      this.state = 'open';
      this.pipes = [new Pipe(this.core, this, this.client, this.client)];
      this.pipes[0]?.start(this.takeEarly(null));
      return;
    }
    void this.connectUpstream();
  }

  /** What goes to the upstream (or back, in echo) before any relayed read: header, early bytes. */
  private takeEarly(header: Uint8Array | null): Uint8Array | null {
    const early = this.early;
    this.early = null;
    if (!header) return early;
    return early?.length ? Buffer.concat([header, early]) : header;
  }

  touch(): void {
    this.lastActivity = performance.now();
  }

  /** Bytes read from or written to either peer: progress for the idle/slow check. */
  progress(bytes: number): void {
    this.windowBytes += bytes;
  }

  /**
   * Forward mode: resolve the target now (names may change), then ConnectEx to each address it
   * resolved to in turn (upstream-addresses.ts) until one accepts; the connect timeout covers
   * the name and every attempt.
   */
  private async connectUpstream(): Promise<void> {
    const target = this.listener.target;
    if (!target) throw new Error('forward listener without target');
    this.connectDeadline =
      performance.now() + this.core.listenerConfig(this.listener).connectTimeoutMs;
    const literal = literalAddress(target.host, target.port);
    if (literal) {
      this.candidates = [literal];
      this.connectNext();
      return;
    }
    try {
      this.candidates = await upstreamAddresses(target.host, target.port);
      if (this.candidates.length === 0)
        throw Object.assign(new Error('no address'), { code: 'ENOTFOUND' });
    } catch (err) {
      if (this.state !== 'connecting') return; // closed (or timed out) while resolving
      const name = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      this.core.upstreamConnectFailed(this.listener, name);
      this.abort(`upstream ${target.host}:${target.port} not resolved: ${name}`, name);
      return;
    }
    if (this.state !== 'connecting') return; // closed while resolving
    this.connectNext();
  }

  /** Starts the connect to the next address the target resolved to. */
  private connectNext(): void {
    const addr = this.candidates[this.tried++] as SocketAddress;
    const backend = this.core.backend;
    let sock = -1;
    try {
      sock = backend.createSocket(addr.family);
      backend.bindAny(sock, addr.family);
      const key = this.core.assignKey(sock, { kind: 'connection', id: this.id, side: 'upstream' });
      this.upstream = new Endpoint('upstream', sock, key, backend);
      backend.associate(sock, key.key);
    } catch (err) {
      if (!this.upstream && sock !== -1) backend.closeSocket(sock, true);
      // Out of sockets or handles (EMFILE, WSAENOBUFS), no port to bind (WSAEADDRINUSE): the
      // upstream cannot be reached either, and is counted and logged as such.
      const name = err instanceof BackendError ? err.errorName : 'UNKNOWN';
      this.core.upstreamConnectFailed(this.listener, name);
      this.abort(`upstream socket: ${(err as Error).message}`, name);
      return;
    }
    this.upstream.remote = addr;
    const rec = this.core.newOp('connect', this.upstream.key, this);
    rec.peer = addr;
    this.core.submit(rec);
  }

  /**
   * A connect to one address failed: when the target resolved to another, close this socket
   * (its connect has completed: nothing of it is in flight) and try that one. False when none
   * is left (or the connection is going away): the caller then counts the failure.
   */
  private tryNextAddress(name: string): boolean {
    if (this.tried >= this.candidates.length || this.state !== 'connecting') return false;
    const up = this.upstream as Endpoint;
    if (up.key.inFlight > 0) return false;
    this.core.log(
      'debug',
      { connection: this.id, upstream: formatSocketAddress(up.remote), error: name },
      'upstream address failed; trying the next one',
    );
    up.closed = true;
    this.core.backend.closeSocket(up.sock, true);
    this.core.releaseKey(up.key);
    this.upstream = null;
    this.connectNext();
    return true;
  }

  private triedNote(): string {
    return this.tried > 1 ? ` (${this.tried} addresses tried)` : '';
  }

  /** Called by the engine's sweep when the upstream has not accepted in time. */
  connectTimeout(): void {
    if (this.state !== 'connecting') return;
    if (this.header) {
      this.abort('proxy header timeout: the client did not send a whole header in time');
      return;
    }
    this.connectTimedOut = true;
    if (this.upstream) {
      this.core.cancelAll(this.upstream.key); // the connect completes aborted: counted there
      return;
    }
    // Still resolving the name: give up now.
    this.core.upstreamConnectFailed(this.listener, 'CONNECT_TIMEOUT');
    this.abort('upstream connect failed: CONNECT_TIMEOUT (resolving the name)', 'CONNECT_TIMEOUT');
  }

  /** The connect op completed. */
  complete(_rec: OpRecord, code: number): void {
    const up = this.upstream as Endpoint;
    if (this.state !== 'connecting') {
      this.settled();
      return;
    }
    if (code !== 0) {
      const name = this.connectTimedOut ? 'CONNECT_TIMEOUT' : this.core.errorName(code);
      if (!this.connectTimedOut && this.core.backend.codes.resets.includes(code)) {
        // The handshake reached the upstream, which then reset at once: not a connect failure.
        this.abort(`upstream reset right after connect: ${name}`, name);
        return;
      }
      if (!this.connectTimedOut && this.tryNextAddress(name)) return;
      this.core.upstreamConnectFailed(this.listener, name);
      this.abort(`upstream connect failed: ${name}${this.triedNote()}`, name);
      return;
    }
    const backend = this.core.backend;
    const uc = backend.finishConnect(up.sock);
    if (uc !== 0) this.core.countError('update-context', this.core.errorName(uc));
    if (connectedToItself(backend, up)) {
      // Nothing listens at the target, and the port picked for this socket is the target's own
      // (a local target in the ephemeral range): TCP's simultaneous open connected the socket to
      // itself, and relaying would echo the client's bytes back. It is a refusal in all but name.
      if (this.tryNextAddress('SELF_CONNECT')) return;
      this.core.upstreamConnectFailed(this.listener, 'SELF_CONNECT');
      this.abort(
        'upstream connect failed: SELF_CONNECT (the socket connected to itself)',
        'SELF_CONNECT',
      );
      return;
    }
    this.state = 'open';
    this.touch();
    this.pipes = [
      new Pipe(this.core, this, this.client, up),
      new Pipe(this.core, this, up, this.client),
    ];
    const send = this.core.listenerConfig(this.listener).proxyProtocol?.send;
    const header = send ? encodeProxyHeader(send, this.client.remote, this.client.local) : null;
    this.pipes[0]?.start(this.takeEarly(header));
    this.pipes[1]?.start();
  }

  /** An op of a pipe failed: the connection ends with RST (the peer reset, or bytes are lost). */
  failed(kind: OpKind, ep: Endpoint, code: number): void {
    const name = this.core.errorName(code);
    this.abort(`${ep.side} ${kind} failed: ${name}`, name);
  }

  /** A direction carried its EOF across (or stopped, while closing): maybe the end. */
  pipeDone(): void {
    if (this.state === 'open' && this.pipes.every((p) => p.done)) {
      this.state = 'closing';
      this.closeReason = 'eof';
    }
    this.settled();
  }

  /** An op completed and nothing follows it: while closing, finish once none is left. */
  settled(): void {
    if (this.state === 'closing') this.tryFinishClose();
  }

  /**
   * Stops reading from both peers, lets the bytes already read be written, then passes the FIN
   * on and closes; by `closeTimeoutMs` whatever is left is reset.
   */
  closeGracefully(reason: string): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const wasConnecting = this.state === 'connecting';
    this.state = 'closing';
    this.closeReason = reason;
    const timeout = this.core.listenerConfig(this.listener).closeTimeoutMs;
    this.closeDeadline = timeout > 0 ? performance.now() + timeout : 0;
    if (wasConnecting) {
      // Nothing was relayed yet: give up the connect; the client gets a plain FIN.
      for (const ep of this.endpoints) this.core.cancelAll(ep.key);
    } else {
      for (const p of this.pipes) p.stopReading();
    }
    this.tryFinishClose();
  }

  /**
   * Resets both peers: cancels every op, and closes with RST once all have completed. `error`:
   * the error name that caused it, if one did (kept only when this abort is what changes the
   * close: the aborted ops' own failures that follow are its consequence, not its cause).
   */
  abort(reason: string, error: string | null = null): void {
    if (this.state === 'closed') return;
    if (!this.abortive) {
      if (this.closeError === null) this.closeError = error;
      this.closeReason = this.state === 'closing' ? `${this.closeReason}; then ${reason}` : reason;
      this.state = 'closing';
      this.abortive = true;
      for (const ep of this.endpoints) this.core.cancelAll(ep.key);
    }
    this.tryFinishClose(); // also when called from the completion of an op being cancelled
  }

  private tryFinishClose(): void {
    if (this.state !== 'closing' || this.opsInFlight > 0) return;
    for (const p of this.pipes) p.dispose();
    for (const ep of this.endpoints) {
      ep.closed = true;
      this.core.backend.closeSocket(ep.sock, this.abortive);
      this.core.releaseKey(ep.key);
    }
    this.state = 'closed';
    this.core.connectionClosed(this);
  }
}
