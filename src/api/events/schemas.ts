import { Type } from '@sinclair/typebox';
import { EVENTS_CLIENT_BUFFER_BYTES } from './hub.js';

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

export const EventsQuery = Type.Object(
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

export const STREAM_DESCRIPTION = [
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

/** One message of the stream, as an example. */
export const EventStream = Type.String({
  example:
    'id: 7\nevent: connection-opened\ndata: {"type":"connection-opened","at":1764083000000,"connection":"c3","listener":"l1","key":"0x0000000100000005","remote":"127.0.0.1:51234"}\n\n',
});
