// Forward mode on real IOCP: ConnectEx to native upstreams (IPv4, IPv6, a name resolved at
// connect time), byte-exact relay both ways, half-close carried in both directions, and
// upstream faults that end the right connection with the error named; a refused upstream counted
// by name and logged once.
import t from 'tap';
import { ERR, logRecords, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import {
  closed,
  connect,
  freePort,
  payload,
  readBytes,
  sendAndCollect,
  until,
  upstream,
} from '../helpers/tcp.js';

// Upstream A: collects until the client's FIN arrives, then answers with a digest-sized reply.
const received: Buffer[] = [];
const upA = await upstream((s) => {
  const chunks: Buffer[] = [];
  s.on('data', (d) => chunks.push(d));
  s.on('end', () => {
    const all = Buffer.concat(chunks);
    received.push(all);
    s.end(Buffer.concat([Buffer.from(`got ${all.length}:`), all.subarray(0, 1000)]));
  });
});
// Upstream B: speaks first, then half-closes its side while still reading.
const upB = await upstream((s) => {
  const chunks: Buffer[] = [];
  s.on('data', (d) => chunks.push(d));
  s.on('end', () => received.push(Buffer.concat(chunks)));
  s.end('hello from upstream, and FIN');
});
// Upstream R: resets the connection as soon as data arrives.
const upR = await upstream((s) => s.once('data', () => s.resetAndDestroy()));
const up6 = await upstream((s) => s.pipe(s), '::1');
const refused = await freePort();

const k = await startKeyport([
  '--listener',
  `127.0.0.1:0=forward:127.0.0.1:${upA.port}`,
  '--listener',
  `127.0.0.1:0=forward:127.0.0.1:${upB.port}`,
  '--listener',
  `127.0.0.1:0=forward:127.0.0.1:${refused}`,
  '--listener',
  `127.0.0.1:0=forward:127.0.0.1:${upR.port}`,
  '--listener',
  `[::1]:0=forward:[::1]:${up6.port}`,
  '--listener',
  `127.0.0.1:0=forward:localhost:${upA.port}`,
]);
t.teardown(async () => {
  await k.stop();
  await Promise.all([upA, upB, upR, up6].map((u) => u.close()));
});

const listeners = (
  (await k.get('/listeners')).body as {
    items: Array<{ id: string; address: string; target: string }>;
  }
).items;
const portOf = (i: number) => Number(listeners[i]?.address.split(':').pop());
const conns = async () =>
  (await k.get('/connections')).body as {
    total: number;
    items: Array<{ key: string; upstreamKey: string }>;
  };

t.test('client → upstream: byte-exact, and the client FIN reaches the upstream', async (t) => {
  const data = payload(300_000);
  const reply = await sendAndCollect(portOf(0), data);
  t.equal(received.at(-1)?.length, data.length, 'upstream got every byte, then EOF');
  t.ok(received.at(-1)?.equals(data), 'byte-exact');
  t.equal(
    reply.subarray(0, 11).toString(),
    `got ${data.length}:`,
    'the reply came back after the half-close',
  );
  t.ok(reply.subarray(11).equals(data.subarray(0, 1000)));
});

t.test('upstream → client: its FIN reaches the client, which can still send', async (t) => {
  const s = await connect(portOf(1));
  const hello = await readBytes(s, 28);
  t.equal(hello.toString(), 'hello from upstream, and FIN');
  await new Promise((r) => s.once('end', r));
  t.pass('the client saw the upstream half-close');
  const before = received.length;
  s.end(Buffer.from('late words'));
  await until(
    async () => received.length,
    (n) => n > before,
  );
  t.equal(
    received.at(-1)?.toString(),
    'late words',
    'the client could still send after the upstream FIN',
  );
});

t.test('a connection has two keys: client and upstream', async (t) => {
  const s = await connect(portOf(4), '::1');
  s.write('six');
  t.equal((await readBytes(s, 3)).toString(), 'six', 'IPv6 relay works');
  const c = (await until(conns, (x) => x.total === 1)).items[0];
  t.ok(c?.key && c.upstreamKey && c.key !== c.upstreamKey, 'distinct client and upstream keys');
  s.end();
  await closed(s);
});

t.test('a target name is resolved at connect time', async (t) => {
  const data = Buffer.from('via localhost');
  const reply = await sendAndCollect(portOf(5), data);
  t.match(reply.toString(), /^got 13:via localhost/);
});

// The summaries that follow (one per 10 s while failures go on) are checked under churn, in
// test/engine/churn.test.ts, where they cost no waiting.
const REFUSALS = 4;
const warnings = (msg: string) =>
  logRecords(k, msg).filter((r) => r.msg === msg && r.listener === listeners[2]?.id);

t.test('a refused upstream closes the client, is counted by name and logged once', async (t) => {
  for (let i = 0; i < REFUSALS; i++) {
    // keyport accepts, fails to reach the upstream and resets the client, possibly before the
    // client's own connect() has reported success.
    const how = await connect(portOf(2)).then(
      (s) => closed(s),
      (e: NodeJS.ErrnoException) => ({ how: 'error', code: e.code }),
    );
    t.ok(
      ['end', 'error', 'close'].includes(how.how),
      `client closed (${how.how} ${how.code ?? ''})`,
    );
  }
  const failures = () =>
    metric(k.api, 'keyport_upstream_connect_failures_total', {
      listener: listeners[2]?.id as string,
      error: ERR.refused,
    }).catch(() => 0);
  t.equal(await until(failures, (n) => n >= REFUSALS), REFUSALS, `counted as ${ERR.refused}`);
  const why = await until(
    async () => k.output(),
    (o) => o.includes(`upstream connect failed: ${ERR.refused}`),
  );
  t.match(why, `upstream connect failed: ${ERR.refused}`, 'each close says why');
  const lines = await until(
    async () => warnings('upstream connect failed'),
    (l) => l.length > 0,
  );
  t.same(
    lines.map(({ level, listener, target, error }) => ({ level, listener, target, error })),
    [{ level: 40, listener: listeners[2]?.id, target: `127.0.0.1:${refused}`, error: ERR.refused }],
    'one warning names the listener, the target and the error; the repeats are not logged',
  );
});

t.test('an upstream reset mid-stream resets the client; the engine keeps serving', async (t) => {
  const s = await connect(portOf(3));
  s.write('trigger');
  const how = await closed(s);
  t.ok(
    how.how === 'error' || how.how === 'close' || how.how === 'end',
    `client closed (${how.how})`,
  );
  await until(
    async () => k.output(),
    (o) => /"reason":"upstream recv failed: [A-Z_]+"/.test(o),
  );
  t.match(k.output(), /"reason":"upstream recv failed: [A-Z_]+"/, 'the upstream failure is named');
  t.match((await sendAndCollect(portOf(0), Buffer.from('again'))).toString(), /^got 5:again/);
});
