// The contract between the backend-neutral engine and a completion backend (IOCP or
// io_uring). Everything above this interface is free of FFI.
import type { PinnedAllocator, PinnedBlock } from './tables/pinned.js';

/** `nop`: a packet the engine posts to itself (the heartbeat that proves the loop turns). */
export type OpKind = 'accept' | 'connect' | 'recv' | 'send' | 'nop';
export const OP_KINDS: readonly OpKind[] = ['accept', 'connect', 'recv', 'send', 'nop'];
/** The kind as stamped into a record's native fields (5 was DisconnectEx's, never issued). */
export const OP_KIND_CODE: Record<OpKind, number> = {
  accept: 1,
  connect: 2,
  recv: 3,
  send: 4,
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
 * An op as data (DESIGN §1.2): the record carries its own arguments, so either backend submits
 * it the same way and nothing about an op lives in a closure.
 */
export interface OpData extends RecordMemory {
  readonly kind: OpKind;
  /** The socket the op runs on (the listening socket for an accept). */
  readonly sock: Sock;
  /** accept on IOCP: the socket created beforehand that receives the connection; else -1. */
  readonly acceptSock: Sock;
  /** Where the data goes or comes from; 0n with length 0 on a recv is a bufferless wait. */
  readonly bufAddr: bigint;
  readonly length: number;
  /** connect: the address to connect to. */
  readonly peer: SocketAddress | null;
  /**
   * recv only, where the backend provides buffers: no buffer now; the kernel picks one from the
   * provided pool when data arrives (up to `length` bytes) and the completion names it.
   */
  readonly selectBuffer: boolean;
  /**
   * recv/send through a pipe instead of a buffer (io_uring splice): a recv moves up to `length`
   * bytes from the socket into this pipe's write end, a send moves `length` bytes from this
   * pipe's read end to the socket. -1: not spliced.
   */
  readonly splice: Sock;
}

/** A kernel pipe a relay direction moves its bytes through (splice: no copy to user memory). */
export interface KernelPipe {
  readonly read: Sock;
  readonly write: Sock;
  /** Bytes it holds at most: what one splice into it may move. */
  readonly capacity: number;
}

/**
 * Buffers the kernel selects for a recv when its data arrives (io_uring's provided-buffer ring),
 * so a connection waiting to read holds none. The engine lends a filled block on to the send
 * that carries its bytes and gives it back after that send completed.
 */
export interface ProvidedBufferPool {
  readonly blockSize: number;
  /** The status a selected recv completes with when every block is in use. */
  readonly noBuffers: number;
  /** After a selected recv's completion: the block the kernel filled (null: none). */
  taken(rec: RecordMemory): PinnedBlock | null;
  /** Back to the kernel. */
  give(block: PinnedBlock): void;
  isProvided(block: PinnedBlock): boolean;
  /** Blocks waiting in the kernel for data. */
  readonly available: number;
}

/** Finds the op record a completion names (its address), for backends that read their header. */
export type RecordLookup = (addr: number) => RecordMemory | undefined;

/**
 * Result of submitting an op:
 *  - PENDING: exactly one completion will be dequeued later;
 *  - otherwise the op finished inline and NO packet will come (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS
 *    in effect on that socket, or an immediate error): the value is the Win32/errno code
 *    (0 = success) and the engine completes it itself, queued, through the same path.
 */
export const PENDING = -1;
export type StartResult = number;

/**
 * Called for each dequeued completion with what the port (or the CQ) returned, untouched: the
 * key the packet carried, the record address it named, the byte count and the status (a
 * Win32/errno code, 0 = success). Nothing is read back from keyport's own tables to make it.
 */
export interface CompletionSink {
  completion(key: bigint, recordAddr: number, bytes: number, status: number): void;
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

/** Windows console control events: Ctrl+C, Ctrl+Break, the console closed, logoff, shutdown. */
export type ConsoleEvent = 'ctrl-c' | 'ctrl-break' | 'close' | 'logoff' | 'shutdown';
/**
 * Told of a console control event; true: handled, no other handler runs; false: the next one
 * does (Node's own, which turns Ctrl+C into SIGINT, then the system's, which ends the process).
 */
export type ConsoleHandler = (event: ConsoleEvent) => boolean;

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

  /**
   * Starts dequeuing completions into `sink` without blocking the event loop. `records` finds
   * a record by address, for a backend that keeps its own header in it (io_uring).
   */
  start(sink: CompletionSink, records: RecordLookup): void;
  /** Wakes and stops the dequeue loop; resolves when no thread waits in the kernel. */
  stop(): Promise<void>;
  /**
   * Dequeues and delivers completions on the calling thread, waiting up to `ms` for the first;
   * the first call stops the background dequeue for good. For a drain that must end before
   * the function running it returns (a Windows console handler). IOCP only.
   */
  pumpSync?(ms: number): void;
  /** Calls `handler` on console control events (Windows only). */
  watchConsoleEvents?(handler: ConsoleHandler): void;
  /**
   * Ends this process at once with `code`, past the runtime's own shutdown, once keyport has
   * stopped and said so (Windows only: see the IOCP backend). Without it: process.exit.
   */
  exitProcess?(code: number): never;

  createSocket(family: 4 | 6): Sock;
  /** Binds and listens; exclusive (no other process may take the port). Returns the bound address. */
  listen(sock: Sock, addr: SocketAddress, backlog: number): SocketAddress;
  /**
   * Prepares a socket for connect: ConnectEx needs it bound (to the wildcard address of its
   * family); io_uring's connect binds by itself, choosing the port per destination.
   */
  bindAny(sock: Sock, family: 4 | 6): void;
  /**
   * Sets up buffers the kernel selects at completion (io_uring, 5.19+), or null where the
   * backend has none (IOCP: an idle read is a zero-byte WSARecv instead). Called once, before
   * start().
   */
  provideBuffers?(blockSize: number): ProvidedBufferPool | null;
  /**
   * A pipe for splicing socket to socket (io_uring), or null where the backend cannot splice
   * (IOCP) or the system refuses a pipe (descriptor limit): the relay then keeps its buffers.
   */
  createPipe?(): KernelPipe | null;
  closePipe?(pipe: KernelPipe): void;
  /** Ties the socket to the completion port (or the emulated key table) under `key`. */
  associate(sock: Sock, key: bigint): void;

  /**
   * Hands an op to the kernel: accept, connect, recv (a bufferless wait when length is 0), send.
   * The record must be released only after its completion was dequeued or, for an inline
   * result, handled.
   */
  submit(op: OpData): StartResult;
  /**
   * After a successful accept: the new connection's socket (IOCP: `acceptSock`; io_uring: the
   * fd the kernel returned, left in the record). -1 if the accept failed.
   */
  acceptedSocket(rec: RecordMemory, acceptSock: Sock): Sock;
  /** After a successful accept: inherit the listener's properties. Returns 0 or an error code. */
  finishAccept(listenSock: Sock, acceptSock: Sock): number;
  /** After a successful connect: make shutdown()/getpeername work. Returns 0 or an error code. */
  finishConnect(sock: Sock): number;
  /** Bytes transferred by an op that finished inline. */
  inlineBytes(rec: RecordMemory): number;
  /**
   * Where a record holds the kernel's result for its op: the status, with the value it holds
   * while the kernel still owns the op (IOCP: OVERLAPPED.Internal = STATUS_PENDING), and the
   * byte count (InternalHigh). A packet for a record that still reads `pending`, or whose byte
   * count is not the record's, is not that op's completion: a stale or duplicate packet.
   */
  readonly statusWord: { offset: number; pending: number; bytesOffset: number };
  /** Posts a completion by hand with any key and record (self-test, heartbeat, wake-ups). */
  post(key: bigint, rec: RecordMemory, bytes: number): void;

  /**
   * After a recv read 0 bytes (EOF): the reset code if the socket says the peer actually reset
   * (Wine 8 can report a RST as a clean EOF), else 0. Called only at EOF, never per read.
   * `sendShut`: keyport already shut this socket's sending side (its FIN went out first).
   */
  resetBehindEof(sock: Sock, sendShut: boolean): number;
  /** Graceful half-close of the send side. Returns 0 or an error code. */
  shutdownSend(sock: Sock): number;
  /**
   * Cancels one op by its record (CancelIoEx with the OVERLAPPED; ASYNC_CANCEL by user_data,
   * which every io_uring kernel has). Returns 0 or an error code (not found: it completed).
   */
  cancel(sock: Sock, rec: RecordMemory): number;
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
    /** An op that could not even be handed to the kernel. */
    invalidArgument: number;
    /** A cancel that found nothing: the op had completed. */
    notFound: number;
    /** Resets and aborts by the peer (a connect that ends this way did reach the peer). */
    resets: readonly number[];
  };
}
