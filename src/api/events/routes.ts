// GET /events: the engine's events as a server-sent event stream (text/event-stream; `curl -N`),
// one EventHub (hub.ts) for all its clients.
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef } from '../shared/schemas.js';
import { type Client, EVENTS_RETRY_AFTER_S, EventHub } from './hub.js';
import { EventStream, EventsQuery, STREAM_DESCRIPTION } from './schemas.js';

export const eventRoutes = resourcePlugin<{
  control: EngineControlLike;
  /** Concurrent streams; one more is answered 503 (each may hold up to 256 KiB). */
  maxClients?: number;
}>('events', async (app, { control, maxClients = 32 }) => {
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
                schema: EventStream,
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
});
