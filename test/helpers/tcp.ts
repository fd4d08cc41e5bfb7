// Real TCP clients and upstream servers (native Linux Node) for driving keyport.
import { randomBytes } from 'node:crypto';
import net from 'node:net';

/** Sends `payload`, half-closes, and collects everything until the server closes. */
export function sendAndCollect(port: number, payload: Buffer, host = '127.0.0.1'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ port, host }, () => s.end(payload));
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.setTimeout(60_000, () => s.destroy(new Error('client timed out')));
  });
}

export function payload(size: number): Buffer {
  return randomBytes(size);
}

/** A client that keeps its sending side open after the server's FIN (half-close). */
export function connect(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads exactly n bytes from a socket. */
export function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        s.off('data', onData);
        s.off('error', reject);
        resolve(Buffer.concat(chunks));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

/**
 * Resolves when the socket ends or closes; with how (end = FIN, error = RST/other). Call it
 * before causing the close: it puts the socket in flowing mode so 'end' is emitted.
 */
export function closed(s: net.Socket): Promise<{ how: 'end' | 'error' | 'close'; code?: string }> {
  if (s.destroyed) return Promise.resolve({ how: 'close' });
  s.resume();
  return new Promise((resolve) => {
    s.once('end', () => resolve({ how: 'end' }));
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ how: 'error', code: e.code ?? '' }));
    s.once('close', () => resolve({ how: 'close' }));
  });
}

export interface Upstream {
  port: number;
  server: net.Server;
  sockets: net.Socket[];
  close(): Promise<void>;
}

/** A native upstream server; `onConn` decides what it does with each connection. */
export function upstream(onConn: (s: net.Socket) => void, host = '127.0.0.1'): Promise<Upstream> {
  return new Promise((resolve) => {
    const sockets: net.Socket[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      sockets.push(s);
      s.on('error', () => {});
      onConn(s);
    });
    server.listen(0, host, () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port,
        server,
        sockets,
        close: () =>
          new Promise((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

/** A port nothing listens on (bound then released). */
export async function freePort(): Promise<number> {
  const u = await upstream(() => {});
  const { port } = u;
  await u.close();
  return port;
}

export async function until<T>(
  fn: () => Promise<T>,
  ok: (v: T) => boolean,
  ms = 15_000,
): Promise<T> {
  const end = Date.now() + ms;
  let v = await fn();
  while (!ok(v)) {
    if (Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
    v = await fn();
  }
  return v;
}
