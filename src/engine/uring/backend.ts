// The Linux completion backend: one io_uring, op records in pinned memory whose address is the
// SQE user_data (as the OVERLAPPED address is on Windows), and an emulated per-fd completion key
// so every completion carries the key its socket was associated with (DESIGN §1.1–1.3).
// The event loop is never blocked: uv_poll on the ring fd says "CQEs ready", and the reap runs
// in a setImmediate turn. SQEs are buffered and submitted once per turn.
import {
  type Backend,
  BackendError,
  type CompletionSink,
  PENDING,
  type RecordMemory,
  type Sock,
  type SocketAddress,
  type StartResult,
} from '../backend.js';
import type { PinnedBlock } from '../pinned.js';
import {
  EAGAIN,
  EALREADY,
  EBADF,
  EBUSY,
  ECANCELED,
  ECONNREFUSED,
  EINPROGRESS,
  EINTR,
  ENOENT,
  ETIMEDOUT,
  errnoName,
} from './errors.js';
import {
  CANCEL_ALL,
  CANCEL_ANY,
  CANCEL_FD,
  ENTER_GETEVENTS,
  HDR_BYTES,
  HDR_FD,
  HDR_KEY,
  HDR_OPCODE,
  HDR_RES,
  HDR_SOCKADDR,
  OP_ACCEPT,
  OP_ASYNC_CANCEL,
  OP_CONNECT,
  OP_NOP,
  OP_POLL_ADD,
  OP_RECV,
  OP_SEND,
  POLLIN,
  RECORD_HEADER_SIZE,
  SQ_CQ_OVERFLOW,
  SQ_TASKRUN,
} from './layout.js';
import { Ring } from './ring.js';
import { readSockaddr, writeSockaddr } from './sockaddr.js';
import * as sys from './syscalls.js';

export interface UringOptions {
  /** SQ size (rounded up to a power of two by the kernel). */
  sqEntries?: number;
  /** CQ size: every op in flight may complete in one turn, so keep it well above the SQ. */
  cqEntries?: number;
  /** Where errors that no caller can receive go (a throwing sink, a failed poll). */
  onError?: (err: unknown) => void;
}

/** CQEs handed to the sink per reap round, and rounds per turn before yielding to the loop. */
export const REAP_BATCH = 256;
export const MAX_ROUNDS = 8;
/** How long stop() waits for cancelled ops to come back before closing the ring anyway. */
const STOP_DRAIN_MS = 2000;
const WAKE_KEY = 0n;
/** user_data of the backend's own SQEs (cancels): their CQEs never reach the sink. */
const INTERNAL = 0n;
const MSG_WAITALL = 0x100;

export class UringBackend implements Backend {
  readonly name = 'uring' as const;
  readonly recordHeaderSize = RECORD_HEADER_SIZE;
  readonly wakeKey = WAKE_KEY;
  /** IORING_OP_ACCEPT creates the connection's socket itself: see acceptedSocket. */
  readonly preCreatesAcceptSocket = false;
  readonly codes = {
    operationAborted: ECANCELED,
    connectionRefused: ECONNREFUSED,
    timedOut: ETIMEDOUT,
  };

  private readonly ring: Ring;
  /** The emulated completion keys: fd → key, set by associate, dropped by closeSocket. */
  private readonly keys = new Map<number, bigint>();
  /** Ops the kernel owns: user_data (record address) → record. */
  private readonly inflight = new Map<number, RecordMemory>();
  /** Ops in the kernel per fd, so closeSocket can cancel what the engine left behind. */
  private readonly fdOps = new Map<number, number>();
  /** Scratch for synchronous calls only; the kernel never keeps it. */
  private readonly scratch = Buffer.alloc(256);
  private readonly scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, 256);
  private readonly onError: (err: unknown) => void;

  private sink: CompletionSink | null = null;
  /** Must stay referenced: a collected poll handle closes itself and the process may exit. */
  private pollHandle: sys.PollHandle | null = null;
  private turnQueued = false;
  private flushQueued = false;
  private inTurn = false;
  private batchCount = 0;
  private stopping = false;
  private stopped: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  constructor(options: UringOptions = {}) {
    this.ring = Ring.open({
      sqEntries: options.sqEntries ?? 1024,
      cqEntries: options.cqEntries ?? 8192,
    });
    this.onError =
      options.onError ??
      ((err) => {
        const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
        process.stderr.write(`keyport uring backend: ${text}\n`);
      });
  }

  /** Ops submitted (or queued for submission) whose completion has not been reaped. */
  get opsInFlight(): number {
    return this.inflight.size;
  }

  /** Setup flags and features the kernel granted, for diagnostics. */
  get ringInfo(): { sqEntries: number; cqEntries: number; flags: number; features: number } {
    const r = this.ring;
    return {
      sqEntries: r.sqEntries,
      cqEntries: r.cqEntries,
      flags: r.setupFlags,
      features: r.features,
    };
  }

  allocPinned(size: number): PinnedBlock {
    const addr = sys.koffi.alloc('uint8_t', size) as bigint;
    const bytes = new Uint8Array(sys.koffi.view(addr, size));
    return { addr, bytes };
  }

  freePinned(block: PinnedBlock): void {
    sys.koffi.free(block.addr);
  }

  private fail(call: string, code: number, detail?: string): never {
    throw new BackendError(call, code, errnoName(code), detail);
  }

  // ---- the completion loop ----------------------------------------------------------------

  start(sink: CompletionSink): void {
    if (this.sink || this.stopping)
      throw new Error('UringBackend.start: already started or stopped');
    this.sink = sink;
    // koffi calls this outside any callback scope: microtasks would not run after it and
    // exceptions vanish. So it only schedules a turn, which runs as a normal Node callback.
    this.pollHandle = sys.poll(this.ring.fd, { readable: true }, (status) => {
      if (status < 0) {
        this.onError(new BackendError('uv_poll(io_uring)', -status, errnoName(-status)));
        return;
      }
      this.queueTurn();
    });
    this.queueTurn(); // whatever completed before start
  }

  private queueTurn(): void {
    if (this.turnQueued) return;
    this.turnQueued = true;
    setImmediate(this.turnTask);
  }

  private readonly turnTask = (): void => {
    this.turnQueued = false;
    if (this.ring.closed || !this.sink) return;
    this.inTurn = true;
    try {
      this.turn(this.sink);
    } catch (err) {
      this.onError(err);
    } finally {
      this.inTurn = false;
    }
    if (this.drained && this.inflight.size === 0) this.drained();
  };

  /** Bounded reap rounds; each submits what the previous round's completions started. */
  private turn(sink: CompletionSink): void {
    const ring = this.ring;
    let more = false;
    for (let round = 0; ; round++) {
      // Entering runs deferred task work (COOP_TASKRUN) and flushes an overflowed CQ.
      if (ring.pending() > 0 || ring.sqFlags() & (SQ_TASKRUN | SQ_CQ_OVERFLOW)) this.submit(true);
      const n = ring.reap(REAP_BATCH, this.onCqe);
      if (this.batchCount > 0) {
        const size = this.batchCount;
        this.batchCount = 0;
        try {
          sink.batch(size);
        } catch (err) {
          this.onError(err);
        }
      }
      if (n === 0) break;
      if (round + 1 === MAX_ROUNDS) {
        more = true;
        break;
      }
    }
    if (ring.pending() > 0) this.submit(false);
    // Level-triggered poll would call again for ready CQEs, but not for pending task work.
    if (more || ring.cqReady() > 0 || ring.sqFlags() & (SQ_TASKRUN | SQ_CQ_OVERFLOW)) {
      this.queueTurn();
    }
  }

  private readonly onCqe = (lo: number, hi: number, res: number): void => {
    if (lo === 0 && hi === 0) {
      // A cancel's own result: ENOENT/EALREADY just mean the op was already done or finishing.
      if (res < 0 && res !== -ENOENT && res !== -EALREADY) {
        this.onError(new BackendError('IORING_OP_ASYNC_CANCEL', -res, errnoName(-res)));
      }
      return;
    }
    const addr = hi * 0x1_0000_0000 + lo;
    const rec = this.inflight.get(addr);
    if (!rec) {
      this.onError(new Error(`io_uring completion for unknown user_data 0x${addr.toString(16)}`));
      return;
    }
    this.inflight.delete(addr);
    const v = rec.view;
    v.setInt32(HDR_RES, res, true);
    const op = v.getUint8(HDR_OPCODE);
    let bytes = 0;
    if (op === OP_NOP) bytes = v.getUint32(HDR_BYTES, true);
    else {
      if (res > 0 && (op === OP_RECV || op === OP_SEND)) bytes = res;
      v.setUint32(HDR_BYTES, bytes, true);
    }
    const fd = v.getInt32(HDR_FD, true);
    if (fd >= 0) this.dropFdOp(fd);
    this.batchCount++;
    try {
      this.sink?.completion(v.getBigUint64(HDR_KEY, true), addr, bytes);
    } catch (err) {
      this.onError(err);
    }
  };

  private dropFdOp(fd: number): void {
    const n = (this.fdOps.get(fd) ?? 1) - 1;
    if (n > 0) this.fdOps.set(fd, n);
    else this.fdOps.delete(fd);
  }

  /** Submits every buffered SQE; `force` enters even with none (task work, CQ overflow). */
  private submit(force: boolean): void {
    const ring = this.ring;
    let interrupted = 0;
    while (force || ring.pending() > 0) {
      force = false;
      const before = ring.pending();
      const r = ring.enter(before, 0, ENTER_GETEVENTS);
      if (r >= 0) {
        if (before > 0 && ring.pending() === before) {
          this.queueTurn(); // no progress: try again next turn
          return;
        }
        continue;
      }
      const e = -r;
      if (e === EINTR && ++interrupted < 16) {
        force = true;
        continue;
      }
      if (e === EAGAIN || e === EBUSY) {
        this.queueTurn(); // the kernel is short of memory or the CQ backlog must drain first
        return;
      }
      this.fail('io_uring_enter', e);
    }
  }

  /** Outside a turn, SQEs are submitted once per engine turn (end of the current macrotask). */
  private scheduleFlush(): void {
    if (this.inTurn || this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(this.flushTask);
  }

  private readonly flushTask = (): void => {
    this.flushQueued = false;
    if (this.ring.closed || this.ring.pending() === 0) return;
    try {
      this.submit(false);
    } catch (err) {
      this.onError(err);
    }
  };

  private push(
    opcode: number,
    fd: number,
    addr: bigint,
    len: number,
    off: bigint,
    opFlags: number,
    userData: bigint,
  ): void {
    const ring = this.ring;
    if (ring.push(opcode, fd, addr, len, off, opFlags, userData)) return;
    this.submit(false); // SQ full: hand it to the kernel, then there is room
    if (!ring.push(opcode, fd, addr, len, off, opFlags, userData)) {
      this.fail('io_uring(sq)', EBUSY, 'submission queue full');
    }
  }

  /** Stamps the header and queues the op. The fd's key is captured now, as IOCP fixes it. */
  private startOp(
    call: string,
    rec: RecordMemory,
    opcode: number,
    fd: number,
    addr: bigint,
    len: number,
    off: bigint,
    opFlags: number,
  ): StartResult {
    if (this.stopping) return ECANCELED;
    const key = this.keys.get(fd);
    if (key === undefined) this.fail(call, EBADF, `fd ${fd} is not associated with a key`);
    const id = Number(rec.addr);
    if (this.inflight.has(id))
      throw new Error(`${call}: op record ${rec.addr} is already in flight`);
    const v = rec.view;
    v.setInt32(HDR_RES, -EINPROGRESS, true);
    v.setUint32(HDR_BYTES, 0, true);
    v.setInt32(HDR_FD, fd, true);
    v.setUint8(HDR_OPCODE, opcode);
    v.setBigUint64(HDR_KEY, key, true);
    this.push(opcode, fd, addr, len, off, opFlags, rec.addr);
    this.inflight.set(id, rec);
    this.fdOps.set(fd, (this.fdOps.get(fd) ?? 0) + 1);
    this.scheduleFlush();
    return PENDING;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    if (this.sink && this.inflight.size > 0 && !this.ring.closed) {
      // Cancel everything and let the sink see each op come back (ECANCELED) before closing.
      const drained = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, STOP_DRAIN_MS);
      });
      try {
        this.push(OP_ASYNC_CANCEL, -1, 0n, 0, 0n, CANCEL_ANY | CANCEL_ALL, INTERNAL);
        this.submit(false);
      } catch (err) {
        this.onError(err);
      }
      this.queueTurn();
      await Promise.race([drained, timeout]);
      clearTimeout(timer);
      this.drained = null;
      if (this.inflight.size > 0) {
        this.onError(
          new Error(`stop: ${this.inflight.size} io_uring ops still in flight; closing the ring`),
        );
      }
    }
    // Order matters: no more poll callbacks, then the fd, then the mappings (views die with it).
    this.pollHandle?.close();
    this.pollHandle = null;
    this.ring.close();
  }

  /** Queues a NOP whose completion carries `key` and `bytes` (the IOCP post's twin). */
  post(key: bigint, rec: RecordMemory, bytes: number): void {
    if (this.ring.closed) this.fail('post', EBADF, 'ring closed');
    const id = Number(rec.addr);
    if (this.inflight.has(id)) throw new Error(`post: op record ${rec.addr} is already in flight`);
    const v = rec.view;
    v.setInt32(HDR_RES, -EINPROGRESS, true);
    v.setUint32(HDR_BYTES, bytes >>> 0, true);
    v.setInt32(HDR_FD, -1, true);
    v.setUint8(HDR_OPCODE, OP_NOP);
    v.setBigUint64(HDR_KEY, key, true);
    this.push(OP_NOP, -1, 0n, 0, 0n, 0, rec.addr);
    this.inflight.set(id, rec);
    this.scheduleFlush();
  }

  resultCode(rec: RecordMemory): number {
    const res = rec.view.getInt32(HDR_RES, true);
    return res < 0 ? -res : 0;
  }

  rawStatus(rec: RecordMemory): number {
    return rec.view.getInt32(HDR_RES, true);
  }

  /** io_uring ops never finish inline: every one completes through the CQ. */
  inlineBytes(_rec: RecordMemory): number {
    return 0;
  }

  // ---- sockets ----------------------------------------------------------------------------

  createSocket(family: 4 | 6): Sock {
    // Blocking mode is fine: io_uring never blocks the caller on a socket op.
    const af = family === 4 ? sys.AF_INET : sys.AF_INET6;
    const fd = sys.socket(af, sys.SOCK_STREAM | sys.SOCK_CLOEXEC, 0) as number;
    if (fd < 0) this.fail('socket', sys.errno());
    if (family === 6) {
      const e = this.setIntOption(fd, sys.IPPROTO_IPV6, sys.IPV6_V6ONLY, 1);
      if (e !== 0) {
        sys.close(fd);
        this.fail('setsockopt(IPV6_V6ONLY)', e);
      }
    }
    return fd;
  }

  private setIntOption(fd: Sock, level: number, name: number, value: number): number {
    this.scratchView.setInt32(0, value, true);
    return sys.setsockopt(fd, level, name, this.scratch, 4) === 0 ? 0 : sys.errno();
  }

  listen(sock: Sock, addr: SocketAddress, backlog: number): SocketAddress {
    // Lets a restarted keyport bind while old connections sit in TIME_WAIT; unlike Windows,
    // Linux still refuses a second listener on the port (that would take SO_REUSEPORT).
    const e = this.setIntOption(sock, sys.SOL_SOCKET, sys.SO_REUSEADDR, 1);
    if (e !== 0) this.fail('setsockopt(SO_REUSEADDR)', e);
    const len = writeSockaddr(this.scratchView, 0, addr);
    if (sys.bind(sock, this.scratch, len) !== 0) {
      this.fail('bind', sys.errno(), `${addr.host}:${addr.port}`);
    }
    if (sys.listen(sock, backlog) !== 0) this.fail('listen', sys.errno());
    return this.localAddress(sock) ?? addr;
  }

  bindAny(sock: Sock, family: 4 | 6): void {
    const host = family === 4 ? '0.0.0.0' : '::';
    const len = writeSockaddr(this.scratchView, 0, { host, port: 0, family });
    if (sys.bind(sock, this.scratch, len) !== 0) this.fail('bind', sys.errno());
  }

  associate(sock: Sock, key: bigint): void {
    this.keys.set(sock, key);
  }

  /** `acceptSock` is ignored (the kernel creates the socket); the engine passes -1. */
  accept(listenSock: Sock, _acceptSock: Sock, rec: RecordMemory): StartResult {
    // No peer address is requested: peerAddress() asks the new socket when needed.
    return this.startOp('accept', rec, OP_ACCEPT, listenSock, 0n, 0, 0n, sys.SOCK_CLOEXEC);
  }

  /** The accepted connection's fd, from the CQE result; -1 if the accept failed. */
  acceptedSocket(rec: RecordMemory, _acceptSock: Sock): Sock {
    const v = rec.view;
    const res = v.getInt32(HDR_RES, true);
    return v.getUint8(HDR_OPCODE) === OP_ACCEPT && res >= 0 ? res : -1;
  }

  /** Nothing to inherit on Linux (SO_UPDATE_ACCEPT_CONTEXT is a Winsock need). */
  finishAccept(_listenSock: Sock, _acceptSock: Sock): number {
    return 0;
  }

  connect(sock: Sock, addr: SocketAddress, rec: RecordMemory): StartResult {
    // The sockaddr lives in the record: the kernel copies it when the SQE is submitted, later.
    const len = writeSockaddr(rec.view, HDR_SOCKADDR, addr);
    const sa = rec.addr + BigInt(HDR_SOCKADDR);
    return this.startOp('connect', rec, OP_CONNECT, sock, sa, 0, BigInt(len), 0);
  }

  finishConnect(_sock: Sock): number {
    return 0;
  }

  recv(sock: Sock, rec: RecordMemory, buf: bigint, len: number): StartResult {
    return this.startOp('recv', rec, OP_RECV, sock, buf, len, 0n, 0);
  }

  /** POLL_ADD(POLLIN): completes with the ready mask once data or EOF can be read. */
  waitReadable(sock: Sock, rec: RecordMemory): StartResult {
    return this.startOp('recv', rec, OP_POLL_ADD, sock, 0n, 0, 0n, POLLIN);
  }

  send(sock: Sock, rec: RecordMemory, buf: bigint, len: number): StartResult {
    // WAITALL: like WSASend, the op completes when all of `len` is sent (or on error).
    return this.startOp('send', rec, OP_SEND, sock, buf, len, 0n, MSG_WAITALL | sys.MSG_NOSIGNAL);
  }

  shutdownSend(sock: Sock): number {
    return sys.shutdown(sock, sys.SHUT_WR) === 0 ? 0 : sys.errno();
  }

  /** Queues IORING_OP_ASYNC_CANCEL; the op itself then completes with ECANCELED. */
  cancel(sock: Sock, rec: RecordMemory | null): number {
    if (this.ring.closed) return EBADF;
    if (rec) {
      if (!this.inflight.has(Number(rec.addr))) return ENOENT;
      this.push(OP_ASYNC_CANCEL, -1, rec.addr, 0, 0n, 0, INTERNAL);
    } else {
      if (!this.fdOps.has(sock)) return ENOENT;
      this.push(OP_ASYNC_CANCEL, sock, 0n, 0, 0n, CANCEL_FD | CANCEL_ALL, INTERNAL);
    }
    this.scheduleFlush();
    return 0;
  }

  closeSocket(sock: Sock, abortive: boolean): void {
    if (!this.ring.closed) {
      // close() does not cancel io_uring requests (Windows' closesocket does): a request left
      // behind would hold the socket open and never complete. The engine cancels first; this
      // is the safety net. Queued SQEs naming this fd must reach the kernel before the number
      // can be reused.
      if (this.fdOps.has(sock)) this.cancel(sock, null);
      if (this.ring.pending() > 0) this.submit(false);
    }
    if (abortive) {
      // SO_LINGER {on, 0}: close sends RST instead of FIN.
      this.scratchView.setInt32(0, 1, true);
      this.scratchView.setInt32(4, 0, true);
      sys.setsockopt(sock, sys.SOL_SOCKET, sys.SO_LINGER, this.scratch, 8);
    }
    sys.close(sock);
    this.keys.delete(sock);
  }

  private sockaddrOf(fn: typeof sys.getsockname, sock: Sock): SocketAddress | null {
    this.scratchView.setUint32(128, 128, true);
    if (fn(sock, this.scratch, this.scratch.subarray(128)) !== 0) return null;
    return readSockaddr(this.scratchView, 0);
  }

  localAddress(sock: Sock): SocketAddress | null {
    return this.sockaddrOf(sys.getsockname, sock);
  }

  peerAddress(sock: Sock): SocketAddress | null {
    return this.sockaddrOf(sys.getpeername, sock);
  }

  errorName(code: number): string {
    return errnoName(code);
  }
}
