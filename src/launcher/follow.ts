// Copies what is appended to a file to a stream while a process runs: how the launcher shows
// node.exe's output (which must go to a file) on the user's terminal.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export class FileFollower {
  private readonly fd: number;
  private pos = 0;
  private readonly start: number;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly buf = Buffer.allocUnsafe(64 * 1024);

  constructor(
    path: string,
    private readonly sink: NodeJS.WritableStream,
    intervalMs = 50,
  ) {
    this.fd = openSync(path, 'a+');
    // From the end as it is now: a file kept across runs (KEYPORT_LOG_FILE) must not replay
    // earlier runs' lines onto the terminal.
    this.pos = fstatSync(this.fd).size;
    this.start = this.pos;
    this.timer = setInterval(() => this.pump(), intervalMs);
  }

  private pump(): void {
    for (;;) {
      const n = readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
      if (n <= 0) return;
      this.pos += n;
      this.sink.write(Buffer.from(this.buf.subarray(0, n)));
    }
  }

  /** Bytes copied so far. */
  get copied(): number {
    return this.pos - this.start;
  }

  /** Copies what is left and stops (once: later calls do nothing). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.pump();
    closeSync(this.fd);
  }
}
