// A completion backend that does no I/O, for unit tests of the engine's state machines
// (listener, connection, relay direction, key table, op table). The test plays the kernel:
//  - pinned memory is plain Node Buffers at fake, unique, stable addresses (never reused);
//  - sockets are small integers; nothing is sent anywhere;
//  - submit() records the op and returns PENDING (or a scripted inline result), writing the
//    record's status word the way Windows writes OVERLAPPED.Internal (STATUS_PENDING) ;
//  - the test decides when and how each op completes: complete() writes the record's status and
//    byte count like the kernel, then calls the engine's sink exactly as a dequeue would
//    (completion(key, record, bytes, status), then batch(n)); packet() delivers anything at all
//    (wrong keys, duplicates, stray addresses) without touching memory.
// Every call is logged in order, so a test asserts what the kernel saw and when. Calls the real
// kernel would reject or that break the completion model (an op on a closed socket, a record
// resubmitted while the kernel holds it, a socket closed with ops in flight, a key associated
// twice at once) are collected in `violations`; a test asserts that list stays empty.
import {
  type Backend,
  BackendError,
  type CompletionSink,
  type OpData,
  type OpKind,
  PENDING,
  type RecordLookup,
  type RecordMemory,
  type Sock,
  type SocketAddress,
  type StartResult,
} from '../../src/engine/backend.js';
import type { PinnedBlock } from '../../src/engine/tables/pinned.js';

/** OVERLAPPED.Internal while the kernel owns the op (NTSTATUS STATUS_PENDING). */
export const STATUS_PENDING = 0x103;
/** Where the fake keeps the kernel's result in a record (as OVERLAPPED.Internal/InternalHigh). */
export const STATUS_OFFSET = 0;
export const BYTES_OFFSET = 8;

/** Win32/Winsock codes, as the IOCP backend uses them. */
export const CODES = {
  operationAborted: 995,
  connectionRefused: 1225,
  timedOut: 121,
  invalidArgument: 87,
  notFound: 1168,
  connReset: 10054,
  netnameDeleted: 64,
  connectionAborted: 1236,
  wsaConnAborted: 10053,
  tooManySockets: 10024,
  addrInUse: 10048,
  noBufs: 10055,
} as const;

const NAMES: Record<number, string> = {
  0: 'SUCCESS',
  64: 'ERROR_NETNAME_DELETED',
  87: 'ERROR_INVALID_PARAMETER',
  121: 'ERROR_SEM_TIMEOUT',
  995: 'ERROR_OPERATION_ABORTED',
  1168: 'ERROR_NOT_FOUND',
  1225: 'ERROR_CONNECTION_REFUSED',
  1236: 'ERROR_CONNECTION_ABORTED',
  10024: 'WSAEMFILE',
  10048: 'WSAEADDRINUSE',
  10053: 'WSAECONNABORTED',
  10054: 'WSAECONNRESET',
  10055: 'WSAENOBUFS',
};

export type OpState = 'pending' | 'inline' | 'completed';

/** One op as the fake kernel received it (a snapshot: the engine reuses its records). */
export class FakeOp {
  state: OpState = 'pending';
  /** cancel() was called for it while it was pending. */
  cancelRequested = false;
  /** The status and byte count it completed with (inline or by a packet). */
  status: number | null = null;
  bytes: number | null = null;

  constructor(
    /** Submission number, from 1. */
    readonly id: number,
    readonly kind: OpKind,
    readonly sock: Sock,
    readonly acceptSock: Sock,
    readonly addr: bigint,
    readonly length: number,
    readonly bufAddr: bigint,
    readonly peer: SocketAddress | null,
    /** For a send: the bytes it carried when submitted. */
    readonly data: Buffer | null,
    rec: OpData,
  ) {
    // Not enumerable: a failed assertion prints the op, not the engine's whole object graph.
    Object.defineProperty(this, 'rec', { value: rec, enumerable: false });
  }

  /** The live record (the engine's): valid only while the op is pending. */
  declare readonly rec: OpData;

  get addrNum(): number {
    return Number(this.addr);
  }
}

export interface FakeSocket {
  readonly sock: Sock;
  readonly family: 4 | 6;
  /** The completion key it is associated with (null: not associated). */
  key: bigint | null;
  listening: SocketAddress | null;
  bound: boolean;
  /** Closed, and how (RST or FIN); null while open. */
  closed: { abortive: boolean; seq: number } | null;
  /** shutdown(SD_SEND) was called (seq of the call). */
  shutdownAt: number | null;
  /** For a socket that came out of an accept: the listening socket. */
  acceptedFrom: Sock | null;
}

export interface Call {
  /** Position in the log, from 0. */
  seq: number;
  call:
    | 'start'
    | 'stop'
    | 'allocPinned'
    | 'freePinned'
    | 'createSocket'
    | 'listen'
    | 'bindAny'
    | 'associate'
    | 'submit'
    | 'cancel'
    | 'shutdownSend'
    | 'closeSocket'
    | 'post'
    | 'finishAccept'
    | 'finishConnect'
    | 'resetBehindEof'
    | 'completion'
    | 'batch';
  sock?: Sock;
  key?: bigint;
  kind?: OpKind;
  op?: FakeOp;
  /** A record address (submit, cancel, post, completion). */
  rec?: bigint;
  abortive?: boolean;
  /** resetBehindEof: the engine said it had shut this socket's sending side already. */
  sendShut?: boolean;
  /** What the call returned to the engine (a code), where it returns one. */
  result?: number;
  bytes?: number;
  status?: number;
}

type FailableCall =
  | 'createSocket'
  | 'listen'
  | 'bindAny'
  | 'associate'
  | 'submit'
  | 'localAddress'
  | 'peerAddress';

interface Failure {
  call: FailableCall;
  code: number;
  /** Only for this socket (createSocket: ignored). */
  sock?: Sock;
  /** How many calls fail (Infinity: until cleared). */
  times: number;
}

interface InlineScript {
  kind?: OpKind;
  sock?: Sock;
  code: number;
  bytes?: number;
  data?: Uint8Array;
  /** How many submits it answers (default 1; Infinity: until cleared). */
  times?: number;
}

export interface CompleteOptions {
  /** Status the kernel returns (0 = success). */
  status?: number;
  /** Byte count; default: data's length for a recv, the whole length for a send, else 0. */
  bytes?: number;
  /** recv: bytes the kernel writes into the op's buffer. */
  data?: Uint8Array | string;
  /** The key the packet carries; default: the key the socket is associated with now. */
  key?: bigint;
  /** Leave the record's status/bytes words as they are (a packet that does not match memory). */
  keepMemory?: boolean;
}

export interface FakeBackendOptions {
  /** true: AcceptEx-style (the engine pre-creates the accept socket); false: io_uring-style. */
  preCreatesAcceptSocket?: boolean;
  /** First socket number handed out. */
  firstSock?: number;
}

const ADDR_BASE = 0x7f3a_0000_0000n;
const PAGE = 4096n;

export class FakeBackend implements Backend {
  readonly name = 'iocp' as const;
  readonly recordHeaderSize = 32;
  readonly wakeKey = 0n;
  readonly preCreatesAcceptSocket: boolean;
  readonly statusWord = {
    offset: STATUS_OFFSET,
    pending: STATUS_PENDING,
    bytesOffset: BYTES_OFFSET,
  };
  readonly codes = {
    operationAborted: CODES.operationAborted,
    connectionRefused: CODES.connectionRefused,
    timedOut: CODES.timedOut,
    invalidArgument: CODES.invalidArgument,
    notFound: CODES.notFound,
    resets: [CODES.connReset, CODES.netnameDeleted, CODES.connectionAborted, CODES.wsaConnAborted],
  };

  /** Every call, in order. */
  readonly log: Call[] = [];
  /** Breaches of the completion model the engine committed (must stay empty). */
  readonly violations: string[] = [];
  /**
   * Breaches a test knows about and checks elsewhere (a known bug, in a `todo` test): kept out
   * of `violations` so the test can assert the rest.
   */
  readonly tolerated: RegExp[] = [];
  readonly sockets = new Map<Sock, FakeSocket>();
  /** Every op ever submitted, in order. */
  readonly ops: FakeOp[] = [];
  /** Posted packets (the heartbeat), delivered or not. */
  readonly posts: Array<{ key: bigint; rec: RecordMemory; bytes: number; delivered: boolean }> = [];
  sink: CompletionSink | null = null;
  records: RecordLookup | null = null;
  stopped = false;

  // ---- what the test scripts ----
  /** resetBehindEof's answer per socket (default 0: a clean EOF). */
  readonly resetBehindEofCodes = new Map<Sock, number>();
  finishAcceptCode = 0;
  finishConnectCode = 0;
  shutdownSendCode = 0;
  /** cancel()'s answer; default: 0 for a pending op, ERROR_NOT_FOUND otherwise. */
  cancelResult: ((op: FakeOp | undefined) => number) | null = null;
  /** Called after each logged call, to look at the engine at that moment. */
  onCall: ((c: Call) => void) | null = null;
  /** Calls that threw because the test scripted a failure, by call. */
  readonly failedCalls = new Map<FailableCall, number>();
  private readonly failures: Failure[] = [];
  private readonly inline: InlineScript[] = [];

  private nextSock: number;
  private nextAddr = ADDR_BASE;
  private readonly blocks = new Map<bigint, Buffer>();
  private readonly freedBlocks = new Set<bigint>();
  /** The op the kernel holds for each record address (pending only). */
  private readonly pendingByAddr = new Map<number, FakeOp>();
  /** io_uring-style accepts: the fd the kernel returned, per record address. */
  private readonly acceptedFd = new Map<number, Sock>();

  constructor(opts: FakeBackendOptions = {}) {
    this.preCreatesAcceptSocket = opts.preCreatesAcceptSocket ?? true;
    this.nextSock = opts.firstSock ?? 100;
  }

  // ---- scripting -----------------------------------------------------------------------------

  /** Makes the next `times` calls of `call` throw a BackendError with `code`. */
  failNext(call: FailableCall, code: number = CODES.tooManySockets, times = 1, sock?: Sock): void {
    this.failures.push({ call, code, times, sock });
  }

  /** Stops every scripted inline result. */
  clearInline(): void {
    this.inline.length = 0;
  }

  /** Stops every scripted failure of `call`. */
  clearFailures(call?: FailableCall): void {
    for (let i = this.failures.length - 1; i >= 0; i--) {
      if (!call || this.failures[i]?.call === call) this.failures.splice(i, 1);
    }
  }

  /**
   * The next submit matching kind/sock finishes inline with `code` (and, on success, `bytes`,
   * with `data` written into a recv's buffer): no packet will come for it.
   */
  scriptInline(s: InlineScript): void {
    this.inline.push(s);
  }

  private failure(call: FailableCall, sock?: Sock): void {
    const i = this.failures.findIndex(
      (f) => f.call === call && (f.sock === undefined || f.sock === sock),
    );
    if (i < 0) return;
    const f = this.failures[i] as Failure;
    if (--f.times <= 0) this.failures.splice(i, 1);
    this.failedCalls.set(call, (this.failedCalls.get(call) ?? 0) + 1);
    throw new BackendError(call, f.code, this.errorName(f.code), 'scripted by the test');
  }

  private record(c: Omit<Call, 'seq'>): Call {
    const entry = { seq: this.log.length, ...c } as Call;
    this.log.push(entry);
    this.onCall?.(entry);
    return entry;
  }

  private violation(msg: string): void {
    if (!this.tolerated.some((re) => re.test(msg))) this.violations.push(msg);
  }

  // ---- pinned memory -------------------------------------------------------------------------

  allocPinned(size: number): PinnedBlock {
    const addr = this.nextAddr;
    // Page-aligned, with a guard page: addresses are unique and never handed out twice.
    const span = ((BigInt(size) + PAGE - 1n) / PAGE) * PAGE;
    this.nextAddr += span + PAGE;
    const bytes = Buffer.alloc(size);
    this.blocks.set(addr, bytes);
    this.record({ call: 'allocPinned', rec: addr, bytes: size });
    return { addr, bytes };
  }

  freePinned(block: PinnedBlock): void {
    if (!this.blocks.has(block.addr)) this.violation(`freePinned of unknown block ${block.addr}`);
    this.blocks.delete(block.addr);
    this.freedBlocks.add(block.addr);
    this.record({ call: 'freePinned', rec: block.addr });
  }

  /** The pinned bytes at `addr` (what the kernel would read or write there). */
  mem(addr: bigint, length: number): Buffer {
    for (const [base, buf] of this.blocks) {
      if (addr >= base && addr + BigInt(length) <= base + BigInt(buf.byteLength)) {
        const off = Number(addr - base);
        return buf.subarray(off, off + length);
      }
    }
    throw new Error(`fake kernel: no pinned memory at 0x${addr.toString(16)} (+${length})`);
  }

  // ---- the loop ------------------------------------------------------------------------------

  start(sink: CompletionSink, records: RecordLookup): void {
    this.sink = sink;
    this.records = records;
    this.record({ call: 'start' });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.record({ call: 'stop' });
  }

  // ---- sockets -------------------------------------------------------------------------------

  createSocket(family: 4 | 6): Sock {
    this.failure('createSocket');
    const sock = this.nextSock++;
    this.sockets.set(sock, {
      sock,
      family,
      key: null,
      listening: null,
      bound: false,
      closed: null,
      shutdownAt: null,
      acceptedFrom: null,
    });
    this.record({ call: 'createSocket', sock });
    return sock;
  }

  private open(sock: Sock, call: string): FakeSocket | null {
    const s = this.sockets.get(sock);
    if (!s) {
      this.violation(`${call} on unknown socket ${sock}`);
      return null;
    }
    if (s.closed) {
      this.violation(`${call} on closed socket ${sock}`);
      return null;
    }
    return s;
  }

  listen(sock: Sock, addr: SocketAddress, backlog: number): SocketAddress {
    this.failure('listen', sock);
    const s = this.open(sock, 'listen');
    let port = addr.port;
    if (port === 0) port = 40_000 + sock;
    for (const o of this.sockets.values()) {
      if (!o.closed && o.listening?.port === port && o.listening.host === addr.host) {
        throw new BackendError('bind', CODES.addrInUse, 'WSAEADDRINUSE');
      }
    }
    const bound = { host: addr.host, port, family: addr.family };
    if (s) {
      s.listening = bound;
      s.bound = true;
    }
    this.record({ call: 'listen', sock, bytes: backlog });
    return bound;
  }

  bindAny(sock: Sock, _family: 4 | 6): void {
    this.failure('bindAny', sock);
    const s = this.open(sock, 'bindAny');
    if (s) s.bound = true;
    this.record({ call: 'bindAny', sock });
  }

  associate(sock: Sock, key: bigint): void {
    this.failure('associate', sock);
    const s = this.open(sock, 'associate');
    if (key === this.wakeKey) this.violation(`socket ${sock} associated with the wake key`);
    for (const o of this.sockets.values()) {
      if (o !== s && !o.closed && o.key === key)
        this.violation(`key 0x${key.toString(16)} given to socket ${sock} while ${o.sock} has it`);
    }
    if (s) {
      if (s.key !== null) this.violation(`socket ${sock} associated twice`);
      s.key = key;
    }
    this.record({ call: 'associate', sock, key });
  }

  finishAccept(listenSock: Sock, acceptSock: Sock): number {
    this.record({ call: 'finishAccept', sock: acceptSock, result: this.finishAcceptCode });
    const s = this.sockets.get(acceptSock);
    if (s) s.acceptedFrom = listenSock;
    return this.finishAcceptCode;
  }

  finishConnect(sock: Sock): number {
    this.record({ call: 'finishConnect', sock, result: this.finishConnectCode });
    return this.finishConnectCode;
  }

  acceptedSocket(rec: RecordMemory, acceptSock: Sock): Sock {
    if (this.preCreatesAcceptSocket) return acceptSock;
    return this.acceptedFd.get(Number(rec.addr)) ?? -1;
  }

  /** Local addresses a test chose for sockets (e.g. one equal to its connect target). */
  readonly localAddresses = new Map<Sock, SocketAddress>();

  localAddress(sock: Sock): SocketAddress | null {
    this.failure('localAddress', sock);
    const s = this.sockets.get(sock);
    if (!s) return null;
    return (
      this.localAddresses.get(sock) ??
      s.listening ?? { host: '127.0.0.1', port: 50_000 + sock, family: 4 }
    );
  }

  peerAddress(sock: Sock): SocketAddress | null {
    this.failure('peerAddress', sock);
    return this.sockets.has(sock) ? { host: '127.0.0.1', port: 60_000 + sock, family: 4 } : null;
  }

  // ---- ops -----------------------------------------------------------------------------------

  submit(op: OpData): StartResult {
    this.failure('submit', op.sock);
    const s = this.open(op.sock, `submit ${op.kind}`);
    if (s && s.key === null) this.violation(`${op.kind} on socket ${op.sock} with no key`);
    if (op.kind === 'accept' && this.preCreatesAcceptSocket)
      this.open(op.acceptSock, 'accept into');
    const addrNum = Number(op.addr);
    const holder = this.pendingByAddr.get(addrNum);
    if (holder) {
      this.violation(
        `record 0x${op.addr.toString(16)} resubmitted (${op.kind}) while the kernel holds it ` +
          `(${holder.kind} #${holder.id})`,
      );
    }
    let data: Buffer | null = null;
    if (op.length > 0 && op.bufAddr !== 0n) {
      const m = this.mem(op.bufAddr, op.length);
      if (op.kind === 'send') data = Buffer.from(m);
    }
    const f = new FakeOp(
      this.ops.length + 1,
      op.kind,
      op.sock,
      op.acceptSock,
      op.addr,
      op.length,
      op.bufAddr,
      op.peer ? { ...op.peer } : null,
      data,
      op,
    );
    this.ops.push(f);
    const i = this.inline.findIndex(
      (x) =>
        (x.kind === undefined || x.kind === op.kind) &&
        (x.sock === undefined || x.sock === op.sock),
    );
    if (i >= 0) {
      const script = this.inline[i] as InlineScript;
      script.times = (script.times ?? 1) - 1;
      if (script.times <= 0) this.inline.splice(i, 1);
      let bytes = script.code === 0 ? (script.bytes ?? script.data?.byteLength ?? 0) : 0;
      if (script.code === 0 && op.kind === 'send') bytes = script.bytes ?? op.length;
      if (script.data && op.kind === 'recv') this.mem(op.bufAddr, op.length).set(script.data);
      // Inline: the kernel wrote the result into the record, and no packet will be queued.
      op.view.setInt32(STATUS_OFFSET, script.code, true);
      op.view.setUint32(BYTES_OFFSET, bytes, true);
      f.state = 'inline';
      f.status = script.code;
      f.bytes = bytes;
      this.record({ call: 'submit', sock: op.sock, kind: op.kind, op: f, rec: op.addr });
      return script.code;
    }
    op.view.setInt32(STATUS_OFFSET, STATUS_PENDING, true);
    op.view.setUint32(BYTES_OFFSET, 0, true);
    this.pendingByAddr.set(addrNum, f);
    this.record({ call: 'submit', sock: op.sock, kind: op.kind, op: f, rec: op.addr });
    return PENDING;
  }

  inlineBytes(rec: RecordMemory): number {
    return rec.view.getUint32(BYTES_OFFSET, true);
  }

  cancel(sock: Sock, rec: RecordMemory): number {
    const op = this.pendingByAddr.get(Number(rec.addr));
    if (op && op.sock !== sock) this.violation(`cancel of ${op.kind} #${op.id} on socket ${sock}`);
    const result = this.cancelResult ? this.cancelResult(op) : op ? 0 : this.codes.notFound;
    if (op && result === 0) op.cancelRequested = true;
    this.record({ call: 'cancel', sock, op, rec: rec.addr, kind: op?.kind, result });
    return result;
  }

  post(key: bigint, rec: RecordMemory, bytes: number): void {
    // As PostQueuedCompletionStatus after the IOCP backend's reset: no kernel op holds it.
    rec.view.setInt32(STATUS_OFFSET, 0, true);
    rec.view.setUint32(BYTES_OFFSET, 0, true);
    this.posts.push({ key, rec, bytes, delivered: false });
    this.record({ call: 'post', key, rec: rec.addr, bytes });
  }

  resetBehindEof(sock: Sock, sendShut = false): number {
    const result = this.resetBehindEofCodes.get(sock) ?? 0;
    this.record({ call: 'resetBehindEof', sock, result, sendShut });
    return result;
  }

  shutdownSend(sock: Sock): number {
    const s = this.open(sock, 'shutdownSend');
    if (s && s.shutdownAt === null) s.shutdownAt = this.log.length;
    this.record({ call: 'shutdownSend', sock, result: this.shutdownSendCode });
    return this.shutdownSendCode;
  }

  closeSocket(sock: Sock, abortive: boolean): void {
    const s = this.open(sock, 'closeSocket');
    for (const op of this.pendingByAddr.values()) {
      if (op.sock === sock || (op.kind === 'accept' && op.acceptSock === sock))
        this.violation(`socket ${sock} closed with ${op.kind} #${op.id} still in flight`);
    }
    const c = this.record({ call: 'closeSocket', sock, abortive });
    if (s) s.closed = { abortive, seq: c.seq };
  }

  errorName(code: number): string {
    return NAMES[code] ?? `ERROR_${code}`;
  }

  // ---- the kernel's side: completions --------------------------------------------------------

  /** The key the socket is associated with now (what its packets carry). */
  keyOf(sock: Sock): bigint {
    const k = this.sockets.get(sock)?.key;
    if (k === null || k === undefined) throw new Error(`fake kernel: socket ${sock} has no key`);
    return k;
  }

  /**
   * Completes a pending op like the kernel: writes the result into the record (status, bytes;
   * data into a recv's buffer), then delivers its packet. `batch`: end the dequeue batch (the
   * engine then runs the inline results it queued); false lets the test add more packets first.
   */
  complete(op: FakeOp, o: CompleteOptions = {}, batch = true): void {
    if (op.state !== 'pending') throw new Error(`fake kernel: ${op.kind} #${op.id} is ${op.state}`);
    const status = o.status ?? 0;
    const data = typeof o.data === 'string' ? Buffer.from(o.data) : o.data;
    if (data) {
      if (op.kind !== 'recv' || data.byteLength > op.length)
        throw new Error(`fake kernel: ${data.byteLength} B do not fit ${op.kind} #${op.id}`);
      this.mem(op.bufAddr, op.length).set(data);
    }
    const bytes =
      o.bytes ?? data?.byteLength ?? (op.kind === 'send' && status === 0 ? op.length : 0);
    if (!o.keepMemory) {
      op.rec.view.setInt32(STATUS_OFFSET, status, true);
      op.rec.view.setUint32(BYTES_OFFSET, bytes, true);
    }
    if (op.kind === 'accept' && status === 0 && !this.preCreatesAcceptSocket) {
      const fd = this.createSocket(4);
      (this.sockets.get(fd) as FakeSocket).acceptedFrom = op.sock;
      this.acceptedFd.set(op.addrNum, fd);
    }
    op.state = 'completed';
    op.status = status;
    op.bytes = bytes;
    this.pendingByAddr.delete(op.addrNum);
    this.packet(o.key ?? this.keyOf(op.sock), op.addr, bytes, status);
    if (batch) this.endBatch(1);
  }

  /** Delivers one packet as dequeued, whatever it says; touches no memory. */
  packet(key: bigint, recordAddr: bigint | number, bytes: number, status: number): void {
    const rec = BigInt(recordAddr);
    this.record({ call: 'completion', key, rec, bytes, status });
    (this.sink as CompletionSink).completion(key, Number(rec), bytes, status);
  }

  /** Ends a dequeue batch of `size` packets. */
  endBatch(size: number): void {
    this.record({ call: 'batch', bytes: size });
    (this.sink as CompletionSink).batch(size);
  }

  /** Delivers the last undelivered posted packet (the heartbeat) as the port would. */
  deliverPost(): void {
    const p = [...this.posts].reverse().find((x) => !x.delivered);
    if (!p) throw new Error('fake kernel: no posted packet to deliver');
    p.delivered = true;
    this.packet(p.key, p.rec.addr, p.bytes, 0);
    this.endBatch(1);
  }

  // ---- queries for tests ---------------------------------------------------------------------

  /** Ops the kernel holds now, optionally of one kind and/or socket. */
  pending(kind?: OpKind, sock?: Sock): FakeOp[] {
    return [...this.pendingByAddr.values()]
      .filter(
        (o) => (kind === undefined || o.kind === kind) && (sock === undefined || o.sock === sock),
      )
      .sort((a, b) => a.id - b.id);
  }

  /** The one pending op of this kind on this socket (throws unless there is exactly one). */
  one(kind: OpKind, sock?: Sock): FakeOp {
    const p = this.pending(kind, sock);
    if (p.length !== 1)
      throw new Error(`fake kernel: ${p.length} pending ${kind} ops on socket ${sock ?? 'any'}`);
    return p[0] as FakeOp;
  }

  /** The calls of one kind (optionally on one socket), in order. */
  calls(call: Call['call'], sock?: Sock): Call[] {
    return this.log.filter((c) => c.call === call && (sock === undefined || c.sock === sock));
  }

  /** The seq of the first call matching, or -1. */
  seqOf(pred: (c: Call) => boolean): number {
    return this.log.find(pred)?.seq ?? -1;
  }

  /** Blocks handed out and not freed (their addresses are never handed out again). */
  get liveBlocks(): number {
    return this.blocks.size;
  }
}
