// Commands end to end on the real engine: listeners created and drained over HTTP, connections
// closed gracefully or abortively, one pending recv cancelled, and the limits a listener takes.
import { spawn } from 'node:child_process';
import net from 'node:net';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { ERR, startKeyport } from '../helpers/keyport.js';
import { closed, connect, readBytes, sendAndCollect, until, upstream } from '../helpers/tcp.js';

const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
t.teardown(() => k.stop());
const api = (m: string, p: string, b?: unknown) => request(k.api, m, p, b);
const opsOf = async (conn: string) =>
  (await api('GET', `/ops?connection=${conn}`)).body.items as Array<{ op: string; record: string }>;

async function newListener(body: Record<string, unknown>): Promise<{ id: string; port: number }> {
  const r = await api('POST', '/listeners', { address: '127.0.0.1:0', ...body });
  if (r.status !== 201) throw new Error(`POST /listeners: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.id, port: portOf(r.body.address) };
}

async function onlyConnection(listener: string): Promise<string> {
  const r = await until(
    () => api('GET', `/connections?listener=${listener}`),
    (x) => x.body.total === 1,
  );
  return r.body.items[0].id;
}

t.test('a listener created over HTTP accepts traffic', async (t) => {
  const r = await api('POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'echo',
    acceptDepth: 4,
  });
  t.equal(r.status, 201);
  t.match(r.headers.get('location'), /^\/listeners\/l\d+$/);
  t.equal(r.body.acceptDepth, 4);
  t.equal(r.body.acceptsPending, 4);
  t.equal((await sendAndCollect(portOf(r.body.address), Buffer.from('hi'))).toString(), 'hi');
});

t.test('the same port twice is a 409 that names it', async (t) => {
  const l = await newListener({ mode: 'echo' });
  const r = await api('POST', '/listeners', { address: `127.0.0.1:${l.port}`, mode: 'echo' });
  t.equal(r.status, 409);
  t.match(r.body.message, `127.0.0.1:${l.port}`);
});

t.test(
  'drain: new clients are refused, open connections finish, then the listener goes',
  async (t) => {
    const l = await newListener({ mode: 'echo' });
    const s = await connect(l.port);
    s.write('before');
    await readBytes(s, 6);
    const d = await api('DELETE', `/listeners/${l.id}?mode=drain&deadlineMs=60000`);
    t.equal(d.status, 202);
    await until(
      () => api('GET', `/listeners/${l.id}`),
      (x) => x.body.state === 'draining',
    );
    const refused = await connect(l.port).then(
      (c) => {
        c.destroy();
        return 'connected';
      },
      (e: NodeJS.ErrnoException) => e.code,
    );
    t.equal(refused, 'ECONNREFUSED', 'a new client is refused while draining');
    s.write('during');
    t.equal((await readBytes(s, 6)).toString(), 'during', 'the open connection still works');
    t.equal((await api('GET', `/listeners/${l.id}`)).body.state, 'draining');
    const sClosed = closed(s);
    s.end();
    await sClosed;
    const gone = await until(
      () => api('GET', `/listeners/${l.id}`),
      (x) => x.status === 404,
    );
    t.equal(gone.status, 404, 'the listener is gone once its last connection closed');
  },
);

t.test('drain deadline: connections still open then are aborted', async (t) => {
  const l = await newListener({ mode: 'echo' });
  const s = await connect(l.port);
  s.write('x');
  await readBytes(s, 1);
  await api('DELETE', `/listeners/${l.id}?mode=drain&deadlineMs=300`);
  const how = await closed(s);
  t.equal(how.how, 'error', `the client was reset (${how.code})`);
  t.equal(how.code, 'ECONNRESET');
});

t.test('DELETE /connections/{id}: graceful gives EOF, abort gives RST; ops drain', async (t) => {
  const l = await newListener({ mode: 'echo' });
  const a = await connect(l.port);
  const ida = await onlyConnection(l.id);
  t.equal((await opsOf(ida)).length, 1, 'one recv pending');
  const aClosed = closed(a);
  const g = await api('DELETE', `/connections/${ida}?mode=graceful`);
  t.equal(g.status, 202);
  t.same(await aClosed, { how: 'end' }, 'graceful: the client got EOF');
  await until(
    () => opsOf(ida),
    (o) => o.length === 0,
  );
  t.equal((await opsOf(ida)).length, 0, 'its ops drained from /ops');

  const b = await connect(l.port);
  const idb = await onlyConnection(l.id);
  const bClosed = closed(b);
  t.equal((await api('DELETE', `/connections/${idb}?mode=abort`)).status, 202);
  t.same(await bClosed, { how: 'error', code: 'ECONNRESET' }, 'abort: the client got RST');
  t.equal((await api('DELETE', `/connections/${idb}`)).status, 404, 'and it is gone');
});

t.test('cancelling a pending recv ends that connection cleanly', async (t) => {
  const l = await newListener({ mode: 'echo' });
  const s = await connect(l.port);
  const id = await onlyConnection(l.id);
  const [recv] = await opsOf(id);
  t.equal(recv?.op, 'recv');
  const sClosed = closed(s);
  const r = await api('DELETE', `/ops/${recv?.record}`);
  t.equal(r.status, 200);
  t.match(r.body, {
    op: 'recv',
    connection: id,
    cancelRequested: true,
    completed: true,
    status: ERR.aborted,
  });
  t.same(await sClosed, { how: 'end' }, 'the client got a clean EOF');
  t.equal(
    (await api('DELETE', `/ops/${recv?.record}`)).status,
    404,
    'the op is no longer in flight',
  );
});

t.test(
  'max connections: at the limit no accept is posted; below it accepting resumes',
  async (t) => {
    const l = await newListener({ mode: 'echo', maxConnections: 2, acceptDepth: 8 });
    t.equal(
      (await api('GET', `/listeners/${l.id}`)).body.acceptsPending,
      2,
      'accepts bounded by the limit',
    );
    const a = await connect(l.port);
    const b = await connect(l.port);
    a.write('a');
    b.write('b');
    await Promise.all([readBytes(a, 1), readBytes(b, 1)]);
    t.equal(
      (await api('GET', `/listeners/${l.id}`)).body.acceptsPending,
      0,
      'no accept posted at the limit',
    );
    const c = await connect(l.port); // completes in the kernel backlog, not accepted by keyport
    c.write('c');
    const cEcho = readBytes(c, 1);
    const early = await Promise.race([
      cEcho.then(() => 'echoed'),
      new Promise((r) => setTimeout(() => r('waiting'), 700)),
    ]);
    t.equal(early, 'waiting', 'the third client waits in the backlog');
    const aClosed = closed(a);
    a.end();
    await aClosed;
    t.equal((await cEcho).toString(), 'c', 'served once a slot freed');
    b.destroy();
    c.destroy();
  },
);

t.test('idle timeout closes a silent connection', async (t) => {
  const l = await newListener({ mode: 'echo', idleTimeoutMs: 500 });
  const s = await connect(l.port);
  const started = Date.now();
  t.same(await closed(s), { how: 'end' }, 'closed with EOF');
  t.ok(Date.now() - started >= 400, 'not before the timeout');
  await until(
    async () => k.output(),
    (o) => o.includes('"reason":"idle-timeout"'),
  );
  t.match(k.output(), /"reason":"idle-timeout"/);
});

t.test('an upstream that never accepts times out by name', async (t) => {
  // A Linux listener with a full backlog that never accepts: its SYNs go unanswered.
  const py = spawn(
    'python3',
    [
      '-c',
      'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => py.kill());
  const port = await new Promise<number>((r) =>
    py.stdout.once('data', (d) => r(Number(String(d).trim()))),
  );
  // Fill its accept queue (listen(0) holds one); later SYNs are dropped and retried.
  const fillers = [0, 1].map(() => net.connect({ port, host: '127.0.0.1' }).on('error', () => {}));
  await new Promise((r) => setTimeout(r, 300));
  const l = await newListener({
    mode: 'forward',
    target: `127.0.0.1:${port}`,
    connectTimeoutMs: 800,
  });
  const s = await connect(l.port);
  const how = await closed(s);
  t.ok(how.how === 'error' || how.how === 'end', `client closed (${how.how})`);
  // The close's own line (keyport's warning about the failure, logged first, names it too).
  await until(
    async () => k.output(),
    (o) => o.includes('upstream connect failed: CONNECT_TIMEOUT'),
  );
  t.match(k.output(), /upstream connect failed: CONNECT_TIMEOUT/);
  for (const f of fillers) f.destroy();
});

t.test('a forward listener created over HTTP relays', async (t) => {
  const up = await upstream((s) => s.pipe(s));
  t.teardown(() => up.close());
  const l = await newListener({ mode: 'forward', target: `localhost:${up.port}` });
  t.equal((await sendAndCollect(l.port, Buffer.from('through'))).toString(), 'through');
});
