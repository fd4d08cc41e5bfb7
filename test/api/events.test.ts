// GET /events end to end on the real engine: a subscriber sees the open and close of every
// connection it makes, in order, with the keys /connections shows; the listener filter; the
// input checks; and a subscriber that stops reading is dropped while the engine, and the
// subscribers that do read, carry on.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { ROOT, startKeyport } from '../helpers/keyport.js';
import { openEvents, type SseMessage } from '../helpers/sse.js';
import { connect, readBytes, sendAndCollect, until } from '../helpers/tcp.js';

// Every read needs the token here (protect: all), so the stream's own protection is covered too.
const TOKEN = 'events-test-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const dir = join(ROOT, 'test-output', `events-${process.pid}`);
mkdirSync(dir, { recursive: true });
const cfg = join(dir, 'keyport.json');
writeFileSync(cfg, JSON.stringify({ api: { protect: 'all' } }));
const k = await startKeyport(['--config', cfg, '--listener', '127.0.0.1:0=echo'], {
  env: { KEYPORT_TOKEN: TOKEN },
});
t.teardown(() => k.stop());
const api = (m: string, p: string) => request(k.api, m, p, undefined, auth);
const l1 = (await api('GET', '/listeners')).body.items[0] as { id: string; address: string };
const port = portOf(l1.address);

/** The connection events of the connection whose client port is `localPort`. */
function eventsOf(msgs: SseMessage[], localPort: number): SseMessage[] {
  const opened = msgs.find(
    (m) => m.event === 'connection-opened' && m.data.remote === `127.0.0.1:${localPort}`,
  );
  if (!opened) return [];
  return msgs.filter((m) => m.data.connection === opened.data.connection);
}

t.test('the stream needs the token like every read (protect: all)', async (t) => {
  const r = await request(k.api, 'GET', '/events');
  t.equal(r.status, 401);
  t.match(r.body, { statusCode: 401, message: /Bearer/ });
  const s = await openEvents(k.api, '/events', auth);
  t.equal(s.status, 200);
  t.match(s.headers['content-type'], /^text\/event-stream/);
  t.equal(s.headers['cache-control'], 'no-cache, no-transform');
  await until(
    async () => s.comments.length,
    (n) => n > 0,
  );
  t.ok(s.comments.includes('keyport events'), 'an opening comment flushes the headers at once');
  s.close();
});

t.test('bad query strings are 400s naming the field, and never open a stream', async (t) => {
  for (const [q, msg] of [
    ['?foo=1', /querystring\/foo: unknown field/],
    ['?listener=', /querystring\/listener/],
    [`?listener=${'x'.repeat(65)}`, /querystring\/listener/],
  ] as const) {
    const r = await api('GET', `/events${q}`);
    t.equal(r.status, 400, q);
    t.match(r.body, { statusCode: 400, error: 'Bad Request', message: msg }, q);
  }
});

t.test('a subscriber gets the open and close of each connection it makes, in order', async (t) => {
  const s = await openEvents(k.api, '/events', auth);
  t.teardown(() => s.close());
  const ports: number[] = [];
  for (let i = 0; i < 5; i++) {
    const c = await connect(port);
    ports.push(c.localPort as number);
    const payload = Buffer.from(`hello ${i}`);
    c.write(payload);
    await readBytes(c, payload.length);
    const closedBy = new Promise((r) => c.once('close', r));
    c.end();
    c.resume();
    await closedBy;
  }
  const last = ports[ports.length - 1] as number;
  await s.until((m) => eventsOf(m, last).some((e) => e.event === 'connection-closed'));

  const mine = ports.flatMap((p) => eventsOf(s.messages, p));
  t.same(
    mine.map((m) => m.event),
    Array(5).fill(['connection-opened', 'connection-closed']).flat(),
    'opened then closed, connection after connection',
  );
  const ids = mine.map((m) => m.id as number);
  t.same(
    ids,
    [...ids].sort((a, b) => a - b),
    'ids grow',
  );
  t.equal(new Set(ids).size, ids.length, 'ids are unique');
  for (const m of s.messages) t.equal(m.event, m.data.type, 'event: is the type of its data');
  for (let i = 0; i < 5; i++) {
    const [opened, closed] = eventsOf(s.messages, ports[i] as number);
    t.match(opened?.data, {
      type: 'connection-opened',
      at: Number,
      connection: /^c\d+$/,
      listener: l1.id,
      key: /^0x[0-9a-f]{16}$/,
      remote: `127.0.0.1:${ports[i]}`,
    });
    t.match(closed?.data, {
      type: 'connection-closed',
      connection: opened?.data.connection,
      listener: l1.id,
      reason: String,
      abortive: false,
      bytesIn: `hello ${i}`.length,
      bytesOut: `hello ${i}`.length,
    });
    t.ok(closed?.data.at >= opened?.data.at, 'closed after opened');
  }
});

t.test('the keys in the events are the ones /connections shows', async (t) => {
  const s = await openEvents(k.api, '/events', auth);
  t.teardown(() => s.close());
  const c = await connect(port);
  const opened = (await s.until((m) => eventsOf(m, c.localPort as number).length > 0)).find(
    (m) => m.data.remote === `127.0.0.1:${c.localPort}`,
  );
  const conn = (await api('GET', `/connections/${opened?.data.connection}`)).body;
  t.equal(conn.key, opened?.data.key, 'the same completion key');
  t.equal(conn.remote, opened?.data.remote);
  // Closed from the API: the reason says so.
  t.equal((await api('DELETE', `/connections/${conn.id}?mode=abort`)).status, 202);
  const closed = (
    await s.until((m) =>
      m.some((e) => e.event === 'connection-closed' && e.data.connection === conn.id),
    )
  ).find((m) => m.event === 'connection-closed' && m.data.connection === conn.id);
  t.match(closed?.data, { reason: /API/, abortive: true });
  c.destroy();
});

t.test(
  '?listener= keeps only that listener’s events, listener up/draining/down included',
  async (t) => {
    // Subscribe first, then create the listener: its id is the next one.
    const before = (await api('GET', '/listeners')).body.items as Array<{ id: string }>;
    const all = await openEvents(k.api, '/events', auth);
    t.teardown(() => all.close());
    const created = await request(
      k.api,
      'POST',
      '/listeners',
      { address: '127.0.0.1:0', mode: 'echo' },
      auth,
    );
    t.equal(created.status, 201);
    const l2 = created.body as { id: string; address: string; key: string };
    t.notOk(
      before.some((l) => l.id === l2.id),
      'a new listener',
    );
    const only = await openEvents(k.api, `/events?listener=${l2.id}`, auth);
    t.teardown(() => only.close());
    await all.until((m) => m.some((e) => e.event === 'listener-up' && e.data.listener === l2.id));
    t.match(
      all.messages.find((e) => e.event === 'listener-up' && e.data.listener === l2.id)?.data,
      {
        address: l2.address,
        mode: 'echo',
        key: l2.key,
      },
    );

    await sendAndCollect(port, Buffer.from('to l1'));
    await sendAndCollect(portOf(l2.address), Buffer.from('to l2'));
    t.equal((await api('DELETE', `/listeners/${l2.id}?mode=drain&deadlineMs=1000`)).status, 202);
    await only.until((m) => m.some((e) => e.event === 'listener-down'));
    await all.until((m) => m.some((e) => e.event === 'listener-down' && e.data.listener === l2.id));
    t.match(
      only.messages.map((m) => m.event).join(' '),
      /^connection-opened connection-closed (listener-draining )?listener-down$/,
      'the filtered stream: l2 only',
    );
    for (const m of only.messages) t.equal(m.data.listener, l2.id);
    t.ok(
      all.messages.some((m) => m.event === 'connection-opened' && m.data.listener === l1.id),
      'the unfiltered stream has l1 too',
    );
  },
);

t.test('a subscriber that stops reading is dropped; the engine and readers carry on', async (t) => {
  // One subscriber that reads everything, and one that sends its request and never reads.
  const reader = await openEvents(k.api, '/events', auth);
  t.teardown(() => reader.close());
  const stalled = net.connect(portOf(k.api), '127.0.0.1');
  t.teardown(() => stalled.destroy());
  stalled.write(
    `GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`,
  );
  stalled.pause();
  let stalledGone = false;
  stalled.on('close', () => {
    stalledGone = true;
  });
  stalled.on('error', () => {});
  // It never reads (paused before it connected): keyport's writes pile up in the kernel's
  // socket buffers, then in keyport's own, for this subscriber.
  await new Promise((r) => stalled.once('connect', r));

  // A lot of events (two per connection). The kernel's socket buffers on loopback take a few
  // MB before keyport's own per-client bound (256 KiB) is reached, hence the churn.
  const churn = (): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end());
      s.on('data', () => {});
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
  // Only the output's new part is searched: every connection logs a line.
  let seen = k.output().length;
  let isDropped = false;
  const dropped = (): boolean => {
    const out = k.output();
    if (!isDropped) isDropped = out.slice(Math.max(0, seen - 64)).includes('events client dropped');
    seen = out.length;
    return isDropped;
  };
  const start = Date.now();
  let made = 0;
  while (!dropped() && made < 60_000 && Date.now() - start < 120_000) {
    await Promise.all(Array.from({ length: 40 }, churn));
    made += 40;
  }

  t.ok(dropped(), `keyport dropped the stalled subscriber (after ${made} connections)`);
  t.match(k.output(), /"limitBytes":262144/, 'and logged its bound');

  // The engine carries on: echo works, and nothing is left over from the churn.
  t.equal((await sendAndCollect(port, Buffer.from('still echoing'))).toString(), 'still echoing');
  const left = await until(
    () => api('GET', `/connections?listener=${l1.id}`),
    (r) => r.body.total === 0,
  );
  t.equal(left.body.total, 0, 'every churned connection closed');

  // The reading subscriber got every event, through to the last one.
  const opened = (m: SseMessage[]) => m.filter((e) => e.event === 'connection-opened').length;
  const closed = (m: SseMessage[]) => m.filter((e) => e.event === 'connection-closed').length;
  await reader.until((m) => opened(m) === made + 1 && closed(m) === made + 1, 30_000);
  t.equal(opened(reader.messages), made + 1, 'the reader saw every connection open');
  t.equal(closed(reader.messages), made + 1, 'and close');
  const ids = reader.messages.map((m) => m.id as number);
  t.ok(
    ids.every((id, i) => i === 0 || id > (ids[i - 1] as number)),
    'in order, none lost',
  );

  // The stalled one: what it can still read is bounded, then its stream ends.
  let got = '';
  stalled.setEncoding('latin1');
  stalled.on('data', (d: string) => {
    got += d;
  });
  stalled.resume();
  await until(
    async () => stalledGone,
    (g) => g,
    30_000,
  );

  t.ok(stalledGone, 'the stalled subscriber’s connection was closed');
  const itSaw = got.split('event: connection-opened').length - 1;
  t.ok(itSaw < made, `it got only what was in flight then (${itSaw} of ${made} connections)`);

  // New subscribers are welcome and get new events.

  const fresh = await openEvents(k.api, '/events', auth);

  t.teardown(() => fresh.close());
  await sendAndCollect(port, Buffer.from('after'));
  await fresh.until((m) => m.some((e) => e.event === 'connection-closed'));
  await reader.until((m) => opened(m) === made + 2);

  t.pass('a new subscriber and the old reader both see the next connection');
});
