// The contract between the backend-neutral engine and a completion backend (IOCP or
// io_uring). Everything above this interface is free of FFI.
import type { PinnedAllocator } from './pinned.js';

/** `nop`: a packet the engine posts to itself (the heartbeat that proves the loop turns). */
export type OpKind = 'accept' | 'connect' | 'recv' | 'send' | 'disconnect' | 'nop';
export const OP_KINDS: readonly OpKind[] = [
  'accept',
  'connect',
  'recv',
  'send',
  'disconnect',
  'nop',
];
export const OP_KIND_CODE: Record<OpKind, number> = {
  accept: 1,
  connect: 2,
  recv: 3,
  send: 4,
  disconnect: 5,
  nop: 6,
};

/** A socket handle as the backend knows it (SOCKET on Windows, fd on Linux). */
export type Sock = number;

export interface SocketAddress {
  host: string;
  port: number;
  family: 4 | 6;
}

/** What the backend needs of an op record: its pinned header, whose address identifies the op. */
export interface RecordMemory {
  readonly addr: bigint;
  readonly view: DataView;
}

/**
 * Result of starting an op:
 *  - PENDING: a completion will be dequeued later;
 *  - otherwise the op finished inline (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, or an immediate
 *    error that posts no packet): the value is the Win32/errno code (0 = success) and the
 *    engine completes it itself, queued, through the same path as a dequeued completion.
 */
export const PENDING = -1;
export type StartResult = number;

/**
 * Called for each dequeued completion: the key the socket was associated with and the address
 * of the op record, which identifies the op. The op's status stays in the record (resultCode).
 */
export interface CompletionSink {
  completion(key: bigint, recordAddr: number, bytes: number): void;
  /** Called once per dequeued batch, after its completions, with the batch size. */
  batch(size: number): void;
}

/** A failure of a synchronous backend call, with the system's error code and name. */
export class BackendError extends Error {
  constructor(
    readonly call: string,
    readonly code: number,
    readonly errorName: string,
    detail?: string,
  ) {
    super(`${call} failed: ${errorName} (${code})${detail ? `: ${detail}` : ''}`);
  }
}

export interface Backend extends PinnedAllocator {
  readonly name: 'iocp' | 'uring';
  /** Bytes at the start of each op record reserved for the backend (OVERLAPPED etc.). */
  readonly recordHeaderSize: number;
  /** The key reserved for the backend's own wake-up packets; never given to a socket. */
  readonly wakeKey: bigint;
  /**
   * Whether accept() needs a socket created beforehand (AcceptEx does). When false (io_uring),
   * the engine passes -1 as `acceptSock` and takes the new socket from acceptedSocket().
   */
  readonly preCreatesAcceptSocket: boolean;

  /** Starts dequeuing completions into `sink` without blocking the event loop. */
  start(sink: CompletionSink): void;
  /** Wakes and stops the dequeue loop; resolves when no thread is parked in the kernel. */
  stop(): Promise<void>;

  createSocket(family: 4 | 6): Sock;
  /** Binds and listens; exclusive (no other process may take the port). Returns the bound address. */
  listen(sock: Sock, addr: SocketAddress, backlog: number): SocketAddress;
  /** Binds a socket to the wildcard address of its family (ConnectEx needs a bound socket). */
  bindAny(sock: Sock, family: 4 | 6): void;
  /** Ties the socket to the completion port (or the emulated key table) under `key`. */
  associate(sock: Sock, key: bigint): void;

  accept(listenSock: Sock, acceptSock: Sock, rec: RecordMemory): StartResult;
  /**
   * After a successful accept: the new connection's socket (IOCP: `acceptSock`; io_uring: the
   * fd the kernel returned, read from the record). -1 if the accept failed.
   */
  acceptedSocket(rec: RecordMemory, acceptSock: Sock): Sock;
  /** After a successful accept: inherit the listener's properties. Returns 0 or an error code. */
  finishAccept(listenSock: Sock, acceptSock: Sock): number;
  connect(sock: Sock, addr: SocketAddress, rec: RecordMemory): StartResult;
  /** After a successful connect: make shutdown()/getpeername work. Returns 0 or an error code. */
  finishConnect(sock: Sock): number;
  recv(sock: Sock, rec: RecordMemory, buf: bigint, len: number): StartResult;
  send(sock: Sock, rec: RecordMemory, buf: bigint, len: number): StartResult;
  /**
   * Completes (0 bytes) once data or EOF can be read, without holding a buffer: how an idle
   * connection waits. IOCP: a zero-byte WSARecv; io_uring: POLL_ADD(POLLIN).
   */
  waitReadable(sock: Sock, rec: RecordMemory): StartResult;
  /** Bytes transferred by an op that finished inline. */
  inlineBytes(rec: RecordMemory): number;
  /** The decoded result a completed op left in its record (0 = success). */
  resultCode(rec: RecordMemory): number;
  /** The raw status as the kernel wrote it (NTSTATUS on Windows), for traces. */
  rawStatus(rec: RecordMemory): number;
  /** Posts a completion by hand with any key and record (self-test, wake-ups). */
  post(key: bigint, rec: RecordMemory, bytes: number): void;

  /** Graceful half-close of the send side. Returns 0 or an error code. */
  shutdownSend(sock: Sock): number;
  /** Cancels one op (rec) or every op of the socket (rec null). Returns 0 or an error code. */
  cancel(sock: Sock, rec: RecordMemory | null): number;
  /** Closes the socket; `abortive` resets the connection (linger 0) instead of a FIN. */
  closeSocket(sock: Sock, abortive: boolean): void;

  localAddress(sock: Sock): SocketAddress | null;
  peerAddress(sock: Sock): SocketAddress | null;

  /** The name of a Win32/Winsock (or errno) code, e.g. ERROR_NETNAME_DELETED. */
  errorName(code: number): string;
  /** Codes the engine must recognise across backends. */
  readonly codes: {
    operationAborted: number;
    connectionRefused: number;
    timedOut: number;
  };
}
