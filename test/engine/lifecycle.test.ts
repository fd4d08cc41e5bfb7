// Engine robustness on real IOCP: traffic while the Windows Node collects garbage continuously
// (pinned memory must not move or vanish), and SIGTERM with ops in flight.
import t from 'tap';
import { startKeyport } from '../helpers/keyport.js';
import { connect, payload, sendAndCollect, until } from '../helpers/tcp.js';

t.test('at the default log level, connections are not logged one by one', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
    env: { KEYPORT_LOG_LEVEL: 'info' },
  });
  t.teardown(() => k.stop());
  const port = Number(
    ((await k.get('/listeners')).body as { items: Array<{ address: string }> }).items[0]?.address
      .split(':')
      .pop(),
  );
  const got = await Promise.all(
    Array.from({ length: 20 }, () => sendAndCollect(port, payload(100))),
  );
  t.equal(got.filter((g) => g.length === 100).length, 20, '20 connections echoed');
  await until(
    async () => (await k.get('/connections')).body as { total: number },
    (c) => c.total === 0,
  );
  t.match(k.output(), /listener started/, 'listener events are logged');
  t.notMatch(
    k.output(),
    /connection closed/,
    'no line per connection (KEYPORT_LOG_LEVEL=debug has them)',
  );
});

t.test('GC pressure: echo stays byte-exact while gc() runs every 2 ms', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
    env: {
      KEYPORT_WINDOWS_NODE_OPTIONS: '--expose-gc',
      NODE_OPTIONS: '--expose-gc',
      KEYPORT_DEBUG_GC_MS: '2',
    },
  });
  t.teardown(() => k.stop());
  t.notMatch(k.output(), /needs node --expose-gc/, 'gc() is exposed to the engine');
  const port = Number(
    ((await k.get('/listeners')).body as { items: Array<{ address: string }> }).items[0]?.address
      .split(':')
      .pop(),
  );
  for (let round = 0; round < 3; round++) {
    const jobs = Array.from({ length: 40 }, (_, i) => payload(1000 + i * 3000));
    const got = await Promise.all(jobs.map((p) => sendAndCollect(port, p)));
    t.equal(
      got.filter((g, i) => g.equals(jobs[i] as Buffer)).length,
      40,
      `round ${round}: all byte-exact`,
    );
  }
  t.equal((await k.get('/healthz')).status, 200, 'still alive');
});

t.test(
  'SIGTERM with idle clients: a drain waits for them, then resets them at the deadline',
  async (t) => {
    const k = await startKeyport(['--listener', '127.0.0.1:0=echo']); // shutdownDeadlineMs: 5000
    const port = Number(
      ((await k.get('/listeners')).body as { items: Array<{ address: string }> }).items[0]?.address
        .split(':')
        .pop(),
    );
    const clients = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
    const ends = clients.map(
      (c) =>
        new Promise<string>((resolve) => {
          c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          c.on('end', () => resolve('EOF'));
        }),
    );
    await until(
      async () => ((await k.get('/ops?kind=recv')).body as { total: number }).total,
      (n) => n === 10,
    );
    // Two of them finish their business during the drain: they are served to the end.
    const started = Date.now();
    k.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const c of clients.slice(0, 2)) c.end();
    const code = await k.exited;
    const took = Date.now() - started;
    t.equal(code, 3, 'exit code 3: the drain had to reset what was left');
    t.ok(took >= 4500 && took < 15_000, `the drain waited for the deadline (${took} ms)`);
    t.match(k.output(), /(SIGINT|SIGTERM): shutting down/, 'a graceful shutdown ran');
    const seen = await Promise.all(ends);
    t.same(seen.slice(0, 2), ['EOF', 'EOF'], 'clients that ended during the drain got a clean FIN');
    t.ok(
      seen.slice(2).every((e) => e === 'ECONNRESET'),
      `the 8 left at the deadline were reset (${seen.slice(2).join(',')})`,
    );
    for (const c of clients) c.destroy();
  },
);

t.test('a second SIGTERM during the drain resets what is left at once', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
  const port = Number(
    ((await k.get('/listeners')).body as { items: Array<{ address: string }> }).items[0]?.address
      .split(':')
      .pop(),
  );
  const c = await connect(port);
  const end = new Promise<string>((resolve) => {
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    c.on('end', () => resolve('EOF'));
  });
  await until(
    async () => ((await k.get('/ops?kind=recv')).body as { total: number }).total,
    (n) => n === 1,
  );
  const started = Date.now();
  k.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  k.proc.kill('SIGTERM');
  const code = await k.exited;
  t.equal(code, 3, 'exit code 3');
  t.ok(Date.now() - started < 4000, 'well before the 5 s deadline');
  t.equal(await end, 'ECONNRESET', 'the client was reset');
  c.destroy();
});
