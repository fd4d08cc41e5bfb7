// The hub behind GET /events. It subscribes to the engine while at least one client listens (so
// an engine nobody watches builds no events), numbers each event once (the SSE `id:` is the same
// for every client) and serializes it once. Each client is bounded: when the bytes Node holds for
// it (reply.raw.writableLength, i.e. what the kernel's socket buffer did not take) pass
// EVENTS_CLIENT_BUFFER_BYTES, the client is dropped — its stream is destroyed, it is
// unsubscribed, and a warning is logged. A slow reader never makes keyport buffer without limit,
// and never holds the engine up: a write never waits (the kernel's socket buffer, a few MB on
// loopback, fills first; only what it refuses counts against the bound).
import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { EngineEvent } from '../../engine/events.js';
import type { EngineControlLike } from '../control.js';

/** Largest backlog Node may hold for one client before that client is dropped. */
export const EVENTS_CLIENT_BUFFER_BYTES = 256 * 1024;
/** A comment line every so often keeps proxies and idle-timeouts from closing a quiet stream. */
export const EVENTS_HEARTBEAT_MS = 15_000;

/** Seconds a client refused at the cap is told to wait (Retry-After). */
export const EVENTS_RETRY_AFTER_S = 5;

export interface Client {
  res: ServerResponse;
  listener: string | undefined;
}

export class EventHub {
  private readonly clients = new Set<Client>();
  private unsubscribe: (() => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private seq = 0;

  constructor(
    private readonly control: EngineControlLike,
    private readonly log: FastifyBaseLogger,
  ) {}

  get size(): number {
    return this.clients.size;
  }

  add(c: Client): void {
    this.clients.add(c);
    if (!this.unsubscribe) this.unsubscribe = this.control.subscribe((e) => this.dispatch(e));
    if (!this.heartbeat) {
      this.heartbeat = setInterval(() => {
        for (const client of this.clients) this.write(client, ': heartbeat\n\n');
      }, EVENTS_HEARTBEAT_MS);
      this.heartbeat.unref();
    }
  }

  remove(c: Client): void {
    if (!this.clients.delete(c) || this.clients.size > 0) return;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Ends every stream (the server is closing: an open stream would hold it up). */
  closeAll(): void {
    for (const c of [...this.clients]) {
      this.remove(c);
      c.res.end();
    }
  }

  private dispatch(e: EngineEvent): void {
    const chunk = `id: ${++this.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
    const l = e.listener;
    for (const c of this.clients) {
      if (c.listener === undefined || c.listener === l) this.write(c, chunk);
    }
  }

  /** Writes, or drops the client when Node already holds too much for it. */
  write(c: Client, chunk: string): void {
    const res = c.res;
    if (res.destroyed || res.writableEnded) {
      this.remove(c);
      return;
    }
    if (res.writableLength + chunk.length > EVENTS_CLIENT_BUFFER_BYTES) {
      this.remove(c);
      const sock = res.socket;
      this.log.warn(
        {
          remote: sock ? `${sock.remoteAddress}:${sock.remotePort}` : null,
          bufferedBytes: res.writableLength,
          limitBytes: EVENTS_CLIENT_BUFFER_BYTES,
        },
        'events client dropped: it does not read its stream',
      );
      // Nothing more can reach it in order: close the connection outright.
      res.destroy();
      return;
    }
    res.write(chunk);
  }
}
