// Echo on real IOCP (node.exe under Wine): byte-exact under concurrency and size, and the
// completion model exactly as the API shows it.
import t from 'tap';
import { BACKEND, ERR, startKeyport } from '../helpers/keyport.js';
import { closed, connect, payload, readBytes, sendAndCollect, until } from '../helpers/tcp.js';

interface Op {
  op: string;
  key: string;
  record: string;
  connection: string | null;
  owner: { kind: string; id: string } | null;
}
interface Conn {
  id: string;
  key: string;
  remote: string;
  state: string;
}
interface TraceEntry {
  key: string | null;
  expectedKey: string;
  keyMismatch: boolean;
  op: string;
  status: string;
  inline: boolean;
}
interface Key {
  key: string;
  owner: { kind: string; id: string; side?: string };
}
interface ListenerV {
  id: string;
  key: string;
  address: string;
  acceptsPending: number;
  acceptDepth: number;
}

const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
t.teardown(() => k.stop());

const listener = ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
const port = Number(listener.address.split(':').pop());
const ops = async (q = '') => ((await k.get(`/ops${q}`)).body as { items: Op[] }).items;
const conns = async () =>
  (await k.get('/connections?limit=1000')).body as { items: Conn[]; total: number };
const keys = async () => ((await k.get('/keys')).body as { items: Key[] }).items;

t.test('pending AcceptEx ops carry the listener key, as many as the accept depth', async (t) => {
  t.equal(listener.acceptDepth, 32, 'default accept depth');
  const accepts = await ops('?kind=accept');
  t.equal(accepts.length, 32);
  t.ok(
    accepts.every((o) => o.key === listener.key && o.owner?.kind === 'listener'),
    'every accept is on the listener key',
  );
  t.equal(
    new Set(accepts.map((o) => o.record)).size,
    32,
    'each accept has its own OVERLAPPED record',
  );
});

t.test('an idle connection shows exactly one pending recv, under its own key', async (t) => {
  const a = await connect(port);
  const b = await connect(port);
  a.write('x');
  await readBytes(a, 1);
  b.write('y');
  await readBytes(b, 1);
  const cs = (await until(conns, (c) => c.total === 2)).items;
  t.equal(cs.length, 2);
  const [ca, cb] = cs as [Conn, Conn];
  t.not(ca.key, cb.key, 'each connection has a distinct key');
  t.not(ca.key, listener.key, 'and not the listener key');
  for (const c of cs) {
    const mine = await ops(`?connection=${c.id}`);
    t.equal(mine.length, 1, `${c.id} has one op in flight`);
    t.equal(mine[0]?.op, 'recv');
    t.equal(mine[0]?.key, c.key, 'the pending recv carries the connection key');
  }
  const owners = (await keys()).filter((x) => x.owner.kind === 'connection');
  t.same(
    owners.map((x) => x.key).sort(),
    [ca.key, cb.key].sort(),
    '/keys lists both connection keys',
  );
  // The trace shows completions on the connection key with named status.
  const detail = (await k.get(`/connections/${ca.id}`)).body as { trace: TraceEntry[] };
  const [accept, ...rest] = detail.trace;
  t.equal(accept?.op, 'accept', 'the trace starts with the accept');
  t.ok(rest.length >= 2, 'then the recv and the send');
  t.ok(
    rest.every((e) => e.expectedKey === ca.key && !e.keyMismatch && e.status === 'SUCCESS'),
    'every completion on the connection key, each a success',
  );
  a.end();
  b.end();
  await Promise.all([closed(a), closed(b)]);
});

t.test(
  'the trace shows keys AS DEQUEUED: the accept on the listener key, then its own',
  async (t) => {
    // Connect while an accept is pending (it is: the listener keeps 32 posted), then write only
    // once the connection's first read is pending in the kernel, so both come back as packets.
    const s = await connect(port);
    const c = (
      await until(conns, (x) => x.items.some((i) => i.remote?.endsWith(`:${s.localPort}`)))
    ).items.find((i) => i.remote?.endsWith(`:${s.localPort}`)) as Conn;
    await until(
      () => ops(`?connection=${c.id}`),
      (o) => o.length === 1 && o[0]?.op === 'recv',
    );
    await new Promise((r) => setTimeout(r, 50));
    s.write('k');
    await readBytes(s, 1);
    const detail = (await k.get(`/connections/${c.id}`)).body as { trace: TraceEntry[] };
    const [accept, first] = detail.trace;
    t.equal(accept?.op, 'accept');
    t.equal(accept?.inline, false, 'the accept completed through the port (a packet)');
    t.equal(accept?.key, listener.key, "the accept's packet carried the LISTENER key");
    t.equal(accept?.expectedKey, listener.key);
    t.equal(first?.op, 'recv');
    t.equal(first?.inline, false, "the connection's first read completed through the port");
    t.equal(first?.key, c.key, "and its packet carried the CONNECTION's own key");
    t.not(first?.key, listener.key);
    t.equal(first?.keyMismatch, false);
    const events = (await k.get('/readyz')).body as { anomalies: Record<string, number> };
    t.same(
      events.anomalies,
      { stray: 0, keyMismatch: 0, duplicate: 0, quarantinedRecords: 0 },
      'no completion was refused',
    );
    s.end();
    await closed(s);
  },
);

t.test(
  'an idle connection holds no buffer: a recv the kernel gives a buffer (uring), or a zero-byte wait (IOCP)',
  async (t) => {
    const s = await connect(port);
    s.write('warm');
    await readBytes(s, 4);
    const c = (await until(conns, (x) => x.total === 1)).items[0] as Conn;
    const opsOf = async () =>
      (
        (await k.get(`/ops?connection=${c.id}`)).body as {
          items: Array<{ op: string; bufferSize: number | null; bufferSelect: boolean }>;
        }
      ).items;
    if (BACKEND === 'uring') {
      // The provided-buffer ring: a pending recv never holds a buffer, flowing or idle.
      t.match(
        await opsOf(),
        [{ op: 'recv', bufferSize: null, bufferSelect: true }],
        'the pending recv holds no buffer: the kernel picks one when data arrives',
      );
      const busy = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const x = await connect(port);
          const data = payload(100_000 + i);
          x.write(data);
          const back = await readBytes(x, data.length);
          x.end();
          await closed(x);
          return back.equals(data);
        }),
      );
      t.same(
        busy,
        busy.map(() => true),
        '20 connections of 100 kB each echo byte-exact',
      );
      t.match(
        await opsOf(),
        [{ op: 'recv', bufferSize: null, bufferSelect: true }],
        'the idle connection still holds none',
      );
    } else {
      // After a short read the socket is drained: the next read is a zero-byte wait at once
      // (a direction reads straight into a buffer only after one that filled it: bulk).
      const waiting = await until(opsOf, (o) => o.length === 1 && o[0]?.bufferSize === null, 5000);
      t.match(
        waiting,
        [{ op: 'recv', bufferSize: null, bufferSelect: false }],
        'one pending recv, no buffer',
      );
    }
    s.write('after the park');
    t.equal(
      (await readBytes(s, 14)).toString(),
      'after the park',
      'data after idling still echoes',
    );
    const m = await (await fetch(`${k.api}/metrics`)).text();
    t.notMatch(
      m,
      /keyport_completion_errors_total\{op="recv",error="(ERROR_OPERATION_ABORTED|ECANCELED|ENOBUFS)"\}/,
      'parking (or a busy provided ring) is not counted as an error',
    );
    s.end();
    await closed(s);
  },
);

t.test('200 concurrent connections echo byte-exact, 1 B to 1 MiB', async (t) => {
  const sizes = [1, 7, 100, 1460, 4096, 16384, 16385, 65536, 100_000, 1 << 20];
  const jobs = Array.from({ length: 200 }, (_, i) => payload(sizes[i % sizes.length] as number));
  const results = await Promise.all(jobs.map((p) => sendAndCollect(port, p)));
  let exact = 0;
  results.forEach((r, i) => {
    if (r.equals(jobs[i] as Buffer)) exact++;
  });
  t.equal(exact, 200, 'every echo came back byte-exact');
});

t.test('after clients leave, only the listener accepts remain', async (t) => {
  const left = await until(ops, (o) => o.every((x) => x.op === 'accept' || x.op === 'nop'));
  const conn = left.filter((o) => o.connection !== null);
  t.equal(conn.length, 0, 'no connection op remains');
  t.equal(left.filter((o) => o.op === 'accept').length, 32, 'the accept depth is restored');
  const ks = await keys();
  t.equal(ks.filter((x) => x.owner.kind === 'connection').length, 0, 'no connection key remains');
  t.equal((await conns()).total, 0);
});

t.test('an abortive client close (RST) leaves the engine serving, the error named', async (t) => {
  const s = await connect(port);
  s.write('abc');
  await readBytes(s, 3);
  // Let keyport's next recv be pending when the RST lands. (Under Wine, a RST racing a WSARecv
  // being posted can read as EOF; with the recv pending it is always an error.)
  await until(
    () => ops(`?kind=recv`),
    (o) => o.some((x) => x.connection !== null),
  );
  await new Promise((r) => setTimeout(r, 50));
  s.resetAndDestroy();
  await until(conns, (c) => c.total === 0);
  t.equal((await conns()).total, 0, 'the connection is gone');
  const again = await sendAndCollect(port, Buffer.from('still here'));
  t.equal(again.toString(), 'still here', 'the engine still serves');
  const named = new RegExp(`"reason":"client recv failed: (${ERR.reset.source})"`);
  await until(
    async () => k.output(),
    (o) => named.test(o),
  );
  t.match(k.output(), named, 'the reset is logged by name');
});

t.test('a client gone before its accept is handled does not break the accept chain', async (t) => {
  for (let i = 0; i < 20; i++) {
    const s = await connect(port);
    s.resetAndDestroy();
  }
  // An accept that fails for a client already gone is re-posted after a short backoff (10 ms
  // and up while failures continue): the depth comes back, it does not stay short.
  await new Promise((r) => setTimeout(r, 300));
  const settled = await until(
    ops,
    (o) => o.filter((x) => x.op === 'accept').length === 32 && !o.some((x) => x.connection),
  );
  t.equal(settled.filter((x) => x.op === 'accept').length, 32, 'accept depth intact');
  t.equal((await sendAndCollect(port, Buffer.from('ok'))).toString(), 'ok');
});
