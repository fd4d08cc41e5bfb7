// Process faults: SIGTERM under load drains within its deadline; a hard kill followed by a
// restart binds the same port again at once; while keyport holds a port, no other process can.
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { connect, freePort, readBytes, until } from '../helpers/tcp.js';

t.test('SIGTERM under load drains within the deadline', async (t) => {
  const cfg = join(OUT_DIR, `deadline-${process.pid}.json`);
  writeFileSync(
    cfg,
    JSON.stringify({
      shutdownDeadlineMs: 3000,
      listeners: [{ address: '127.0.0.1:0', mode: 'echo' }],
    }),
  );
  const k = await startKeyport(['--config', cfg]);
  const port = portOf((await request(k.api, 'GET', '/listeners')).body.items[0].address);
  const clients = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
  let running = true;
  let rounds = 0;
  const load = clients.map(async (c) => {
    c.on('error', () => {});
    while (running) {
      c.write('load');
      try {
        await Promise.race([readBytes(c, 4), new Promise((_, rej) => c.once('close', rej))]);
        rounds++;
      } catch {
        return;
      }
    }
  });
  await until(
    async () => rounds,
    (n) => n > 200,
  );
  const started = Date.now();
  const code = await k.stop();
  const took = Date.now() - started;
  running = false;
  for (const c of clients) c.destroy();
  await Promise.all(load);
  t.ok(code === 0 || code === 3, `exit code ${code} (0 drained, 3 aborted at the deadline)`);
  t.ok(took < 3000 + 5000, `stopped in ${took} ms under load (deadline 3000 ms)`);
  t.match(k.output(), /shutting down/);
});

t.test(
  'a hard kill, then a restart binds the same port at once; nobody else can take it meanwhile',
  async (t) => {
    const port = await freePort();
    const a = await startKeyport(['--listener', `127.0.0.1:${port}=echo`]);
    const thief = await new Promise<string>((resolve) => {
      const s = net.createServer();
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve('bound')));
    });
    t.equal(thief, 'EADDRINUSE', 'another process cannot bind the port keyport holds');
    // Leave live connections behind, so the kill strands established sockets.
    const clients = await Promise.all(Array.from({ length: 5 }, () => connect(port)));
    for (const c of clients) {
      c.on('error', () => {});
      c.write('x');
      await readBytes(c, 1);
    }
    process.kill(a.enginePid(), 'SIGKILL');
    await a.exited;
    for (const c of clients) c.destroy();
    const b = await startKeyport(['--listener', `127.0.0.1:${port}=echo`]);
    t.teardown(() => b.stop());
    const s = await connect(port);
    s.write('again');
    t.equal(
      (await readBytes(s, 5)).toString(),
      'again',
      'the restarted keyport serves the same port',
    );
    s.destroy();
  },
);
