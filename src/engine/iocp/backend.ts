// The Windows completion backend: one I/O completion port, sockets associated with it under
// keyport's keys, extended OVERLAPPED records in pinned memory, and a dequeue loop that waits in
// GetQueuedCompletionStatusEx on a libuv pool thread (koffi .async) so the event loop never blocks.
import {
  type Backend,
  BackendError,
  type CompletionSink,
  type ConsoleHandler,
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
import { watchConsoleEvents, watchCtrlCAsFault } from './console-events.js';
import { ntstatusToWin32, win32ErrorName } from './errors.js';
import { type Extensions, loadExtensions } from './extensions.js';
import {
  ACCEPT_ADDR_LEN,
  ENTRY_BYTES,
  ENTRY_INTERNAL,
  ENTRY_KEY,
  ENTRY_OVERLAPPED,
  ENTRY_SIZE,
  OV_INTERNAL,
  OV_INTERNAL_HIGH,
  OVERLAPPED_SIZE,
  REC_ACCEPT_SOCKET,
  REC_ADDRS,
  REC_BYTES,
  REC_FLAGS,
  REC_WSABUF,
  RECORD_SIZE,
} from './layout.js';
import { readSockaddr, writeSockaddr } from './sockaddr.js';
import * as w from './win32.js';

/** Entries dequeued per GetQueuedCompletionStatusEx call. */
export const DEQUEUE_BATCH = 256;

const WAKE_KEY = 0n;
/** Where a dequeue buffer keeps the count of entries removed, after the entries. */
const REMOVED_OFF = ENTRY_SIZE * DEQUEUE_BATCH;
/** The count slot's value while a dequeue call has not returned (no call removes that many). */
const NOT_RETURNED = 0xffffffff;

function u64(view: DataView, off: number): number {
  return view.getUint32(off, true) + view.getUint32(off + 4, true) * 0x1_0000_0000;
}

export interface IocpOptions {
  /** Where errors that no caller can receive go (a throwing sink): the process's fatal path. */
  onError?: (err: unknown) => void;
}

/** The Winsock provider behind a family's TCP sockets. */
interface Provider {
  /** Its catalog entry: extension functions are fetched per provider. */
  catalogEntry: number;
  /** It hands out real file handles (XP1_IFS_HANDLES): skip mode may be set. */
  ifs: boolean;
}

/** What keyport knows of a socket it created. */
interface SocketInfo extends Provider {
  /** FILE_SKIP_COMPLETION_PORT_ON_SUCCESS took effect: an inline success posts no packet. */
  skipMode: boolean;
}

export class IocpBackend implements Backend {
  readonly name = 'iocp' as const;
  readonly recordHeaderSize = RECORD_SIZE;
  readonly wakeKey = WAKE_KEY;
  readonly codes = {
    operationAborted: 995,
    connectionRefused: 1225,
    timedOut: 121,
    invalidArgument: 87,
    notFound: w.ERROR_NOT_FOUND,
    // WSAECONNRESET, ERROR_NETNAME_DELETED, ERROR_CONNECTION_ABORTED, WSAECONNABORTED
    resets: [10054, 64, 1236, 10053],
  };
  /** OVERLAPPED.Internal reads STATUS_PENDING while the kernel owns the op. */
  readonly statusWord = {
    offset: OV_INTERNAL,
    pending: w.STATUS_PENDING,
    bytesOffset: OV_INTERNAL_HIGH,
  };
  /** AcceptEx accepts into a socket the caller created beforehand. */
  readonly preCreatesAcceptSocket = true;

  private readonly port: number;
  /** Extension functions per provider catalog entry (a layered provider has its own). */
  private readonly ext = new Map<number, Extensions>();
  private readonly sockets = new Map<Sock, SocketInfo>();
  private readonly providers = new Map<4 | 6, Provider>();
  private readonly protocolInfo: PinnedBlock;
  private readonly protocolInfoView: DataView;
  private readonly onError: (err: unknown) => void;
  private associations = 0;
  private dequeued = 0;
  private readonly scratch: PinnedBlock;
  private readonly scratchView: DataView;
  private entries: PinnedBlock | null = null;
  private entriesView: DataView | null = null;
  private sink: CompletionSink | null = null;
  /** A synchronous drain (pumpSync) took over the dequeue from the pool thread. */
  private synchronous = false;
  private syncEntries: { block: PinnedBlock; view: DataView } | null = null;
  private stopping = false;
  /** Settles when the dequeue loop (a pool thread waiting in the port) has ended. */
  private dequeueLoop: Promise<void> | null = null;

  constructor(options: IocpOptions = {}) {
    this.onError =
      options.onError ??
      ((err) => {
        const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
        process.stderr.write(`keyport iocp backend: ${text}\n`);
      });
    const wsadata = this.allocPinned(512);
    const rc = w.WSAStartup(0x0202, wsadata.addr);
    if (rc !== 0) throw new BackendError('WSAStartup', rc, win32ErrorName(rc));
    this.freePinned(wsadata);
    const port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, 0, 0n, 1);
    if (!port) this.fail('CreateIoCompletionPort', w.GetLastError());
    this.port = port;
    this.scratch = this.allocPinned(256);
    this.scratchView = new DataView(this.scratch.bytes.buffer, this.scratch.bytes.byteOffset, 256);
    watchCtrlCAsFault();
    this.protocolInfo = this.allocPinned(w.PROTOCOL_INFO_SIZE + 8);
    this.protocolInfoView = new DataView(
      this.protocolInfo.bytes.buffer,
      this.protocolInfo.bytes.byteOffset,
      w.PROTOCOL_INFO_SIZE + 8,
    );
  }

  allocPinned(size: number): PinnedBlock {
    const addr = w.koffi.alloc('uint8_t', size) as bigint;
    const bytes = new Uint8Array(w.koffi.view(addr, size) as ArrayBuffer);
    return { addr, bytes };
  }

  freePinned(block: PinnedBlock): void {
    w.koffi.free(block.addr);
  }

  private fail(call: string, code: number, detail?: string): never {
    throw new BackendError(call, code, win32ErrorName(code), detail);
  }

  // ---- the dequeue loop -------------------------------------------------------------------

  start(sink: CompletionSink, _records: RecordLookup): void {
    this.sink = sink;
    const { block: entries, view } = this.dequeueBuffer();
    this.entries = entries;
    this.entriesView = view;
    const removedAddr = entries.addr + BigInt(REMOVED_OFF);
    this.dequeueLoop = new Promise<void>((resolve) => {
      const dequeue = (): void => {
        // The count slot holds NOT_RETURNED until this call returns: takeOver() tells by it
        // whether the call still waits or has entries its callback did not deliver yet.
        view.setUint32(REMOVED_OFF, NOT_RETURNED, true);
        w.GetQueuedCompletionStatusEx.async(
          this.port,
          entries.addr,
          DEQUEUE_BATCH,
          removedAddr,
          w.INFINITE,
          0,
          (err: unknown, ok: number) => {
            // A synchronous drain took over and delivered what this call dequeued.
            if (this.synchronous) return resolve();
            if (err || !ok) {
              // The port is gone (closed under us): nothing more will come.
              resolve();
              return;
            }
            const woken = this.deliverGuarded(view, view.getUint32(REMOVED_OFF, true));
            if (woken && this.stopping) resolve();
            else dequeue();
          },
        );
      };
      dequeue();
    });
  }

  /** Pinned room for one GetQueuedCompletionStatusEx call: its entries, then the count. */
  private dequeueBuffer(): { block: PinnedBlock; view: DataView } {
    const block = this.allocPinned(REMOVED_OFF + 8);
    return {
      block,
      view: new DataView(block.bytes.buffer, block.bytes.byteOffset, block.bytes.byteLength),
    };
  }

  /**
   * Hands `n` dequeued entries to the sink, as the port returned them; a throw goes to the
   * fatal path. Returns whether one of them was the wake packet.
   */
  private deliverGuarded(view: DataView, n: number): boolean {
    const sink = this.sink as CompletionSink;
    let woken = false;
    try {
      for (let i = 0; i < n; i++) {
        const base = i * ENTRY_SIZE;
        const key = view.getBigUint64(base + ENTRY_KEY, true);
        const ov = u64(view, base + ENTRY_OVERLAPPED);
        if (key === WAKE_KEY && ov === 0) {
          woken = true;
          continue;
        }
        // The entry is the kernel's word: its key, its OVERLAPPED, its status and bytes (the
        // packet's own copy of the IO_STATUS_BLOCK).
        const bytes = view.getUint32(base + ENTRY_BYTES, true);
        const status = ntstatusToWin32(view.getUint32(base + ENTRY_INTERNAL, true));
        sink.completion(key, ov, bytes, status);
        if (FAULTS.duplicateEvery > 0 && ++this.dequeued % FAULTS.duplicateEvery === 0) {
          // Test fault: the same packet once more, as a buggy layer might queue it.
          w.PostQueuedCompletionStatus(this.port, bytes, key, BigInt(ov));
        }
      }
      sink.batch(n);
    } catch (e) {
      this.onError(e);
    }
    return woken;
  }

  /**
   * Dequeues and delivers completions on the calling (main) thread, waiting up to `ms` for the
   * first. For a console control handler, which must finish the drain before it returns while
   * the event loop cannot turn: the first call takes over from the pool thread's dequeue.
   */
  pumpSync(ms: number): void {
    if (!this.synchronous) this.takeOver();
    this.syncEntries ??= this.dequeueBuffer();
    const { block, view } = this.syncEntries;
    const ok = w.GetQueuedCompletionStatusEx(
      this.port,
      block.addr,
      DEQUEUE_BATCH,
      block.addr + BigInt(REMOVED_OFF),
      Math.max(0, Math.round(ms)),
      0,
    );
    if (!ok) {
      const code = w.GetLastError();
      if (code === w.WAIT_TIMEOUT) return;
      this.fail('GetQueuedCompletionStatusEx', code);
    }
    this.deliverGuarded(view, view.getUint32(REMOVED_OFF, true));
  }

  /**
   * Stops the pool thread's dequeue for good and delivers what it dequeued: if its call still
   * waits, a wake packet makes it return (within 2 s); if it returned while the main thread was
   * busy, its entries are still in the buffer, undelivered. Either way its callback, when it
   * runs, finds `synchronous` set and does nothing.
   */
  private takeOver(): void {
    this.synchronous = true;
    const view = this.entriesView;
    if (!view || !this.dequeueLoop) return;
    if (view.getUint32(REMOVED_OFF, true) === NOT_RETURNED) {
      w.PostQueuedCompletionStatus(this.port, 0, WAKE_KEY, 0n);
      const nap = new Int32Array(new SharedArrayBuffer(4));
      const until = performance.now() + 2000;
      while (view.getUint32(REMOVED_OFF, true) === NOT_RETURNED && performance.now() < until) {
        Atomics.wait(nap, 0, 0, 1);
      }
      if (view.getUint32(REMOVED_OFF, true) === NOT_RETURNED) return;
    }
    this.deliverGuarded(view, view.getUint32(REMOVED_OFF, true));
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.dequeueLoop) {
      // Under Wine a thread waiting in GQCSEx(INFINITE) is never woken by CloseHandle: post.
      w.PostQueuedCompletionStatus(this.port, 0, WAKE_KEY, 0n);
      await this.dequeueLoop;
    }
    w.CloseHandle(this.port);
    if (this.entries) this.freePinned(this.entries);
    this.entries = null;
    if (this.syncEntries) this.freePinned(this.syncEntries.block);
    this.syncEntries = null;
  }

  watchConsoleEvents(handler: ConsoleHandler): void {
    watchConsoleEvents(handler);
  }

  /**
   * Node's exit joins its thread pool and V8's worker threads. Under Wine 10 that join now and
   * then never returns: a node.exe found 20 minutes after its exit() had its main thread waiting
   * on the wineserver for a wake-up, and four threads in futex waits. Once keyport has drained,
   * flushed and logged that it stopped there is nothing left for that shutdown to do, so the
   * process ends itself as Windows ends any process: every handle closed by the kernel.
   */
  exitProcess(code: number): never {
    w.TerminateProcess(w.GetCurrentProcess(), code);
    process.exit(code); // not reached: TerminateProcess on this process does not return
  }

  /** Posts a completion packet by hand (used by the self-test and to inject wake-ups). */
  post(key: bigint, rec: RecordMemory, bytes: number): void {
    this.resetOverlapped(rec); // Internal 0: no kernel op holds this record
    if (!w.PostQueuedCompletionStatus(this.port, bytes, key, rec.addr)) {
      this.fail('PostQueuedCompletionStatus', w.GetLastError());
    }
  }

  inlineBytes(rec: RecordMemory): number {
    return rec.view.getUint32(OV_INTERNAL_HIGH, true);
  }

  // ---- sockets ----------------------------------------------------------------------------

  createSocket(family: 4 | 6): Sock {
    const af = family === 4 ? w.AF_INET : w.AF_INET6;
    const s = w.WSASocketW(
      af,
      w.SOCK_STREAM,
      w.IPPROTO_TCP,
      null,
      0,
      w.WSA_FLAG_OVERLAPPED | w.WSA_FLAG_NO_HANDLE_INHERIT,
    );
    if (s === w.INVALID_SOCKET) this.fail('WSASocketW', w.WSAGetLastError());
    if (FAULTS.socketLimit > 0 && this.sockets.size >= FAULTS.socketLimit) {
      w.closesocket(s); // test fault: as if the process were out of handles
      this.fail(
        'WSASocketW',
        w.WSAEMFILE,
        `KEYPORT_TEST_FAULTS socket-limit:${FAULTS.socketLimit}`,
      );
    }
    if (family === 6) this.setIntOption(s, w.IPPROTO_IPV6, w.IPV6_V6ONLY, 1);
    // The provider is the same for every TCP socket of a family (WSASocket picks the first that
    // matches), so it is read once per family, as libuv does at start-up.
    let provider = this.providers.get(family);
    if (!provider) {
      provider = this.describe(s);
      this.providers.set(family, provider);
    }
    this.sockets.set(s, { ...provider, skipMode: false });
    return s;
  }

  /** Reads the socket's provider: its catalog entry, and whether its handles are IFS handles. */
  private describe(s: Sock): Provider {
    const v = this.protocolInfoView;
    v.setInt32(w.PROTOCOL_INFO_SIZE, w.PROTOCOL_INFO_SIZE, true);
    const rc = w.getsockopt(
      s,
      w.SOL_SOCKET,
      w.SO_PROTOCOL_INFOW,
      this.protocolInfo.addr,
      this.protocolInfo.addr + BigInt(w.PROTOCOL_INFO_SIZE),
    );
    if (rc !== 0) return { catalogEntry: -1, ifs: false };
    return {
      catalogEntry: v.getUint32(w.PI_CATALOG_ENTRY_ID, true),
      ifs:
        FAULTS.nonIfs === 0 && (v.getUint32(w.PI_SERVICE_FLAGS1, true) & w.XP1_IFS_HANDLES) !== 0,
    };
  }

  private setIntOption(s: Sock, level: number, name: number, value: number): number {
    this.scratchView.setInt32(0, value, true);
    return w.setsockopt(s, level, name, this.scratch.addr, 4) === 0 ? 0 : w.WSAGetLastError();
  }

  private extensions(s: Sock): Extensions {
    const provider = this.sockets.get(s)?.catalogEntry ?? -1;
    let ext = this.ext.get(provider);
    if (!ext) {
      ext = loadExtensions(s);
      this.ext.set(provider, ext);
    }
    return ext;
  }

  listen(sock: Sock, addr: SocketAddress, backlog: number): SocketAddress {
    // Exclusive: no other process may bind the same port while keyport holds it.
    const ex = this.setIntOption(sock, w.SOL_SOCKET, w.SO_EXCLUSIVEADDRUSE, 1);
    if (ex !== 0) this.fail('setsockopt(SO_EXCLUSIVEADDRUSE)', ex);
    const len = writeSockaddr(this.scratchView, 0, addr);
    if (w.bind(sock, this.scratch.addr, len) !== 0)
      this.fail('bind', w.WSAGetLastError(), `${addr.host}:${addr.port}`);
    if (w.listen(sock, backlog) !== 0) this.fail('listen', w.WSAGetLastError());
    this.setSkipMode(sock);
    return this.localAddress(sock) ?? addr;
  }

  bindAny(sock: Sock, family: 4 | 6): void {
    // ConnectEx needs a bound socket. SO_REUSE_UNICASTPORT (Windows 10 1703+) defers the port's
    // choice to the connect, so ports are shared across destinations as an implicit bind does;
    // where it is not known (older Windows, Wine) bind(0) picks one as before.
    this.setIntOption(sock, w.SOL_SOCKET, w.SO_REUSE_UNICASTPORT, 1);
    const len = writeSockaddr(this.scratchView, 0, {
      host: family === 4 ? '0.0.0.0' : '::',
      port: 0,
      family,
    });
    if (w.bind(sock, this.scratch.addr, len) !== 0) this.fail('bind', w.WSAGetLastError());
  }

  associate(sock: Sock, key: bigint): void {
    // Test fault: every Nth socket is tied to the wrong key, as a bug in a layer below might.
    const k =
      FAULTS.wrongKeyEvery > 0 && ++this.associations % FAULTS.wrongKeyEvery === 0
        ? wrongKey(key)
        : key;
    if (w.CreateIoCompletionPort(sock, this.port, k, 0) !== this.port) {
      this.fail('CreateIoCompletionPort(associate)', w.GetLastError());
    }
    this.setSkipMode(sock);
  }

  /**
   * An op that succeeds inline then posts no packet: the engine completes it itself (DESIGN
   * §1.7) — but only where the mode took effect: on IFS providers (as libuv checks), and only
   * if SetFileCompletionNotificationModes succeeded. Elsewhere an inline success still queues
   * a packet, and treating it as packet-less would let that packet complete a reused record.
   */
  private setSkipMode(sock: Sock): void {
    const info = this.sockets.get(sock);
    if (!info?.ifs) return;
    info.skipMode =
      w.SetFileCompletionNotificationModes(
        sock,
        w.FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | w.FILE_SKIP_SET_EVENT_ON_HANDLE,
      ) !== 0;
  }

  /** Whether inline successes on this socket post no packet (for tests and diagnostics). */
  skipsCompletionOnSuccess(sock: Sock): boolean {
    return this.sockets.get(sock)?.skipMode ?? false;
  }

  /** Internal = STATUS_PENDING until the kernel writes the op's result (as Windows itself does). */
  private resetOverlapped(rec: RecordMemory, pending = false): void {
    for (let i = 0; i < OVERLAPPED_SIZE; i += 4) rec.view.setUint32(i, 0, true);
    if (pending) rec.view.setUint32(OV_INTERNAL, w.STATUS_PENDING, true);
  }

  /** Maps a start call's return to PENDING or an inline result code. */
  private started(ok: boolean, sock: Sock): StartResult {
    if (ok) return this.sockets.get(sock)?.skipMode ? 0 : PENDING;
    const err = w.WSAGetLastError();
    return err === w.WSA_IO_PENDING ? PENDING : err;
  }

  submit(op: OpData): StartResult {
    this.resetOverlapped(op, true);
    switch (op.kind) {
      case 'accept':
        return this.accept(op);
      case 'connect':
        return this.connect(op);
      case 'recv':
        return this.recv(op);
      case 'send':
        return this.send(op);
      default:
        throw new Error(`iocp: ${op.kind} is not an op this backend submits`);
    }
  }

  private accept(op: OpData): StartResult {
    const rec = op.view;
    rec.setBigInt64(REC_ACCEPT_SOCKET, BigInt(op.acceptSock), true);
    const ok = this.extensions(op.sock).AcceptEx(
      op.sock,
      op.acceptSock,
      op.addr + BigInt(REC_ADDRS),
      0,
      ACCEPT_ADDR_LEN,
      ACCEPT_ADDR_LEN,
      op.addr + BigInt(REC_BYTES),
      op.addr,
    );
    return this.started(ok !== 0, op.sock);
  }

  /** AcceptEx accepted into the pre-created socket itself. */
  acceptedSocket(_rec: RecordMemory, acceptSock: Sock): Sock {
    return acceptSock;
  }

  finishAccept(listenSock: Sock, acceptSock: Sock): number {
    this.scratchView.setBigInt64(0, BigInt(listenSock), true);
    const ok = w.setsockopt(
      acceptSock,
      w.SOL_SOCKET,
      w.SO_UPDATE_ACCEPT_CONTEXT,
      this.scratch.addr,
      8,
    );
    return ok === 0 ? 0 : w.WSAGetLastError();
  }

  private connect(op: OpData): StartResult {
    const len = writeSockaddr(op.view, REC_ADDRS, op.peer as SocketAddress);
    const ok = this.extensions(op.sock).ConnectEx(
      op.sock,
      op.addr + BigInt(REC_ADDRS),
      len,
      null,
      0,
      null,
      op.addr,
    );
    return this.started(ok !== 0, op.sock);
  }

  finishConnect(sock: Sock): number {
    const ok = w.setsockopt(sock, w.SOL_SOCKET, w.SO_UPDATE_CONNECT_CONTEXT, null, 0);
    return ok === 0 ? 0 : w.WSAGetLastError();
  }

  /** A recv of length 0 (no buffer) completes when data or the FIN arrives, and reads nothing. */
  private recv(op: OpData): StartResult {
    const v = op.view;
    v.setUint32(REC_WSABUF, op.length, true);
    v.setBigUint64(REC_WSABUF + 8, op.bufAddr, true);
    v.setUint32(REC_FLAGS, 0, true);
    const base = op.addr;
    const rc = w.WSARecv(
      op.sock,
      base + BigInt(REC_WSABUF),
      1,
      base + BigInt(REC_BYTES),
      base + BigInt(REC_FLAGS),
      base,
      null,
    );
    return this.started(rc === 0, op.sock);
  }

  private send(op: OpData): StartResult {
    const v = op.view;
    v.setUint32(REC_WSABUF, op.length, true);
    v.setBigUint64(REC_WSABUF + 8, op.bufAddr, true);
    const base = op.addr;
    const rc = w.WSASend(
      op.sock,
      base + BigInt(REC_WSABUF),
      1,
      base + BigInt(REC_BYTES),
      0,
      base,
      null,
    );
    return this.started(rc === 0, op.sock);
  }

  /**
   * Wine 8's wineserver reads SO_ERROR itself when a RST arrives while it watches the socket,
   * clearing the error, so the application's next recv reads 0 bytes — a clean EOF — after lost
   * data. Wine keeps its own record of the error, which a zero-timeout WSAPoll reports as
   * POLLERR (a real FIN gives POLLHUP alone). Checked on Wine 8 (every RST-as-EOF caught, no
   * FIN misread) and Wine 10 (which reports the reset itself). On Windows this never fires.
   */
  resetBehindEof(sock: Sock, _sendShut: boolean): number {
    const v = this.scratchView;
    v.setBigInt64(0, BigInt(sock), true);
    v.setInt16(w.POLLFD_EVENTS, w.POLLRDNORM, true);
    v.setInt16(w.POLLFD_REVENTS, 0, true);
    if (w.WSAPoll(this.scratch.addr, 1, 0) < 0) return 0;
    return v.getUint16(w.POLLFD_REVENTS, true) & w.POLLERR ? w.WSAECONNRESET : 0;
  }

  shutdownSend(sock: Sock): number {
    return w.shutdown(sock, w.SD_SEND) === 0 ? 0 : w.WSAGetLastError();
  }

  cancel(sock: Sock, rec: RecordMemory): number {
    if (w.CancelIoEx(sock, rec.addr)) return 0;
    return w.GetLastError();
  }

  closeSocket(sock: Sock, abortive: boolean): void {
    if (abortive) {
      // SO_LINGER {on, 0}: closesocket sends RST instead of FIN.
      this.scratchView.setUint16(0, 1, true);
      this.scratchView.setUint16(2, 0, true);
      w.setsockopt(sock, w.SOL_SOCKET, w.SO_LINGER, this.scratch.addr, 4);
    }
    w.closesocket(sock);
    this.sockets.delete(sock);
  }

  private sockaddrOf(fn: typeof w.getsockname, sock: Sock): SocketAddress | null {
    this.scratchView.setInt32(128, 128, true);
    if (fn(sock, this.scratch.addr, this.scratch.addr + 128n) !== 0) return null;
    return readSockaddr(this.scratchView, 0);
  }

  localAddress(sock: Sock): SocketAddress | null {
    return this.sockaddrOf(w.getsockname, sock);
  }

  peerAddress(sock: Sock): SocketAddress | null {
    return this.sockaddrOf(w.getpeername, sock);
  }

  errorName(code: number): string {
    return win32ErrorName(code);
  }
}
