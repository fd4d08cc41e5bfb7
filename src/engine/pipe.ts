// One direction of a relay: recv from one socket, send the same bytes to another, and only then
// recv again. A direction holds at most one buffer, so a slow receiver stops reads on the fast
// side (backpressure) and memory per connection is bounded. Echo is the pipe client → client.
//
// An idle direction holds no buffer at all: it waits with waitReadable (a zero-byte WSARecv on
// IOCP, as libuv does; POLL_ADD on io_uring) and only then reads into a buffer. While data flows
// it reads into a buffer directly (one op per read); a buffered read left pending for
// `parkAfterMs` is cancelled and replaced by a wait ("parking"), which returns its buffer.
import type { Connection, Endpoint } from './connection.js';
import type { EngineCore, OpOwner } from './core.js';
import type { PinnedBlock } from './pinned.js';
import type { OpRecord } from './records.js';

export class Pipe implements OpOwner {
  /** The source reached EOF and the FIN was passed on. */
  done = false;
  bytes = 0;
  private offset = 0;
  private length = 0;
  /** Data is flowing: read into a buffer directly instead of waiting first. */
  private flowing = false;
  /** The pending buffered read, while there is one (the one parking cancels). */
  private readRec: OpRecord | null = null;

  constructor(
    private readonly core: EngineCore,
    private readonly conn: Connection,
    readonly from: Endpoint,
    readonly to: Endpoint,
  ) {}

  start(): void {
    this.read();
  }

  private read(): void {
    const backend = this.core.backend;
    if (!this.flowing) {
      this.core.startOp('recv', this.from.key, this, (rec) =>
        backend.waitReadable(this.from.sock, rec),
      );
      return;
    }
    const buf = this.core.buffers.acquire();
    this.core.startOp('recv', this.from.key, this, (rec) => {
      rec.buffer = buf;
      this.readRec = rec;
      return backend.recv(this.from.sock, rec, buf.addr, buf.bytes.byteLength);
    });
  }

  /**
   * Called by the engine's sweep: a buffered read pending since before `olderThan` (a
   * performance.now() time) is cancelled; its completion then turns into a wait.
   */
  park(olderThan: number): void {
    const rec = this.readRec;
    if (!rec || rec.parking || rec.issuedAt > olderThan) return;
    rec.parking = true;
    if (this.core.backend.cancel(this.from.sock, rec) !== 0) rec.parking = false; // completed meanwhile
  }

  private write(buf: PinnedBlock): void {
    const off = this.offset;
    const len = this.length - off;
    this.core.startOp('send', this.to.key, this, (rec) => {
      rec.buffer = buf;
      return this.core.backend.send(this.to.sock, rec, buf.addr + BigInt(off), len);
    });
  }

  complete(rec: OpRecord, code: number, bytes: number): void {
    const buf = rec.buffer;
    const conn = this.conn;
    if (rec === this.readRec) this.readRec = null;
    if (rec.parking && code === this.core.backend.codes.operationAborted) {
      // Parked: the buffer goes back to the pool and the direction waits without one.
      if (buf) this.core.buffers.release(buf);
      this.flowing = false;
      if (conn.state === 'open') this.read();
      else conn.opSettled();
      return;
    }
    if (code !== 0 || conn.state !== 'open') {
      if (buf) this.core.buffers.release(buf);
      if (code !== 0) conn.failed(rec.kind, rec.kind === 'recv' ? this.from : this.to, code);
      conn.opSettled();
      return;
    }
    if (!buf) {
      // A wait completed: data or EOF is there to read.
      this.flowing = true;
      this.read();
      return;
    }
    conn.touch();
    if (rec.kind === 'recv') {
      if (bytes === 0) {
        this.core.buffers.release(buf);
        this.finish();
        return;
      }
      this.from.bytesIn += bytes;
      conn.received(bytes);
      this.offset = 0;
      this.length = bytes;
      this.write(buf);
      return;
    }
    // send
    this.to.bytesOut += bytes;
    this.bytes += bytes;
    this.offset += bytes;
    if (this.offset < this.length) {
      this.write(buf); // a partial send: the rest goes before any new read
      return;
    }
    this.core.buffers.release(buf);
    this.read();
  }

  /** EOF from the source: carry the half-close across with shutdown(SD_SEND). */
  private finish(): void {
    this.done = true;
    const code = this.core.backend.shutdownSend(this.to.sock);
    if (code !== 0) this.core.countError('shutdown', this.core.backend.errorName(code));
    this.conn.pipeDone();
  }
}
