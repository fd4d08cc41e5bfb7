// A page of up to 1 000 items is a few hundred KB of JSON. Built and written in one go it
// would hold the engine's thread for milliseconds (the walk, the JSON, and the socket write:
// loopback TCP copies and wakes the reader inside the write). Here it is walked and written a
// slice at a time, one slice per event-loop turn after the I/O poll, each charged to the API's
// share of the thread (thread-share.ts).
//
// A page goes out as the JSON EngineControl renders from cached fragments
// (engine/views/fragments.ts), not through the route's serializer: the route's response schema
// documents the shape, and the fragments are built from the same fields (engine/views/pages.ts).
import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { PageWalk } from '../../engine/views/fragments.js';
import type { ThreadShare } from '../thread-share.js';

/** How long one slice may walk the table before its items are written (ms). */
const SLICE_MS = 0.1;

/**
 * `{"offset":…,"limit":…,"items":[…],"total":…}`: `total` comes last because a filtered walk
 * knows it only at the end.
 */
export function pagedBody(
  walk: PageWalk,
  page: { offset: number; limit: number },
  share: ThreadShare,
): Readable {
  let first = true;
  let anyItem = false;
  let writing = false;
  const stream = new Readable({
    read() {
      if (writing) return;
      writing = true;
      void writeSlices();
    },
  });
  function slice(): boolean {
    let text = first ? `{"offset":${page.offset},"limit":${page.limit},"items":[` : '';
    first = false;
    const items = walk.step(performance.now() + SLICE_MS);
    if (items.length > 0) {
      text += `${anyItem ? ',' : ''}${items.join(',')}`;
      anyItem = true;
    }
    if (walk.done) text += `],"total":${walk.total}}`;
    // A push into a flowing stream writes to the socket at once: the write is in the charge.
    return text.length === 0 || stream.push(text);
  }
  async function writeSlices(): Promise<void> {
    for (;;) {
      await share.turn();
      // After the I/O poll: completions that arrived since the last slice go first.
      await new Promise((resolve) => setImmediate(resolve));
      const more = share.metered(slice);
      if (walk.done) {
        stream.push(null);
        return;
      }
      if (!more) {
        writing = false; // read() starts again once the socket has drained
        return;
      }
    }
  }
  return stream;
}

/** Answers with the page, walked and written in slices. */
export function sendPage(
  reply: FastifyReply,
  share: ThreadShare,
  walk: PageWalk,
  page: { offset: number; limit: number },
) {
  return reply.type('application/json; charset=utf-8').send(pagedBody(walk, page, share));
}
