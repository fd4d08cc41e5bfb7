// Engine robustness on real IOCP: traffic while the Windows Node collects garbage continuously
// (pinned memory must not move or vanish), and SIGTERM with ops in flight.
import t from 'tap';
import { startKeyport } from './helpers/keyport.js';
import { connect, payload, sendAndCollect, until } from './helpers/tcp.js';

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

t.test('SIGTERM with ops in flight exits promptly and cleanly', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
  const port = Number(
    ((await k.get('/listeners')).body as { items: Array<{ address: string }> }).items[0]?.address
      .split(':')
      .pop(),
  );
  const clients = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
  for (const c of clients) c.on('error', () => {});
  await until(
    async () => ((await k.get('/ops?kind=recv')).body as { total: number }).total,
    (n) => n === 10,
  );
  const started = Date.now();
  const code = await k.stop();
  const took = Date.now() - started;
  t.equal(code, 0, 'exit code 0: drained before the deadline');
  t.ok(took < 15_000, `exited in ${took} ms`);
  t.match(k.output(), /(SIGINT|SIGTERM): shutting down/, 'a graceful shutdown ran');
  for (const c of clients) c.destroy();
});
