// A connection: the accepted client socket, in forward mode an upstream socket too, each under
// its own completion key, and the relay directions between them. Closing follows DESIGN §1.5:
//  - naturally: both directions carried their EOF across; nothing is in flight;
//  - gracefully: stop reading, let the bytes already read be written, FIN, then close (bounded
//    by the listener's closeTimeoutMs; what cannot be delivered in time is reset);
//  - abortively: cancel every op, wait until each has completed, closesocket with RST.
// Sockets are closed only once no op is in flight, then the keys are released.
import { BackendError, type OpKind, type SocketAddress } from '../backend.js';
import type { EngineCore, OpOwner } from '../core.js';
import { literalAddress, upstreamAddresses } from '../net/upstream-addresses.js';
import type { OpRecord } from '../tables/ops.js';
import { RelayDirection } from './direction.js';
import {
  connectedToItself,
  type Endpoint,
  formatSocketAddress,
  openConnectEndpoint,
} from './endpoint.js';
import type { Listener } from './listener.js';
import { ProxyHeaderReader, type ProxyHeaderResult } from './proxy-header-reader.js';
import { encodeProxyHeader } from './proxy-protocol.js';
import { CompletionTrace } from './trace.js';
import type { Upstream } from './upstreams.js';

export type ConnectionState = 'connecting' | 'open' | 'closing' | 'closed';

/** RFC 8305 §5's Connection Attempt Delay: the next address starts if the last has not connected by then. */
const ATTEMPT_DELAY_MS = 250;

/** No target tried yet (shared: a connection allocates its list only when it picks one). */
const NO_TARGETS: readonly Upstream[] = [];

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
  directions: RelayDirection[] = [];
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
  /**
   * Forward mode: the target being connected to (or connected), counted in its connections
   * while this connection lives; the targets tried; the addresses the current one resolved
   * to, and how many of them were tried.
   */
  target: Upstream | null = null;
  private targetsTried: readonly Upstream[] = NO_TARGETS;
  /** Connects in flight to the target's addresses (several race: RFC 8305), and the stagger. */
  private attempts: Endpoint[] = [];
  private stagger: NodeJS.Timeout | null = null;
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
    if (this.attempts.length > 0) {
      const eps = [this.client, ...this.attempts];
      if (this.upstream && !this.attempts.includes(this.upstream)) eps.push(this.upstream);
      return eps;
    }
    return this.upstream ? [this.client, this.upstream] : [this.client];
  }

  get opsInFlight(): number {
    let n = 0;
    for (const ep of this.endpoints) n += ep.keyEntry.inFlight;
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
      this.directions = [new RelayDirection(this.core, this, this.client, this.client)];
      this.directions[0]?.start(this.takeEarly(null));
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
   * Forward mode: pick a target (upstreams.ts), resolve it now (names may change), then
   * ConnectEx to each address it resolved to in turn (upstream-addresses.ts) until one accepts;
   * when none does, the next target the balance picks, each at most once. The connect timeout
   * covers every name and every attempt.
   */
  private connectUpstream(): void {
    this.connectDeadline =
      performance.now() + this.core.listenerConfig(this.listener).connectTimeoutMs;
    void this.connectTarget();
  }

  private async connectTarget(): Promise<void> {
    const upstreams = this.listener.upstreams;
    const u = upstreams?.pick(this.targetsTried) ?? null;
    if (!upstreams || !u) {
      this.abort('forward listener without target');
      return;
    }
    this.targetsTried = [...this.targetsTried, u]; // rarely more than one
    upstreams.attach(u);
    this.target = u;
    this.candidates = [];
    this.tried = 0;
    const { host, port } = u.target;
    const literal = literalAddress(host, port);
    if (literal) {
      this.candidates = [literal];
      this.connectNext();
      return;
    }
    try {
      this.candidates = await upstreamAddresses(host, port);
      if (this.candidates.length === 0)
        throw Object.assign(new Error('no address'), { code: 'ENOTFOUND' });
    } catch (err) {
      if (this.state !== 'connecting' || this.target !== u) return; // closed while resolving
      const name = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      if (this.tryNextTarget(name)) return;
      this.core.announce.upstreamConnectFailed(this.listener, name, u.label);
      this.abort(`upstream ${u.label} not resolved: ${name}${this.triedNote()}`, name);
      return;
    }
    if (this.state !== 'connecting') return; // closed while resolving
    this.connectNext();
  }

  /**
   * Starts the connect to the next address the target resolved to. While it has not connected,
   * the one after it starts ATTEMPT_DELAY_MS later (RFC 8305's stagger): the first to connect
   * wins, the others are cancelled. A failed attempt starts the next address at once.
   */
  private connectNext(): void {
    this.clearStagger();
    const addr = this.candidates[this.tried++] as SocketAddress;
    let ep: Endpoint;
    try {
      ep = openConnectEndpoint(this.core, addr.family, {
        kind: 'connection',
        id: this.id,
        side: 'upstream',
      });
    } catch (err) {
      // Out of sockets or handles (EMFILE, WSAENOBUFS), no port to bind (WSAEADDRINUSE): the
      // upstream cannot be reached either, and is counted and logged as such.
      const name = err instanceof BackendError ? err.errorName : 'UNKNOWN';
      this.core.announce.upstreamConnectFailed(this.listener, name, this.target?.label);
      this.abort(`upstream socket: ${(err as Error).message}`, name);
      return;
    }
    this.attempts.push(ep);
    this.upstream = ep;
    ep.remote = addr;
    const rec = this.core.newOp('connect', ep.keyEntry, this);
    rec.peer = addr;
    this.core.submit(rec);
    if (this.tried < this.candidates.length) {
      this.stagger = setTimeout(() => {
        this.stagger = null;
        if (this.state === 'connecting' && !this.connectTimedOut) this.connectNext();
      }, ATTEMPT_DELAY_MS);
    }
  }

  private clearStagger(): void {
    if (this.stagger) clearTimeout(this.stagger);
    this.stagger = null;
  }

  /**
   * Closes the socket of a connect attempt that completed and lost (failed, or another won):
   * nothing of it is in flight. One with an op still in flight stays for the close to take.
   */
  private dropAttempt(ep: Endpoint, why: string): void {
    if (ep.keyEntry.inFlight > 0) return;
    this.attempts.splice(this.attempts.indexOf(ep), 1);
    this.core.log(
      'debug',
      { connection: this.id, upstream: formatSocketAddress(ep.remote), why },
      'upstream connect attempt dropped',
    );
    ep.closed = true;
    this.core.backend.closeSocket(ep.sock, true);
    this.core.releaseKey(ep.keyEntry);
    if (this.upstream === ep) this.upstream = this.attempts[this.attempts.length - 1] ?? null;
  }

  /** Every address of the current target failed: on to another target, if one is left. */
  private tryNextTarget(name: string): boolean {
    const upstreams = this.listener.upstreams;
    const u = this.target;
    if (!upstreams || !u) return false;
    upstreams.connectFailed(u, name);
    if (this.state !== 'connecting' || this.targetsTried.length >= upstreams.list.length)
      return false;
    if (performance.now() >= this.connectDeadline || this.attempts.length > 0) return false;
    upstreams.detach(u);
    this.target = null;
    void this.connectTarget();
    return true;
  }

  private triedNote(): string {
    const notes: string[] = [];
    if (this.targetsTried.length > 1) notes.push(`${this.targetsTried.length} targets tried`);
    if (this.tried > 1) notes.push(`${this.tried} addresses tried`);
    return notes.length > 0 ? ` (${notes.join(', ')})` : '';
  }

  /** Called by the engine's sweep when the upstream has not accepted in time. */
  connectTimeout(): void {
    if (this.state !== 'connecting') return;
    if (this.header) {
      this.abort('proxy header timeout: the client did not send a whole header in time');
      return;
    }
    this.connectTimedOut = true;
    this.clearStagger();
    if (this.attempts.length > 0) {
      // Each connect completes aborted; the last one counts the failure.
      for (const a of this.attempts) this.core.cancelAll(a.keyEntry);
      return;
    }
    // Still resolving the name: give up now.
    if (this.target) this.listener.upstreams?.connectFailed(this.target, 'CONNECT_TIMEOUT');
    this.core.announce.upstreamConnectFailed(this.listener, 'CONNECT_TIMEOUT', this.target?.label);
    this.abort('upstream connect failed: CONNECT_TIMEOUT (resolving the name)', 'CONNECT_TIMEOUT');
  }

  /** A connect op completed (one of the attempts racing, when the target has several addresses). */
  complete(rec: OpRecord, code: number): void {
    const ep = this.attempts.find((a) => a.keyEntry === rec.keyEntry) ?? null;
    if (this.state === 'open' && ep) {
      this.dropAttempt(ep, 'another address connected first'); // a loser of the race
      return;
    }
    if (this.state !== 'connecting' || !ep) {
      this.settled(); // closing: the close takes every socket, attempts too
      return;
    }
    const backend = this.core.backend;
    let name: string | null = null;
    if (code !== 0) {
      name = this.connectTimedOut ? 'CONNECT_TIMEOUT' : this.core.errorName(code);
      if (!this.connectTimedOut && this.core.backend.codes.resets.includes(code)) {
        // The handshake reached the upstream, which then reset at once: not a connect failure.
        this.abort(`upstream reset right after connect: ${name}`, name);
        return;
      }
    } else {
      const uc = backend.finishConnect(ep.sock);
      if (uc !== 0)
        this.core.announce.socketCallFailed(
          'update-context',
          this.core.errorName(uc),
          this.listener,
          this,
        );
      // Nothing listens at the target, and the port picked for this socket is the target's own
      // (a local target in the ephemeral range): TCP's simultaneous open connected the socket
      // to itself, and relaying would echo the client's bytes back. A refusal in all but name.
      if (connectedToItself(backend, ep)) name = 'SELF_CONNECT';
    }
    if (name !== null) {
      this.attemptFailed(ep, name);
      return;
    }
    this.clearStagger();
    this.upstream = ep;
    this.attempts.splice(this.attempts.indexOf(ep), 1);
    // The other attempts lose: cancelled, each dropped when its completion comes.
    for (const a of this.attempts) this.core.cancelAll(a.keyEntry);
    this.state = 'open';
    if (this.target) this.listener.upstreams?.connected(this.target);
    this.touch();
    this.directions = [
      new RelayDirection(this.core, this, this.client, ep),
      new RelayDirection(this.core, this, ep, this.client),
    ];
    const send = this.core.listenerConfig(this.listener).proxyProtocol?.send;
    const header = send ? encodeProxyHeader(send, this.client.remote, this.client.local) : null;
    this.directions[0]?.start(this.takeEarly(header));
    this.directions[1]?.start();
  }

  /**
   * One address failed: while others race, they decide; else the next address, else the next
   * target; when nothing is left (or the time is up) the client is reset, counted once.
   */
  private attemptFailed(ep: Endpoint, name: string): void {
    this.dropAttempt(ep, name);
    if (this.attempts.length > 0) {
      if (!this.connectTimedOut && this.tried < this.candidates.length) this.connectNext();
      return;
    }
    if (!this.connectTimedOut && this.tried < this.candidates.length) {
      this.connectNext();
      return;
    }
    if (!this.connectTimedOut && this.tryNextTarget(name)) return;
    // A timeout, or the last target failing (tryNextTarget counted that one already).
    if (this.connectTimedOut && this.target)
      this.listener.upstreams?.connectFailed(this.target, name);
    this.core.announce.upstreamConnectFailed(this.listener, name, this.target?.label);
    this.abort(
      name === 'SELF_CONNECT'
        ? `upstream connect failed: SELF_CONNECT (the socket connected to itself)${this.triedNote()}`
        : `upstream connect failed: ${name}${this.triedNote()}`,
      name,
    );
  }

  /** An op of a direction failed: the connection ends with RST (the peer reset, or bytes are lost). */
  failed(kind: OpKind, ep: Endpoint, code: number): void {
    const name = this.core.errorName(code);
    this.abort(`${ep.side} ${kind} failed: ${name}`, name);
  }

  /** A direction carried its EOF across (or stopped, while closing): maybe the end. */
  directionDone(): void {
    if (this.state === 'open' && this.directions.every((p) => p.done)) {
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
      for (const ep of this.endpoints) this.core.cancelAll(ep.keyEntry);
    } else {
      for (const p of this.directions) p.stopReading();
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
      for (const ep of this.endpoints) this.core.cancelAll(ep.keyEntry);
    }
    this.tryFinishClose(); // also when called from the completion of an op being cancelled
  }

  private tryFinishClose(): void {
    if (this.state !== 'closing' || this.opsInFlight > 0) return;
    for (const p of this.directions) p.dispose();
    for (const ep of this.endpoints) {
      ep.closed = true;
      this.core.backend.closeSocket(ep.sock, this.abortive);
      this.core.releaseKey(ep.keyEntry);
    }
    this.state = 'closed';
    this.clearStagger();
    if (this.target) this.listener.upstreams?.detach(this.target);
    this.core.connectionClosed(this);
  }
}
