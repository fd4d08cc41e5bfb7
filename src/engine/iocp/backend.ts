// The Windows completion backend: one I/O completion port, sockets associated with it under
// keyport's keys, extended OVERLAPPED records in pinned memory, and a dequeue loop that parks
// GetQueuedCompletionStatusEx on a libuv pool thread (koffi .async) so the event loop never blocks.
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
import { ntstatusToWin32, win32ErrorName } from './errors.js';
import { type Extensions, loadExtensions } from './extensions.js';
import {
  ACCEPT_ADDR_LEN,
  ENTRY_BYTES,
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

function u64(view: DataView, off: number): number {
  return view.getUint32(off, true) + view.getUint32(off + 4, true) * 0x1_0000_0000;
}

export class IocpBackend implements Backend {
  readonly name = 'iocp' as const;
  readonly recordHeaderSize = RECORD_SIZE;
  readonly wakeKey = WAKE_KEY;
  readonly codes = { operationAborted: 995, connectionRefused: 1225, timedOut: 121 };
  /** AcceptEx accepts into a socket the caller created beforehand. */
  readonly preCreatesAcceptSocket = true;

  private readonly port: number;
  private ext: Extensions | null = null;
  private readonly scratch: PinnedBlock;
  private readonly scratchView: DataView;
  private entries: PinnedBlock | null = null;
  private stopping = false;
  private parked: Promise<void> | null = null;

  constructor() {
    const wsadata = this.allocPinned(512);
    const rc = w.WSAStartup(0x0202, wsadata.addr);
    if (rc !== 0) throw new BackendError('WSAStartup', rc, win32ErrorName(rc));
    this.freePinned(wsadata);
    const port = w.CreateIoCompletionPort(w.INVALID_HANDLE_VALUE, 0, 0n, 1);
    if (!port) this.fail('CreateIoCompletionPort', w.GetLastError());
    this.port = port;
    this.scratch = this.allocPinned(256);
    this.scratchView = new DataView(this.scratch.bytes.buffer, this.scratch.bytes.byteOffset, 256);
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

  start(sink: CompletionSink): void {
    const entries = this.allocPinned(ENTRY_SIZE * DEQUEUE_BATCH + 8);
    this.entries = entries;
    const view = new DataView(
      entries.bytes.buffer,
      entries.bytes.byteOffset,
      entries.bytes.byteLength,
    );
    const removedOff = ENTRY_SIZE * DEQUEUE_BATCH;
    const removedAddr = entries.addr + BigInt(removedOff);
    this.parked = new Promise<void>((resolve) => {
      const park = (): void => {
        w.GetQueuedCompletionStatusEx.async(
          this.port,
          entries.addr,
          DEQUEUE_BATCH,
          removedAddr,
          w.INFINITE,
          0,
          (err: unknown, ok: number) => {
            if (err || !ok) {
              // The port is gone (closed under us): nothing more will come.
              resolve();
              return;
            }
            const n = view.getUint32(removedOff, true);
            let woken = false;
            for (let i = 0; i < n; i++) {
              const base = i * ENTRY_SIZE;
              const key = view.getBigUint64(base + ENTRY_KEY, true);
              const ov = u64(view, base + ENTRY_OVERLAPPED);
              if (key === WAKE_KEY && ov === 0) {
                woken = true;
                continue;
              }
              sink.completion(key, ov, view.getUint32(base + ENTRY_BYTES, true));
            }
            sink.batch(n);
            if (woken && this.stopping) resolve();
            else park();
          },
        );
      };
      park();
    });
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.parked) {
      // Under Wine a thread parked in GQCSEx(INFINITE) is never woken by CloseHandle: post.
      w.PostQueuedCompletionStatus(this.port, 0, WAKE_KEY, 0n);
      await this.parked;
    }
    w.CloseHandle(this.port);
    if (this.entries) this.freePinned(this.entries);
    this.entries = null;
  }

  /** Posts a completion packet by hand (used by the self-test and to inject wake-ups). */
  post(key: bigint, rec: RecordMemory, bytes: number): void {
    if (!w.PostQueuedCompletionStatus(this.port, bytes, key, rec.addr)) {
      this.fail('PostQueuedCompletionStatus', w.GetLastError());
    }
  }

  resultCode(rec: RecordMemory): number {
    return ntstatusToWin32(rec.view.getUint32(OV_INTERNAL, true));
  }

  rawStatus(rec: RecordMemory): number {
    return rec.view.getUint32(OV_INTERNAL, true);
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
    if (family === 6) this.setIntOption(s, w.IPPROTO_IPV6, w.IPV6_V6ONLY, 1);
    return s;
  }

  private setIntOption(s: Sock, level: number, name: number, value: number): number {
    this.scratchView.setInt32(0, value, true);
    return w.setsockopt(s, level, name, this.scratch.addr, 4) === 0 ? 0 : w.WSAGetLastError();
  }

  private extensions(s: Sock): Extensions {
    this.ext ??= loadExtensions(s);
    return this.ext;
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
    const len = writeSockaddr(this.scratchView, 0, {
      host: family === 4 ? '0.0.0.0' : '::',
      port: 0,
      family,
    });
    if (w.bind(sock, this.scratch.addr, len) !== 0) this.fail('bind', w.WSAGetLastError());
  }

  associate(sock: Sock, key: bigint): void {
    if (w.CreateIoCompletionPort(sock, this.port, key, 0) !== this.port) {
      this.fail('CreateIoCompletionPort(associate)', w.GetLastError());
    }
    this.setSkipMode(sock);
  }

  /** An op that succeeds inline then posts no packet: the engine completes it itself (DESIGN §1.7). */
  private setSkipMode(sock: Sock): void {
    w.SetFileCompletionNotificationModes(
      sock,
      w.FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | w.FILE_SKIP_SET_EVENT_ON_HANDLE,
    );
  }

  private resetOverlapped(rec: RecordMemory): void {
    for (let i = 0; i < OVERLAPPED_SIZE; i += 4) rec.view.setUint32(i, 0, true);
  }

  /** Maps a start call's return to PENDING or an inline result code. */
  private started(ok: boolean, rec: RecordMemory): StartResult {
    if (ok) return ntstatusToWin32(rec.view.getUint32(OV_INTERNAL, true));
    const err = w.WSAGetLastError();
    return err === w.WSA_IO_PENDING ? PENDING : err;
  }

  accept(listenSock: Sock, acceptSock: Sock, rec: RecordMemory): StartResult {
    this.resetOverlapped(rec);
    rec.view.setBigInt64(REC_ACCEPT_SOCKET, BigInt(acceptSock), true);
    const ok = this.extensions(listenSock).AcceptEx(
      listenSock,
      acceptSock,
      rec.addr + BigInt(REC_ADDRS),
      0,
      ACCEPT_ADDR_LEN,
      ACCEPT_ADDR_LEN,
      rec.addr + BigInt(REC_BYTES),
      rec.addr,
    );
    return this.started(ok !== 0, rec);
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

  connect(sock: Sock, addr: SocketAddress, rec: RecordMemory): StartResult {
    this.resetOverlapped(rec);
    const len = writeSockaddr(rec.view, REC_ADDRS, addr);
    const ok = this.extensions(sock).ConnectEx(
      sock,
      rec.addr + BigInt(REC_ADDRS),
      len,
      null,
      0,
      null,
      rec.addr,
    );
    return this.started(ok !== 0, rec);
  }

  finishConnect(sock: Sock): number {
    const ok = w.setsockopt(sock, w.SOL_SOCKET, w.SO_UPDATE_CONNECT_CONTEXT, null, 0);
    return ok === 0 ? 0 : w.WSAGetLastError();
  }

  recv(sock: Sock, rec: RecordMemory, buf: bigint, len: number): StartResult {
    this.resetOverlapped(rec);
    rec.view.setUint32(REC_WSABUF, len, true);
    rec.view.setBigUint64(REC_WSABUF + 8, buf, true);
    rec.view.setUint32(REC_FLAGS, 0, true);
    const base = rec.addr;
    const rc = w.WSARecv(
      sock,
      base + BigInt(REC_WSABUF),
      1,
      base + BigInt(REC_BYTES),
      base + BigInt(REC_FLAGS),
      base,
      null,
    );
    return this.started(rc === 0, rec);
  }

  /** A zero-byte WSARecv completes when data (or the FIN) arrives, and reads nothing. */
  waitReadable(sock: Sock, rec: RecordMemory): StartResult {
    return this.recv(sock, rec, 0n, 0);
  }

  send(sock: Sock, rec: RecordMemory, buf: bigint, len: number): StartResult {
    this.resetOverlapped(rec);
    rec.view.setUint32(REC_WSABUF, len, true);
    rec.view.setBigUint64(REC_WSABUF + 8, buf, true);
    const base = rec.addr;
    const rc = w.WSASend(
      sock,
      base + BigInt(REC_WSABUF),
      1,
      base + BigInt(REC_BYTES),
      0,
      base,
      null,
    );
    return this.started(rc === 0, rec);
  }

  shutdownSend(sock: Sock): number {
    return w.shutdown(sock, w.SD_SEND) === 0 ? 0 : w.WSAGetLastError();
  }

  cancel(sock: Sock, rec: RecordMemory | null): number {
    if (w.CancelIoEx(sock, rec ? rec.addr : null)) return 0;
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
