// A server-sent events client for tests: GET /events over plain node:http, every message parsed
// and kept in arrival order.
import http from 'node:http';

export interface SseMessage {
  id: number | null;
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the event carries
  data: any;
}

export interface SseStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  messages: SseMessage[];
  comments: string[];
  /** Resolves once the server ended the stream (or the socket closed). */
  ended: Promise<void>;
  /** Waits until `ok(messages)` holds; rejects after `ms`. */
  until(ok: (m: SseMessage[]) => boolean, ms?: number): Promise<SseMessage[]>;
  close(): void;
}

export function openEvents(
  base: string,
  path = '/events',
  headers: Record<string, string> = {},
): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}${path}`, { headers }, (res) => {
      const messages: SseMessage[] = [];
      const comments: string[] = [];
      const waiters = new Set<() => void>();
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id: number | null = null;
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) id = Number(line.slice(4));
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data) messages.push({ id, event, data: JSON.parse(data) });
        }
        for (const w of waiters) w();
      });
      const ended = new Promise<void>((r) => {
        res.on('end', r);
        res.on('close', r);
        res.on('error', () => r());
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages,
        comments,
        ended,
        until(ok, ms = 20_000) {
          return new Promise((res2, rej) => {
            const check = (): void => {
              if (!ok(messages)) return;
              waiters.delete(check);
              clearTimeout(timer);
              res2(messages);
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              rej(
                new Error(
                  `events: condition not met in ${ms} ms; got ${messages.length} messages: ${JSON.stringify(messages.slice(-6))}`,
                ),
              );
            }, ms);
            waiters.add(check);
            check();
          });
        },
        close() {
          req.destroy();
        },
      });
    });
    req.on('error', reject);
  });
}
