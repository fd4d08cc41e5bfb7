// GET /events: the engine's events as a server-sent event stream (text/event-stream; `curl -N`).
//
// One hub subscribes to the engine while at least one client listens (so an engine nobody
// watches builds no events), numbers each event once (the SSE `id:` is the same for every
// client) and serializes it once. Each client is bounded: when the bytes Node holds for it
// (reply.raw.writableLength, i.e. what the kernel's socket buffer did not take) pass
// EVENTS_CLIENT_BUFFER_BYTES, the client is dropped — its stream is destroyed, it is
// unsubscribed, and a warning is logged. A slow reader never makes keyport buffer without limit,
// and never holds the engine up: a write never waits (the kernel's socket buffer, a few MB on
// loopback, fills first; only what it refuses counts against the bound).
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger } from 'fastify';
import type { EngineEvent } from '../../engine/events.js';
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { ErrorRef } from '../schemas/error.js';

/** Largest backlog Node may hold for one client before that client is dropped. */
export const EVENTS_CLIENT_BUFFER_BYTES = 256 * 1024;
/** A comment line every so often keeps proxies and idle-timeouts from closing a quiet stream. */
export const EVENTS_HEARTBEAT_MS = 15_000;

export const EVENT_TYPES = [
  'listener-up',
  'listener-draining',
  'listener-down',
  'connection-opened',
  'connection-closed',
  'op-cancelled',
  'anomaly',
  'upstream',
  'error',
] as const;

const EventsQuery = Type.Object(
  {
    listener: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description:
          'Only events of this listener (its connections and their ops); events with no listener are left out',
        example: 'l1',
      }),
    ),
  },
  { additionalProperties: false },
);

const STREAM_DESCRIPTION = [
  'A server-sent event stream (`curl -N`). Each engine event is one message:',
  '`id: <n>`, `event: <type>`, `data: <one JSON object>` and a blank line. Types:',
  `${EVENT_TYPES.map((t) => `\`${t}\``).join(', ')}.`,
  'Every data object has `type` and `at` (ms since the epoch); connection events carry',
  '`connection`, `listener`, `key` (opened: `remote`, `acceptKey` — the key the accept was dequeued',
  "with, the listener's; closed: `reason`, `abortive`, `bytesIn`, `bytesOut`, `upstreamBytesIn`,",
  '`upstreamBytesOut`); `op-cancelled` carries `record`, `op`, `key`, `status`; `anomaly` (a completion',
  'refused because its key or record disagrees with what was issued) carries `kind` (stray,',
  'key-mismatch, duplicate), `key` as dequeued, `expectedKey`, `record`, `op`; `upstream` (a forward',
  'target ejected after connect failures, down by its checks, or up again) carries `listener`, `target`,',
  '`state` (up, ejected, down), `error`, `forMs` (the cool-down); `error` carries `op`, `error`,',
  '`key` (with a browser EventSource, note that its own connection errors are `error` events',
  'too, without data). A comment line (`: heartbeat`) comes every 15 s. Past events are not replayed.',
  `Bounded per client: one that does not read and lets ${EVENTS_CLIENT_BUFFER_BYTES / 1024} KiB`,
  'pile up is dropped (the stream ends); reconnect and read faster. At most `api.maxEventClients`',
  '(default 32) streams are open at once; one more is answered 503 with Retry-After.',
].join(' ');

interface Client {
  res: ServerResponse;
  listener: string | undefined;
}

class EventHub {
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

/** Seconds a client refused at the cap is told to wait (Retry-After). */
export const EVENTS_RETRY_AFTER_S = 5;

export const eventRoutes: FastifyPluginAsyncTypebox<{
  control: EngineControlLike;
  /** Concurrent streams; one more is answered 503 (each may hold up to 256 KiB). */
  maxClients?: number;
}> = async (app, { control, maxClients = 32 }) => {
  const hub = new EventHub(control, app.log);
  // Before the server stops accepting: open streams would otherwise keep close() waiting.
  app.addHook('preClose', async () => hub.closeAll());

  app.get(
    '/events',
    {
      schema: {
        operationId: 'streamEvents',
        summary:
          'Live engine events as server-sent events (listeners, connections, cancels, errors)',
        description: STREAM_DESCRIPTION,
        tags: ['engine'],
        querystring: EventsQuery,
        response: {
          200: {
            description: 'The event stream; it stays open until the client leaves',
            content: {
              'text/event-stream': {
                schema: Type.String({
                  example:
                    'id: 7\nevent: connection-opened\ndata: {"type":"connection-opened","at":1764083000000,"connection":"c3","listener":"l1","key":"0x0000000100000005","remote":"127.0.0.1:51234"}\n\n',
                }),
              },
            },
          },
          400: ErrorRef,
          401: ErrorRef,
          503: ErrorRef,
        },
      },
    },
    async (req, reply) => {
      if (hub.size >= maxClients) {
        return reply
          .code(503)
          .header('retry-after', String(EVENTS_RETRY_AFTER_S))
          .send(
            errorBody(
              503,
              `too many event streams: ${hub.size} of ${maxClients} (api.maxEventClients) are open; retry later`,
            ),
          );
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        // Proxies (nginx) would otherwise hold the stream back.
        'x-accel-buffering': 'no',
      });
      // No Nagle delay: each event goes out as it happens.
      res.socket?.setNoDelay(true);
      const client: Client = { res, listener: req.query.listener };
      res.on('close', () => hub.remove(client));
      hub.add(client);
      // Flushes the headers at once, so `curl -N` shows the stream is open.
      hub.write(client, ': keyport events\nretry: 2000\n\n');
    },
  );
};
