// The Linux completion backend: one io_uring, op records in pinned memory whose address is the
// SQE user_data (as the OVERLAPPED address is on Windows), and an emulated per-fd completion key
// so every completion carries the key its socket was associated with (DESIGN §1.1–1.3). Which
// ops are in flight is the engine's op table's business alone: the backend keeps only a count.
// Every cancel names one op by its user_data, which every io_uring kernel supports (cancel by
// fd, CANCEL_FD|ALL, needs 5.19).
// The event loop is never blocked: uv_poll on the ring fd says "CQEs ready", and the reap runs
// in a setImmediate turn. SQEs are buffered and submitted once per turn.
import {
  type Backend,
  BackendError,
  type CompletionSink,
  type KernelPipe,
  type OpData,
  PENDING,
  type RecordLookup,
  type RecordMemory,
  type Sock,
  type SocketAddress,
  type StartResult,
} from '../backend.js';
import { FAULTS, wrongKey } from '../faults.js';
import type { PinnedBlock } from '../tables/pinned.js';
import {
  EAGAIN,
  EALREADY,
  EBADF,
  EBUSY,
  ECANCELED,
  ECONNABORTED,
  ECONNREFUSED,
  ECONNRESET,
  EINPROGRESS,
  EINTR,
  EINVAL,
  EMFILE,
  ENOENT,
  ETIMEDOUT,
  errnoName,
} from './errors.js';
import {
  CANCEL_ALL,
  CANCEL_ANY,
  CQE_BUFFER_SHIFT,
  CQE_F_BUFFER,
  ENTER_GETEVENTS,
  HDR_BUFFER,
  HDR_BYTES,
  HDR_FD,
  HDR_KEY,
  HDR_OPCODE,
  HDR_RES,
  HDR_SOCKADDR,
  IOSQE_BUFFER_SELECT,
  NO_OFFSET,
  OP_ACCEPT,
  OP_ASYNC_CANCEL,
  OP_CONNECT,
  OP_NOP,
  OP_POLL_ADD,
  OP_RECV,
  OP_SEND,
  OP_SPLICE,
  POLLIN,
  RECORD_HEADER_SIZE,
  SPLICE_F_MOVE,
  SQ_CQ_OVERFLOW,
  SQ_TASKRUN,
} from './layout.js';
import { ProvidedBuffers, ProvidedBuffersUnavailable } from './provided.js';
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
  /**
   * Behave as on a kernel older than 5.19: the fallback ring set-up and no CANCEL_ANY at stop
   * (KEYPORT_URING_COMPAT=1 does this for a whole keyport process, for tests).
   */
  compat?: boolean;
}

/** CQEs handed to the sink per reap round, and rounds per turn before yielding to the loop. */
export const REAP_BATCH = 256;
export const MAX_ROUNDS = 8;
/** How long stop() waits for cancelled ops to come back before closing the ring anyway. */
const STOP_DRAIN_MS = 2000;
const WAKE_KEY = 0n;
/** user_data of the backend's own SQEs (cancels): their CQEs never reach the sink. */
const INTERNAL = 0n;
/** The one provided-buffer group, and its size (a power of two: a fixed cost, not per connection). */
const PROVIDED_GROUP = 0;
export const PROVIDED_BUFFERS = 256;
/** What a splice pipe asks to hold, and what a pipe holds when the system refuses more. */
const PIPE_BYTES = 1024 * 1024;
const DEFAULT_PIPE_BYTES = 64 * 1024;
/** user_data of the start-up probe for CANCEL_ANY. */
const PROBE = 1n;
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
    invalidArgument: EINVAL,
    notFound: ENOENT,
    resets: [ECONNRESET, ECONNABORTED],
  };
  /** HDR_RES holds -EINPROGRESS from submission until the CQE is reaped. */
  readonly statusWord = { offset: HDR_RES, pending: -EINPROGRESS, bytesOffset: HDR_BYTES };

  private readonly ring: Ring;
  /** The emulated completion keys: fd → key, set by associate, dropped by closeSocket. */
  private readonly keys = new Map<number, bigint>();
  /** SQEs submitted (or queued) whose CQE has not been reaped: a count, not a second table. */
  private inKernel = 0;
  private records: RecordLookup = () => undefined;
  /** The kernel takes IORING_ASYNC_CANCEL_ANY (5.19+): stop() can cancel what is left. */
  readonly canCancelAny: boolean;
  private liveSockets = 0;
  private associations = 0;
  private dequeued = 0;
  /** Scratch for synchronous calls only; the kernel never keeps it. */
  private readonly scratch = Buffer.alloc(256);
  private readonly scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, 256);
  private readonly onError: (err: unknown) => void;

  /** The provided-buffer ring, once the engine asked for it (null: none, or refused). */
  private provided: ProvidedBuffers | null = null;
  /** Why provided buffers are not used, when they are not (for the log and /stats). */
  providedRefusal: string | null = null;
  private readonly compat: boolean;
  /** IORING_OP_SPLICE is there (5.7+); asked of the probe once, when a pipe is first wanted. */
  private canSplice: boolean | undefined = undefined;
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
    const compat = options.compat ?? process.env.KEYPORT_URING_COMPAT === '1';
    this.compat = compat;
    this.ring = Ring.open({
      sqEntries: options.sqEntries ?? 1024,
      cqEntries: options.cqEntries ?? 8192,
      compat,
    });
    this.canCancelAny = !compat && this.probeCancelAny();
    this.onError =
      options.onError ??
      ((err) => {
        const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
        process.stderr.write(`keyport uring backend: ${text}\n`);
      });
  }

  /** Ops submitted (or queued for submission) whose completion has not been reaped. */
  get inFlight(): number {
    return this.inKernel;
  }

  /** Asks the kernel, once, whether ASYNC_CANCEL takes flags (EINVAL before 5.19). */
  private probeCancelAny(): boolean {
    const ring = this.ring;
    ring.push(OP_ASYNC_CANCEL, -1, 0n, 0, 0n, CANCEL_ANY, PROBE);
    ring.enter(1, 1, ENTER_GETEVENTS);
    let res = -EINVAL;
    ring.reap(1, (_lo, _hi, r) => {
      res = r;
    });
    return res !== -EINVAL;
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

  /**
   * A provided-buffer ring of PROVIDED_BUFFERS blocks; null (with the reason kept) on a kernel
   * before 5.19 or in compat mode, where a waiting read is a POLL_ADD instead.
   */
  provideBuffers(blockSize: number): ProvidedBuffers | null {
    if (this.provided) return this.provided;
    if (this.compat) {
      this.providedRefusal = 'compat mode (a kernel before 5.19)';
      return null;
    }
    try {
      // Test fault provided-buffers:N: a ring small enough to run out.
      const count = FAULTS.providedBuffers || PROVIDED_BUFFERS;
      this.provided = new ProvidedBuffers(this.ring, this, PROVIDED_GROUP, blockSize, count);
    } catch (err) {
      if (!(err instanceof ProvidedBuffersUnavailable)) throw err;
      this.providedRefusal = `the kernel refused a provided-buffer ring: ${errnoName(err.errno)}`;
    }
    return this.provided;
  }

  createPipe(): KernelPipe | null {
    this.canSplice ??= this.ring.supports(OP_SPLICE);
    if (!this.canSplice) return null;
    const fds = new Int32Array(2);
    if (sys.pipe2(fds, sys.O_CLOEXEC) !== 0) return null;
    const [read, write] = fds as unknown as [number, number];
    // Larger pipes move more per splice (each one is a trip through an io-wq worker); where the
    // system refuses (pipe-max-size, a user's pipe-user-pages-soft), the default 64 KiB stays.
    const capacity = sys.fcntl(write, sys.F_SETPIPE_SZ, PIPE_BYTES);
    return { read, write, capacity: capacity > 0 ? capacity : DEFAULT_PIPE_BYTES };
  }

  closePipe(pipe: KernelPipe): void {
    sys.close(pipe.read);
    sys.close(pipe.write);
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

  start(sink: CompletionSink, records: RecordLookup): void {
    if (this.sink || this.stopping)
      throw new Error('UringBackend.start: already started or stopped');
    this.sink = sink;
    this.records = records;
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
    if (this.drained && this.inKernel === 0) this.drained();
  };

  /** Bounded reap rounds; each submits what the previous round's completions started. */
  private turn(sink: CompletionSink): void {
    const ring = this.ring;
    let more = false;
    for (let round = 0; ; round++) {
      // Entering runs deferred task work (COOP_TASKRUN) and flushes an overflowed CQ.
      if (ring.unsubmitted() > 0 || ring.sqFlags() & (SQ_TASKRUN | SQ_CQ_OVERFLOW))
        this.enterRing(true);
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
    if (ring.unsubmitted() > 0) this.enterRing(false);
    // Level-triggered poll would call again for ready CQEs, but not for pending task work.
    if (more || ring.cqReady() > 0 || ring.sqFlags() & (SQ_TASKRUN | SQ_CQ_OVERFLOW)) {
      this.queueTurn();
    }
  }

  private readonly onCqe = (lo: number, hi: number, res: number, flags: number): void => {
    if (hi === 0 && (lo === 0 || lo === 1)) {
      // A cancel's own result: ENOENT/EALREADY just mean the op was already done or finishing.
      if (res < 0 && res !== -ENOENT && res !== -EALREADY) {
        this.onError(new BackendError('IORING_OP_ASYNC_CANCEL', -res, errnoName(-res)));
      }
      return;
    }
    this.inKernel--;
    this.batchCount++;
    const addr = hi * 0x1_0000_0000 + lo;
    const rec = this.records(addr);
    if (!rec) {
      // Not a record of ours at all: the engine counts it as stray (no key can be read).
      this.deliver(WAKE_KEY, addr, 0, 0);
      return;
    }
    const v = rec.view;
    const op = v.getUint8(HDR_OPCODE);
    if (op === OP_ACCEPT && res >= 0) res = this.admitAccepted(res);
    // The buffer the kernel picked is part of the op's result, kept in the record with it.
    if (flags & CQE_F_BUFFER) v.setUint16(HDR_BUFFER, (flags >>> CQE_BUFFER_SHIFT) + 1, true);
    // The record is this op's IO_STATUS_BLOCK: the result, then the byte count.
    v.setInt32(HDR_RES, res, true);
    let bytes = 0;
    if (op === OP_NOP) bytes = v.getUint32(HDR_BYTES, true);
    else {
      if (res > 0 && (op === OP_RECV || op === OP_SEND || op === OP_SPLICE)) bytes = res;
      v.setUint32(HDR_BYTES, bytes, true);
    }
    const key = v.getBigUint64(HDR_KEY, true);
    const status = res < 0 ? -res : 0;
    this.deliver(key, addr, bytes, status);
    if (FAULTS.duplicateEvery > 0 && ++this.dequeued % FAULTS.duplicateEvery === 0) {
      this.deliver(key, addr, bytes, status); // test fault: the same CQE once more
    }
  };

  private deliver(key: bigint, addr: number, bytes: number, status: number): void {
    try {
      this.sink?.completion(key, addr, bytes, status);
    } catch (err) {
      this.onError(err);
    }
  }

  /** Test fault socket-limit: an accepted fd over the limit is closed and the accept fails. */
  private admitAccepted(fd: number): number {
    if (FAULTS.socketLimit > 0 && this.liveSockets >= FAULTS.socketLimit) {
      sys.close(fd);
      return -EMFILE;
    }
    this.liveSockets++;
    return fd;
  }

  /** Submits every buffered SQE; `force` enters even with none (task work, CQ overflow). */
  private enterRing(force: boolean): void {
    const ring = this.ring;
    let interrupted = 0;
    while (force || ring.unsubmitted() > 0) {
      force = false;
      const before = ring.unsubmitted();
      const r = ring.enter(before, 0, ENTER_GETEVENTS);
      if (r >= 0) {
        if (before > 0 && ring.unsubmitted() === before) {
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
    if (this.ring.closed || this.ring.unsubmitted() === 0) return;
    try {
      this.enterRing(false);
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
    sqeFlags = 0,
    spliceFdIn = 0,
  ): void {
    const ring = this.ring;
    const g = PROVIDED_GROUP;
    if (ring.push(opcode, fd, addr, len, off, opFlags, userData, sqeFlags, g, spliceFdIn)) return;
    this.enterRing(false); // SQ full: hand it to the kernel, then there is room
    if (!ring.push(opcode, fd, addr, len, off, opFlags, userData, sqeFlags, g, spliceFdIn)) {
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
    sqeFlags = 0,
    /** splice: the fd the bytes come from; the op's own socket (for its key) is `keyFd`. */
    spliceFdIn = 0,
    keyFd = fd,
  ): StartResult {
    if (this.stopping) return ECANCELED;
    const key = this.keys.get(keyFd);
    if (key === undefined) this.fail(call, EBADF, `fd ${keyFd} is not associated with a key`);
    const v = rec.view;
    v.setInt32(HDR_RES, -EINPROGRESS, true);
    v.setUint32(HDR_BYTES, 0, true);
    v.setInt32(HDR_FD, keyFd, true);
    v.setUint8(HDR_OPCODE, opcode);
    v.setUint16(HDR_BUFFER, 0, true);
    v.setBigUint64(HDR_KEY, key, true);
    this.push(opcode, fd, addr, len, off, opFlags, rec.addr, sqeFlags, spliceFdIn);
    this.inKernel++;
    this.scheduleFlush();
    return PENDING;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    if (this.sink && this.inKernel > 0 && !this.ring.closed) {
      // The engine drains before it stops the backend; whatever is left is cancelled here
      // (where the kernel can: CANCEL_ANY is 5.19+) and the sink sees each op come back.
      const drained = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, STOP_DRAIN_MS);
      });
      try {
        if (this.canCancelAny) {
          this.push(OP_ASYNC_CANCEL, -1, 0n, 0, 0n, CANCEL_ANY | CANCEL_ALL, INTERNAL);
          this.enterRing(false);
        }
      } catch (err) {
        this.onError(err);
      }
      this.queueTurn();
      await Promise.race([drained, timeout]);
      clearTimeout(timer);
      this.drained = null;
      if (this.inKernel > 0) {
        this.onError(
          new Error(`stop: ${this.inKernel} io_uring ops still in flight; closing the ring`),
        );
      }
    }
    // Order matters: no more poll callbacks, then the fd, then the mappings (views die with it).
    this.pollHandle?.close();
    this.pollHandle = null;
    this.ring.close();
    // The registration went with the ring: the kernel no longer touches the blocks.
    this.provided?.destroy();
  }

  /** Queues a NOP whose completion carries `key` and `bytes` (the IOCP post's twin). */
  post(key: bigint, rec: RecordMemory, bytes: number): void {
    if (this.ring.closed) this.fail('post', EBADF, 'ring closed');
    const v = rec.view;
    v.setInt32(HDR_RES, -EINPROGRESS, true);
    v.setUint32(HDR_BYTES, bytes >>> 0, true);
    v.setInt32(HDR_FD, -1, true);
    v.setUint8(HDR_OPCODE, OP_NOP);
    v.setBigUint64(HDR_KEY, key, true);
    this.push(OP_NOP, -1, 0n, 0, 0n, 0, rec.addr);
    this.inKernel++;
    this.scheduleFlush();
  }

  /** io_uring ops never finish inline: every one completes through the CQ. */
  inlineBytes(_rec: RecordMemory): number {
    return 0;
  }

  // ---- sockets ----------------------------------------------------------------------------

  createSocket(family: 4 | 6): Sock {
    // Blocking mode is fine: io_uring never blocks the caller on a socket op.
    const af = family === 4 ? sys.AF_INET : sys.AF_INET6;
    if (FAULTS.socketLimit > 0 && this.liveSockets >= FAULTS.socketLimit) {
      this.fail('socket', EMFILE, `KEYPORT_TEST_FAULTS socket-limit:${FAULTS.socketLimit}`);
    }
    const fd = sys.socket(af, sys.SOCK_STREAM | sys.SOCK_CLOEXEC, 0) as number;
    if (fd < 0) this.fail('socket', sys.errno());
    this.liveSockets++;
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

  /**
   * Nothing to do: connect() binds by itself and picks a port free for that destination, so a
   * port in TIME_WAIT towards one upstream serves another. An explicit bind(0) must find a port
   * no socket holds at all, TIME_WAIT included: under connection churn (~28 000 recent
   * connections) every bind scanned the whole range, then failed (issue 14).
   */
  bindAny(_sock: Sock, _family: 4 | 6): void {}

  associate(sock: Sock, key: bigint): void {
    // Test fault: every Nth socket is tied to the wrong key, as a bug in a layer below might.
    const wrong = FAULTS.wrongKeyEvery > 0 && ++this.associations % FAULTS.wrongKeyEvery === 0;
    this.keys.set(sock, wrong ? wrongKey(key) : key);
  }

  submit(op: OpData): StartResult {
    switch (op.kind) {
      case 'accept':
        // No peer address is requested: peerAddress() asks the new socket when needed.
        return this.startOp('accept', op, OP_ACCEPT, op.sock, 0n, 0, 0n, sys.SOCK_CLOEXEC);
      case 'connect': {
        // The sockaddr lives in the record: the kernel copies it when the SQE is submitted.
        const len = writeSockaddr(op.view, HDR_SOCKADDR, op.peer as SocketAddress);
        const sa = op.addr + BigInt(HDR_SOCKADDR);
        return this.startOp('connect', op, OP_CONNECT, op.sock, sa, 0, BigInt(len), 0);
      }
      case 'recv':
        // Socket → pipe, in the kernel. The socket is blocking (io_uring needs no O_NONBLOCK):
        // the relay splices only when data is there (after a wait, or after a full chunk).
        if (op.splice >= 0) return this.spliceOp('recv', op, op.sock, op.splice);
        // The kernel picks the buffer from the provided ring when data arrives.
        if (op.selectBuffer && this.provided)
          return this.startOp(
            'recv',
            op,
            OP_RECV,
            op.sock,
            0n,
            Math.min(op.length, this.provided.blockSize),
            0n,
            0,
            IOSQE_BUFFER_SELECT,
          );
        // Length 0 is a bufferless wait: POLL_ADD(POLLIN) completes once data or EOF is there.
        if (op.length === 0)
          return this.startOp('recv', op, OP_POLL_ADD, op.sock, 0n, 0, 0n, POLLIN);
        return this.startOp('recv', op, OP_RECV, op.sock, op.bufAddr, op.length, 0n, 0);
      case 'send':
        // Pipe → socket: completes with what it moved (the relay splices the rest again).
        if (op.splice >= 0) return this.spliceOp('send', op, op.splice, op.sock);
        // WAITALL: like WSASend, the op completes when all of it is sent (or on error).
        return this.startOp(
          'send',
          op,
          OP_SEND,
          op.sock,
          op.bufAddr,
          op.length,
          0n,
          MSG_WAITALL | sys.MSG_NOSIGNAL,
        );
      default:
        throw new Error(`uring: ${op.kind} is not an op this backend submits`);
    }
  }

  /** IORING_OP_SPLICE of up to `op.length` bytes from `from` to `to` (no offsets: socket, pipe). */
  private spliceOp(call: string, op: OpData, from: number, to: number): StartResult {
    const n = op.length;
    return this.startOp(
      call,
      op,
      OP_SPLICE,
      to,
      NO_OFFSET,
      n,
      NO_OFFSET,
      SPLICE_F_MOVE,
      0,
      from,
      op.sock,
    );
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

  finishConnect(_sock: Sock): number {
    return 0;
  }

  /**
   * Linux reports a reset as ECONNRESET on the recv — once: if another call took the socket's
   * error first (a send to the same peer failing with EPIPE), the recv then reads 0, as if the
   * peer had sent a FIN. The TCP state tells them apart: a reset leaves the socket CLOSE, a FIN
   * leaves it CLOSE_WAIT. Once our own FIN went out, a graceful close also ends in CLOSE (after
   * LAST_ACK), so the state proves nothing then and the EOF is taken as it reads.
   */
  resetBehindEof(sock: Sock, sendShut: boolean): number {
    if (sendShut) return 0;
    this.scratchView.setUint32(128, 8, true);
    if (
      sys.getsockopt(
        sock,
        sys.IPPROTO_TCP,
        sys.TCP_INFO,
        this.scratch,
        this.scratch.subarray(128),
      ) !== 0
    )
      return 0;
    return this.scratch[0] === sys.TCP_CLOSE ? ECONNRESET : 0;
  }

  shutdownSend(sock: Sock): number {
    return sys.shutdown(sock, sys.SHUT_WR) === 0 ? 0 : sys.errno();
  }

  /**
   * Queues IORING_OP_ASYNC_CANCEL for one op by its user_data; the op then completes with
   * ECANCELED (or completes normally if it was already done: the cancel's own CQE says ENOENT).
   */
  cancel(_sock: Sock, rec: RecordMemory): number {
    if (this.ring.closed) return EBADF;
    this.push(OP_ASYNC_CANCEL, -1, rec.addr, 0, 0n, 0, INTERNAL);
    this.scheduleFlush();
    return 0;
  }

  closeSocket(sock: Sock, abortive: boolean): void {
    // close() does not cancel io_uring requests (Windows' closesocket does): the engine cancels
    // every op and waits for it first. Queued SQEs naming this fd must reach the kernel before
    // the number can be reused.
    if (!this.ring.closed && this.ring.unsubmitted() > 0) this.enterRing(false);
    if (abortive) {
      // SO_LINGER {on, 0}: close sends RST instead of FIN.
      this.scratchView.setInt32(0, 1, true);
      this.scratchView.setInt32(4, 0, true);
      sys.setsockopt(sock, sys.SOL_SOCKET, sys.SO_LINGER, this.scratch, 8);
    }
    sys.close(sock);
    this.keys.delete(sock);
    if (this.liveSockets > 0) this.liveSockets--;
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
