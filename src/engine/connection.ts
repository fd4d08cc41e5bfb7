// A connection: the accepted client socket, in forward mode an upstream socket too, each under
// its own completion key, and the relay pipes between them. Closing follows DESIGN §1.5: cancel
// every op in flight, wait until each has completed, then closesocket, then release the keys.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { OpKind, SocketAddress } from './backend.js';
import type { EngineCore, OpOwner } from './core.js';
import type { KeyEntry } from './keys.js';
import type { Listener } from './listener.js';
import { Pipe } from './pipe.js';
import type { OpRecord } from './records.js';
import { CompletionTrace } from './trace.js';

export type ConnectionState = 'connecting' | 'open' | 'closing' | 'closed';

export class Endpoint {
  bytesIn = 0;
  bytesOut = 0;
  local: SocketAddress | null = null;
  remote: SocketAddress | null = null;

  constructor(
    readonly side: 'client' | 'upstream',
    readonly sock: number,
    readonly key: KeyEntry,
  ) {}
}

export function formatSocketAddress(a: SocketAddress | null): string | null {
  if (!a) return null;
  return a.family === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export class Connection implements OpOwner {
  state: ConnectionState = 'connecting';
  readonly createdAt = Date.now();
  lastActivity = performance.now();
  /** Start of the current idle-timeout window, and the bytes received from either peer in it. */
  windowStart = performance.now();
  windowBytes = 0;
  upstream: Endpoint | null = null;
  pipes: Pipe[] = [];
  closeReason: string | null = null;
  abortive = false;
  connectDeadline = 0;
  private connectTimedOut = false;
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
    for (const ep of this.endpoints) n += ep.key.pending;
    return n;
  }

  start(): void {
    if (this.listener.mode === 'echo') {
      this.state = 'open';
      this.pipes = [new Pipe(this.core, this, this.client, this.client)];
      this.pipes[0]?.start();
      return;
    }
    void this.connectUpstream();
  }

  touch(): void {
    this.lastActivity = performance.now();
  }

  /** Bytes received (from the client or the upstream): progress for the idle/slow check. */
  received(bytes: number): void {
    this.windowBytes += bytes;
  }

  /** Forward mode: resolve the target now (names may change), then ConnectEx. */
  private async connectUpstream(): Promise<void> {
    const target = this.listener.target;
    if (!target) throw new Error('forward listener without target');
    let addr: SocketAddress;
    try {
      if (isIP(target.host)) {
        addr = { host: target.host, port: target.port, family: isIP(target.host) === 6 ? 6 : 4 };
      } else {
        const r = await lookup(target.host);
        addr = { host: r.address, port: target.port, family: r.family === 6 ? 6 : 4 };
      }
    } catch (err) {
      const name = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      this.core.upstreamConnectFailed(this.listener, name);
      this.close(`upstream ${target.host}:${target.port} not resolved: ${name}`, true);
      return;
    }
    if (this.state !== 'connecting') return; // closed while resolving
    const backend = this.core.backend;
    let sock = -1;
    try {
      sock = backend.createSocket(addr.family);
      backend.bindAny(sock, addr.family);
      const key = this.core.assignKey(sock, { kind: 'connection', id: this.id, side: 'upstream' });
      this.upstream = new Endpoint('upstream', sock, key);
      backend.associate(sock, key.key);
    } catch (err) {
      if (this.upstream) {
        this.close(`upstream socket: ${(err as Error).message}`, true);
      } else {
        if (sock !== -1) backend.closeSocket(sock, true);
        this.close(`upstream socket: ${(err as Error).message}`, true);
      }
      return;
    }
    this.upstream.remote = addr;
    this.connectDeadline =
      performance.now() + this.core.listenerConfig(this.listener).connectTimeoutMs;
    this.core.startOp('connect', this.upstream.key, this, (rec) =>
      backend.connect(sock, addr, rec),
    );
  }

  /** Called by the engine's sweep when the upstream has not accepted in time. */
  connectTimeout(): void {
    if (this.state !== 'connecting' || !this.upstream) return;
    this.connectTimedOut = true;
    this.core.backend.cancel(this.upstream.sock, null);
  }

  /** The connect op completed. */
  complete(rec: OpRecord, code: number): void {
    const up = this.upstream as Endpoint;
    if (this.state !== 'connecting') {
      this.opSettled();
      return;
    }
    if (code !== 0) {
      const name = this.connectTimedOut ? 'CONNECT_TIMEOUT' : this.core.backend.errorName(code);
      this.core.upstreamConnectFailed(this.listener, name);
      this.close(`upstream connect failed: ${name}`, true);
      return;
    }
    void rec;
    const backend = this.core.backend;
    backend.finishConnect(up.sock);
    up.local = backend.localAddress(up.sock);
    this.state = 'open';
    this.touch();
    this.pipes = [
      new Pipe(this.core, this, this.client, up),
      new Pipe(this.core, this, up, this.client),
    ];
    for (const p of this.pipes) p.start();
  }

  /** An op of a pipe failed: the connection ends, abortively (the peer reset or is gone). */
  failed(kind: OpKind, ep: Endpoint, code: number): void {
    if (this.state !== 'open') return;
    // A cancelled read ends the connection (DESIGN §1.5), but nothing went wrong with the peer.
    if (code === this.core.backend.codes.operationAborted) {
      this.close(`${ep.side} ${kind} cancelled`, false);
      return;
    }
    this.close(`${ep.side} ${kind} failed: ${this.core.backend.errorName(code)}`, true);
  }

  pipeDone(): void {
    if (this.pipes.every((p) => p.done)) this.close('eof', false);
  }

  /** An op completed while closing: finish once none is left. */
  opSettled(): void {
    if (this.state === 'closing') this.tryFinishClose();
  }

  close(reason: string, abortive: boolean): void {
    if (this.state === 'closing' || this.state === 'closed') {
      if (abortive) this.abortive = true;
      return;
    }
    this.state = 'closing';
    this.closeReason = reason;
    this.abortive = abortive;
    for (const ep of this.endpoints) {
      if (ep.key.pending > 0) this.core.backend.cancel(ep.sock, null);
    }
    this.tryFinishClose();
  }

  private tryFinishClose(): void {
    if (this.opsInFlight > 0) return;
    for (const ep of this.endpoints) {
      this.core.backend.closeSocket(ep.sock, this.abortive);
      this.core.releaseKey(ep.key);
    }
    this.state = 'closed';
    this.core.connectionClosed(this);
  }
}
