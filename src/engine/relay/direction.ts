// One direction of a relay: recv from one socket, send the same bytes to another, and only then
// recv again. A direction holds at most one buffer, so a slow receiver stops reads on the fast
// side (backpressure) and memory per connection is bounded. Echo is the direction client → client.
//
// An idle direction holds no buffer at all. On io_uring every read is a recv whose buffer the
// kernel picks from the provided ring when data arrives (one op per read, none held while
// waiting). Elsewhere (IOCP; io_uring before 5.19) it waits with a bufferless recv (a zero-byte
// WSARecv, as libuv does; POLL_ADD) and only then reads into a buffer; while data flows it reads
// into a buffer directly only after a read that filled its whole buffer (bulk); after a short
// read it waits again, and a buffered read left pending for `parkAfterMs` is cancelled and
// replaced by a wait ("parking"), which returns its buffer. When every provided buffer is in
// use, the next read takes a buffer of the engine's own pool instead.
//
// Bulk (io_uring): a direction whose reads keep filling whole buffers switches, between a
// delivered buffer and its next read, to splicing through a kernel pipe: socket → pipe (a recv
// op), pipe → socket (a send op, repeated until the pipe is empty). It splices straight on
// after filling the pipe and waits (bufferless) first otherwise, so a splice never sits blocked in
// the kernel on a quiet socket. The direction is closed with the connection.
//
// The buffer travels with the ops: a recv's record hands it to the send that carries its bytes,
// and whichever record holds it last returns it when the record is released.
import type { KernelPipe } from '../backend.js';
import type { EngineCore, OpOwner } from '../core.js';
import type { OpRecord } from '../tables/ops.js';
import type { PinnedBlock } from '../tables/pinned.js';
import type { Connection } from './connection.js';
import type { Endpoint } from './endpoint.js';
import { SPLICE_AFTER_FULL_READS } from './splice.js';

export class RelayDirection implements OpOwner {
  /** Nothing more goes this way: the source's EOF was passed on (FIN), or reading stopped. */
  done = false;
  bytes = 0;
  /** The connection closes gracefully: read no more, deliver what was read, then FIN. */
  private stopping = false;
  /** Bytes of the current buffer to deliver. */
  private fill = 0;
  /** Data is flowing: read into a buffer directly instead of waiting first. */
  private flowing = false;
  /** The provided buffers ran out: the next read brings a buffer of its own. */
  private ownBuffer = false;
  /** Consecutive reads that filled their whole buffer (bulk: time to splice). */
  private fullReads = 0;
  /** The kernel pipe this direction splices through, once it does. */
  private kpipe: KernelPipe | null = null;
  /** The pending read (a wait or a buffered recv), while there is one. */
  private readRec: OpRecord | null = null;
  /** Bytes given to start() not written yet. */
  private firstLeft: Uint8Array | null = null;

  constructor(
    private readonly core: EngineCore,
    private readonly conn: Connection,
    readonly from: Endpoint,
    readonly to: Endpoint,
  ) {}

  /** `first`: bytes to write before the first read (a PROXY header, a client's early bytes). */
  start(first: Uint8Array | null = null): void {
    this.firstLeft = first?.length ? first : null;
    if (this.firstLeft) this.writeFirst();
    else this.read();
  }

  /** The next buffer's worth of the bytes given to start(). */
  private writeFirst(): void {
    const left = this.firstLeft as Uint8Array;
    const buf = this.core.buffers.acquire();
    const n = Math.min(left.length, buf.bytes.byteLength);
    buf.bytes.set(left.subarray(0, n), 0);
    this.firstLeft = n < left.length ? left.subarray(n) : null;
    this.fill = n;
    this.write(buf, 0);
  }

  private read(): void {
    if (this.stopping) {
      this.finish();
      return;
    }
    const rec = this.core.newOp('recv', this.from.keyEntry, this);
    const provided = this.core.buffers.provided;
    if (this.kpipe) {
      // Splice now after a full chunk (more is likely there); else wait for data first.
      if (this.flowing) {
        rec.splice = this.kpipe.write;
        rec.length = this.kpipe.capacity;
      }
    } else if (provided && !this.ownBuffer) {
      rec.selectBuffer = true;
      rec.length = provided.blockSize;
    } else if (this.flowing || this.ownBuffer) {
      this.ownBuffer = false;
      const buf = this.core.buffers.acquire();
      rec.buffer = buf;
      rec.length = buf.bytes.byteLength;
    }
    this.readRec = rec;
    this.core.submit(rec);
  }

  private write(buf: PinnedBlock | null, offset: number): void {
    const rec = this.core.newOp('send', this.to.keyEntry, this);
    if (buf) rec.buffer = buf;
    else rec.splice = (this.kpipe as KernelPipe).read; // the bytes are in the pipe
    rec.offset = offset;
    rec.length = this.fill - offset;
    this.core.submit(rec);
  }

  /** Graceful close: cancel the pending read; a send in flight is delivered, then the FIN. */
  stopReading(): void {
    if (this.done || this.stopping) return;
    this.stopping = true;
    if (this.readRec) this.core.cancel(this.readRec);
  }

  /**
   * Called by the engine's sweep: a buffered read pending since before `olderThan` (a
   * performance.now() time) is cancelled; its completion then turns into a wait.
   */
  park(olderThan: number): void {
    const rec = this.readRec;
    if (!rec?.buffer || rec.parking || rec.cancelRequested || rec.issuedAt > olderThan) return;
    rec.parking = true;
    this.core.cancel(rec);
  }

  complete(rec: OpRecord, code: number, bytes: number): void {
    if (rec.kind === 'recv') this.readDone(rec, code, bytes);
    else this.sendDone(rec, code, bytes);
  }

  private readDone(rec: OpRecord, code: number, bytes: number): void {
    const conn = this.conn;
    this.readRec = null;
    const aborted = code === this.core.backend.codes.operationAborted;
    if (conn.abortive) {
      conn.settled(); // resetting: nothing read now can be delivered anyway
      return;
    }
    if (rec.parking && aborted) {
      // Parked: the buffer goes back with the record; the direction waits without one.
      this.flowing = false;
      this.read();
      return;
    }
    if (rec.selectBuffer && code === this.core.buffers.provided?.noBuffers) {
      this.ownBuffer = true; // counted by the engine; read once into a buffer of our own
      this.read();
      return;
    }
    if (code !== 0) {
      if (!aborted) {
        conn.failed('recv', this.from, code);
        return;
      }
      // A cancelled read ends the connection (DESIGN §1.5); what was read is still delivered.
      // This direction passes its FIN on first, then the connection closes gracefully.
      if (this.stopping) {
        this.finish();
        return;
      }
      this.stopping = true;
      this.shutTo();
      if (conn.state === 'open') conn.closeGracefully(`${this.from.side} recv cancelled`);
      else conn.directionDone();
      return;
    }
    if (!rec.buffer && !rec.selectBuffer && rec.splice < 0) {
      // A wait completed: data or EOF is there. Once stopping, nothing was read: nothing lost.
      if (this.stopping) {
        this.finish();
        return;
      }
      this.flowing = true;
      this.read();
      return;
    }
    if (bytes === 0) {
      // EOF — unless the socket says the peer reset (Wine can report a RST as EOF): then the
      // other side must see a reset too, never a clean FIN after lost bytes.
      const reset = this.core.backend.resetBehindEof(this.from.sock, this.from.sendShut);
      if (reset !== 0) conn.failed('recv', this.from, reset);
      else this.finish();
      return;
    }
    if (rec.splice >= 0) {
      // Spliced into the pipe: move them on; a short chunk means the socket is drained.
      if (bytes < (this.kpipe as KernelPipe).capacity) this.flowing = false;
      this.accept(bytes);
      this.write(null, 0);
      return;
    }
    if (!rec.buffer) {
      // A selected recv that read bytes names its buffer: without one the bytes are lost.
      conn.failed('recv', this.from, this.core.backend.codes.invalidArgument);
      return;
    }
    this.fullReads = bytes === rec.length ? this.fullReads + 1 : 0;
    // A read that did not fill its buffer drained the socket: wait (bufferless) before the
    // next, so a buffer is held only while bytes are in hand, not across a quiet spell (where
    // data arrives at once, as after a wait, the buffered read completes inline: no packet).
    if (!rec.selectBuffer) this.flowing = this.fullReads > 0;
    this.accept(bytes);
    // Bytes read are accepted: they are written even while stopping.
    this.write(rec.takeBuffer() as PinnedBlock, 0);
  }

  private accept(bytes: number): void {
    this.conn.touch();
    this.conn.progress(bytes);
    this.from.bytesIn += bytes;
    this.fill = bytes;
  }

  private sendDone(rec: OpRecord, code: number, bytes: number): void {
    const conn = this.conn;
    if (code !== 0 || (rec.cancelRequested && bytes < rec.length)) {
      // A failed or cancelled send loses bytes keyport accepted: never a clean FIN after that.
      // (io_uring may end a cancelled send with the part it had sent, as a success.)
      conn.failed('send', this.to, code || this.core.backend.codes.operationAborted);
      return;
    }
    if (conn.abortive) {
      conn.settled();
      return;
    }
    conn.touch();
    conn.progress(bytes);
    this.to.bytesOut += bytes;
    this.bytes += bytes;
    if (rec.splice >= 0) {
      const splicer = this.core.splicePipes as NonNullable<typeof this.core.splicePipes>;
      splicer.bytes += bytes;
      if (bytes === 0) {
        // A splice that moved nothing would repeat forever: the bytes in the pipe are lost.
        conn.failed('send', this.to, this.core.backend.codes.invalidArgument);
        return;
      }
    }
    const next = rec.offset + bytes;
    if (next < this.fill) {
      this.write(rec.takeBuffer(), next); // the rest goes before any new read
      return;
    }
    if (this.firstLeft) {
      this.writeFirst(); // the record returns the drained buffer when it is released
      return;
    }
    // Between a delivered buffer and the next read: a bulk direction may switch to splicing.
    if (!this.kpipe && this.fullReads >= SPLICE_AFTER_FULL_READS && this.core.splicePipes) {
      this.kpipe = this.core.splicePipes.acquire();
      if (this.kpipe) this.flowing = true;
    }
    this.read(); // the record returns the drained buffer when it is released
  }

  /** The connection is closed and no op is in flight: the direction goes. */
  dispose(): void {
    if (!this.kpipe) return;
    this.core.splicePipes?.release(this.kpipe);
    this.kpipe = null;
  }

  /** No more to relay this way: carry the half-close across with shutdown(SD_SEND). */
  private finish(): void {
    this.shutTo();
    this.conn.directionDone();
  }

  private shutTo(): void {
    this.done = true;
    // Never on a closed connection: the handle may belong to another socket by now.
    if (this.conn.state === 'closed') return;
    this.to.sendShut = true;
    const code = this.core.backend.shutdownSend(this.to.sock);
    if (code !== 0)
      this.core.announce.socketCallFailed(
        'shutdown',
        this.core.errorName(code),
        this.conn.listener,
        this.conn,
      );
  }
}
