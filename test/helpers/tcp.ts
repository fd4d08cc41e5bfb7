// Real TCP clients and upstream servers (native Linux Node) for driving keyport.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
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
/**
 * A port nothing listens at, below this host's ephemeral range. Never from inside that range: a
 * socket that connects to a closed local port may be handed that very port as its own, and TCP's
 * simultaneous open then connects it to itself instead of refusing (it happened once in CI, in
 * about 350 refused connects under Wine, whose ConnectEx binds port 0 first).
 */
export async function freePort(): Promise<number> {
  const first = ephemeralRangeStart();
  for (let i = 0; i < 64; i++) {
    const port = 10_000 + Math.floor(Math.random() * (first - 10_000));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found between 10000 and ${first - 1}`);
}

/** The first port of the ephemeral range (Linux's /proc; 32768 where it cannot be read). */
function ephemeralRangeStart(): number {
  try {
    const first = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
    );
    return Number.isInteger(first) && first > 12_000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
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
