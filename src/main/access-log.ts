// The access log (issue 17): one JSON line per closed connection, for operators used to
// HAProxy's `option tcplog` or nginx's `stream` access_log. Fed by the engine at each close
// (Engine.connectionLog), written without blocking the engine's thread on the disk: lines go to a
// buffered asynchronous file stream, bounded (a line that would queue past MAX_QUEUED_BYTES is
// dropped and counted, never held), and the file is rotated by size. The line format is
// documented in docs/access-log.md: fields may be added, never renamed or removed.
import { createWriteStream, fstatSync, openSync, type WriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import type { ConnectionLog } from '../engine/observers.js';
import { closeReasonKind } from '../engine/relay/close-reasons.js';
import { formatTarget } from '../engine/relay/connect-failures.js';
import type { Connection } from '../engine/relay/connection.js';
import { formatSocketAddress } from '../engine/relay/endpoint.js';

/** Bytes of lines written but not yet on disk past which a new line is dropped (and counted). */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** After the file failed (disk full, removed directory): wait this long before reopening it. */
const REOPEN_AFTER_MS = 5000;

export interface AccessLogOptions {
  /** 'stdout', or the file's path. */
  to: string;
  /** Rotate when the file would grow past this many bytes. */
  maxBytes: number;
  /** Rotated files kept (FILE.1 … FILE.keep); 0: the full file is removed. */
  keep: number;
  maxQueuedBytes?: number;
  /** Failures of the file (open, write, rotation), for keyport's own log. */
  onError?: (message: string, err: unknown) => void;
}

/** The access log's fields in their documented order (docs/access-log.md). */
export interface AccessLogRecord {
  time: string;
  listener: string;
  connection: string;
  client: string | null;
  local: string | null;
  upstream: string | null;
  clientKey: string;
  upstreamKey: string | null;
  bytesIn: number;
  bytesOut: number;
  upstreamBytesIn: number | null;
  upstreamBytesOut: number | null;
  durationMs: number;
  reason: string;
  reasonKind: string;
  abortive: boolean;
  error: string | null;
}

/** The record of a closed connection (its addresses kept at open, see AccessLog.opened). */
export function accessLogRecord(conn: Connection, at: Date, nowPerf: number): AccessLogRecord {
  const forward = conn.listener.mode === 'forward';
  const up = conn.upstream;
  return {
    time: at.toISOString(),
    listener: conn.listener.id,
    connection: conn.id,
    client: formatSocketAddress(conn.client.remote),
    local: formatSocketAddress(conn.client.local) ?? formatSocketAddress(conn.listener.bound),
    // The address connected to; the target as configured when it never got that far.
    upstream: forward
      ? (formatSocketAddress(up?.remote ?? null) ?? formatTarget(conn.listener.target))
      : null,
    clientKey: conn.client.keyEntry.keyHex,
    upstreamKey: up ? up.keyEntry.keyHex : null,
    bytesIn: conn.client.bytesIn,
    bytesOut: conn.client.bytesOut,
    upstreamBytesIn: forward ? (up?.bytesIn ?? 0) : null,
    upstreamBytesOut: forward ? (up?.bytesOut ?? 0) : null,
    durationMs: Math.round((nowPerf - conn.startedAt) * 1000) / 1000,
    reason: conn.closeReason ?? 'closed',
    reasonKind: closeReasonKind(conn.closeReason),
    abortive: conn.abortive,
    error: conn.closeError,
  };
}

/** Where the lines go. write() returns false when the line was dropped (queue full). */
interface Sink {
  write(line: string): boolean;
  close(): Promise<void>;
}

export class AccessLog implements ConnectionLog {
  /** Lines written (handed to the sink) and dropped (the queue was full). */
  lines = 0;
  dropped = 0;
  private readonly sink: Sink;

  /** Opens the file now: a path that cannot be written stops start-up with its error. */
  constructor(opts: AccessLogOptions) {
    const max = opts.maxQueuedBytes ?? MAX_QUEUED_BYTES;
    const onError = opts.onError ?? (() => {});
    this.sink =
      opts.to === 'stdout'
        ? new StdoutSink(max)
        : new FileSink(opts.to, opts.maxBytes, opts.keep, max, onError);
  }

  opened(conn: Connection): void {
    conn.client.keepAddresses();
  }

  closed(conn: Connection): void {
    try {
      const line = `${JSON.stringify(accessLogRecord(conn, new Date(), performance.now()))}\n`;
      if (this.sink.write(line)) this.lines++;
      else this.dropped++;
    } catch {
      // Called from the completion path: the log's trouble must never end the engine.
      this.dropped++;
    }
  }

  /** Writes out what is queued and closes the file (at shutdown). */
  close(): Promise<void> {
    return this.sink.close();
  }
}

/**
 * stdout, as keyport's own JSON log writes it (Node writes to a file or a pipe synchronously):
 * under Wine the two interleave in the launcher's log file. A file is the better place.
 */
class StdoutSink implements Sink {
  constructor(private readonly maxQueued: number) {}

  write(line: string): boolean {
    // A terminal or pipe that does not keep up: drop rather than grow (asynchronous writers).
    if (process.stdout.writableLength + line.length > this.maxQueued) return false;
    process.stdout.write(line);
    return true;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A file written through a buffered asynchronous stream (libuv's pool does the writes), rotated
 * by size between lines: a line that would take the file past maxBytes goes to a fresh file, so
 * none is split. Rotation closes the stream before renaming (Windows cannot rename an open
 * file), shifts FILE.1 → FILE.2 … (the oldest beyond `keep` removed), renames FILE → FILE.1 and
 * reopens; lines written meanwhile wait, in order, in `pending` (within the same bound).
 */
class FileSink implements Sink {
  private stream: WriteStream | null;
  /** Bytes in the current file, counting those still queued for it. */
  private size: number;
  private readonly pending: string[] = [];
  private pendingBytes = 0;
  /** A rotation or a reopen is under way; lines wait in `pending`. */
  private busy: Promise<void> | null = null;
  private closing = false;
  /** Ends the wait before a reopen early (close() at shutdown). */
  private wake: (() => void) | null = null;

  constructor(
    private readonly path: string,
    private readonly maxBytes: number,
    private readonly keep: number,
    private readonly maxQueued: number,
    private readonly onError: (message: string, err: unknown) => void,
  ) {
    // Synchronously, once, at start-up: the error (ENOENT, EACCES, EISDIR) is the operator's.
    const fd = openSync(path, 'a');
    this.size = fstatSync(fd).size;
    this.stream = this.open(fd);
  }

  private open(fd?: number): WriteStream {
    const s =
      fd === undefined
        ? createWriteStream(this.path, { flags: 'a' })
        : createWriteStream(this.path, { fd, flags: 'a' });
    s.on('error', (err) => this.failed(s, err));
    return s;
  }

  write(line: string): boolean {
    const bytes = Buffer.byteLength(line);
    if (this.pendingBytes + (this.stream?.writableLength ?? 0) + bytes > this.maxQueued)
      return false;
    this.put(line, bytes);
    return true;
  }

  private put(line: string, bytes: number): void {
    if (this.busy || !this.stream) {
      this.pending.push(line);
      this.pendingBytes += bytes;
      return;
    }
    if (this.size > 0 && this.size + bytes > this.maxBytes) {
      this.pending.push(line);
      this.pendingBytes += bytes;
      this.busy = this.rotate(this.stream).finally(() => this.resume());
      return;
    }
    this.stream.write(line);
    this.size += bytes;
  }

  /** After a rotation or reopen: the waiting lines, in order (one may start the next rotation). */
  private resume(): void {
    this.busy = null;
    if (!this.stream) return;
    const waiting = this.pending.splice(0);
    this.pendingBytes = 0;
    for (const line of waiting) this.put(line, Buffer.byteLength(line));
  }

  private async rotate(old: WriteStream): Promise<void> {
    this.stream = null;
    await endStream(old);
    try {
      if (this.keep === 0) await rm(this.path, { force: true });
      else {
        await rm(`${this.path}.${this.keep}`, { force: true });
        for (let i = this.keep - 1; i >= 1; i--) await renameIfThere(`${this.path}.${i}`, i + 1);
        await rename(this.path, `${this.path}.1`);
      }
    } catch (err) {
      // The file stays as it is and is appended to; the next try comes after maxBytes more.
      this.onError(`access log ${this.path}: rotation failed`, err);
    }
    this.size = 0;
    this.stream = this.open();
  }

  /** The file failed (disk full, directory gone): lines wait, bounded, for a reopen. */
  private failed(s: WriteStream, err: unknown): void {
    if (s !== this.stream) return; // an old stream, already replaced
    this.onError(`access log ${this.path}: write failed; reopening in ${REOPEN_AFTER_MS} ms`, err);
    this.stream = null;
    s.destroy();
    if (this.busy) return;
    this.busy = new Promise<void>((r) => {
      this.wake = r;
      setTimeout(r, REOPEN_AFTER_MS).unref();
    }).then(async () => {
      this.wake = null;
      if (this.closing) return;
      this.size = await stat(this.path).then(
        (st) => st.size,
        () => 0,
      );
      this.stream = this.open();
    });
    void this.busy.finally(() => this.resume());
  }

  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    while (this.busy) await this.busy;
    if (this.stream) await endStream(this.stream);
    this.stream = null;
  }
}

async function renameIfThere(from: string, n: number): Promise<void> {
  try {
    await rename(from, from.replace(/\.\d+$/, `.${n}`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Ends a stream and waits until its file is closed (a rename of it may follow). */
function endStream(s: WriteStream): Promise<void> {
  if (s.closed) return Promise.resolve();
  return new Promise((resolve) => {
    s.once('close', () => resolve());
    if (!s.writableEnded) s.end();
    else if (s.destroyed) resolve();
  });
}
