// Hostile TCP peers against the real engine: a connection flood past the limit, a client that
// never reads while its upstream sends fast, upstreams that stall or stop mid-stream, clients
// that reset mid-relay or mid-drain. Nothing crashes, nothing leaks, memory stays bounded.
import type { Socket } from 'node:net';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { startKeyport } from '../helpers/keyport.js';
import { rssBytes } from '../helpers/metrics.js';
import {
  closed,
  connect,
  payload,
  readBytes,
  sendAndCollect,
  until,
  upstream,
} from '../helpers/tcp.js';

const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
t.teardown(() => k.stop());
const api = (m: string, p: string, b?: unknown) => request(k.api, m, p, b);

async function newListener(body: Record<string, unknown>): Promise<{ id: string; port: number }> {
  const r = await api('POST', '/listeners', { address: '127.0.0.1:0', ...body });
  if (r.status !== 201) throw new Error(`POST /listeners: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.id, port: portOf(r.body.address) };
}

async function quiet(listener: string): Promise<void> {
  await until(
    () => api('GET', `/connections?listener=${listener}`),
    (r) => r.body.total === 0,
    30_000,
  );
}

t.test(
  'a flood past max connections: at most the limit served at once, all served in turn, an established flow unharmed',
  async (t) => {
    const l = await newListener({ mode: 'echo', maxConnections: 20, acceptDepth: 8 });
    const steady = await connect(l.port);
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const n = (await api('GET', `/connections?listener=${l.id}&limit=1`)).body.total as number;
        peak = Math.max(peak, n);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const flood = Array.from({ length: 150 }, async (_, i) => {
      const data = Buffer.from(`client ${i}`);
      return (await sendAndCollect(l.port, data)).equals(data);
    });
    // The established flow keeps echoing while the flood waits in the backlog.
    let steadyRounds = 0;
    for (let i = 0; i < 20; i++) {
      steady.write('ping');
      if ((await readBytes(steady, 4)).toString() === 'ping') steadyRounds++;
    }
    const results = await Promise.all(flood);
    sampling = false;
    await sampler;
    t.equal(steadyRounds, 20, 'the established connection echoed throughout');
    t.equal(
      results.filter(Boolean).length,
      150,
      'every flooding client was served, byte-exact, in turn',
    );
    t.ok(peak <= 20, `never more than 20 connections at once (peak ${peak})`);
    steady.end();
    await quiet(l.id);
    t.equal(
      (await api('GET', `/ops?kind=accept`)).body.items.filter(
        (o: { listener: string }) => o.listener === l.id,
      ).length,
      8,
      'accept depth restored',
    );
  },
);

t.test(
  'onLimit reset: the surplus past max connections is reset at once, the rest served',
  async (t) => {
    const l = await newListener({ mode: 'echo', maxConnections: 3, onLimit: 'reset' });
    const held = await Promise.all(Array.from({ length: 3 }, () => connect(l.port)));
    await until(
      () => api('GET', `/connections?listener=${l.id}`),
      (r) => r.body.total === 3,
    );
    const surplus = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const s = await connect(l.port).catch(() => null);
        if (!s) return 'reset';
        const how = await closed(s);
        return how.how === 'error' ? 'reset' : how.how;
      }),
    );
    t.same(
      surplus,
      ['reset', 'reset', 'reset', 'reset', 'reset'],
      'every client past the limit was reset',
    );
    const snap = (await api('GET', `/listeners/${l.id}`)).body;
    t.match(snap, { onLimit: 'reset', connections: 3, rejectedTotal: 5 });
    const first = held[0] as Socket;
    first.write('ok');
    t.equal((await readBytes(first, 2)).toString(), 'ok', 'the held connections still work');
    for (const h of held) h.destroy();
    await quiet(l.id);
  },
);

t.test(
  'a client that never reads while its upstream sends fast: memory stays bounded',
  async (t) => {
    const TOTAL = 96 * 1024 * 1024;
    let written = 0;
    const up = await upstream((s) => {
      const chunk = Buffer.alloc(256 * 1024, 7);
      const pump = () => {
        while (written < TOTAL && s.write(chunk)) written += chunk.length;
        if (written < TOTAL)
          s.once('drain', () => {
            written += chunk.length;
            pump();
          });
      };
      pump();
    });
    t.teardown(() => up.close());
    const l = await newListener({ mode: 'forward', target: `127.0.0.1:${up.port}` });
    const before = await rssBytes(k.api);
    const s = await connect(l.port);
    s.pause(); // never read
    await new Promise((r) => setTimeout(r, 2500));
    const after = await rssBytes(k.api);
    const growthMiB = (after - before) / 1048576;
    t.ok(
      written < TOTAL,
      `the upstream was held back: it could write only ${(written / 1048576).toFixed(1)} of 96 MiB`,
    );
    t.ok(
      growthMiB < 24,
      `keyport's resident memory grew by ${growthMiB.toFixed(1)} MiB (bounded by its per-connection buffers)`,
    );
    const c = (await api('GET', `/connections?listener=${l.id}`)).body.items[0];
    t.ok(c.opsInFlight <= 2, `at most one op per direction in flight (${c.opsInFlight})`);
    s.destroy();
    await quiet(l.id);
  },
);

t.test('an upstream that accepts but never answers is closed by the idle timeout', async (t) => {
  const up = await upstream(() => {});
  t.teardown(() => up.close());
  const l = await newListener({
    mode: 'forward',
    target: `127.0.0.1:${up.port}`,
    idleTimeoutMs: 600,
  });
  const s = await connect(l.port);
  s.write('hello?');
  t.same(await closed(s), { how: 'end' }, 'the client gets EOF');
  await until(
    async () => k.output(),
    (o) => o.includes(`"listener":"${l.id}","reason":"idle-timeout"`),
  );
  t.match(k.output(), `"listener":"${l.id}","reason":"idle-timeout"`);
});

t.test(
  'a trickling (slowloris) client is cut off when it brings less than idleMinBytes per window',
  async (t) => {
    const l = await newListener({ mode: 'echo', idleTimeoutMs: 800, idleMinBytes: 64 });
    const s = await connect(l.port);
    const end = closed(s);
    const trickle = setInterval(() => s.writable && s.write('x'), 100); // ~8 B per window
    const how = await end;
    clearInterval(trickle);
    t.equal(how.how, 'end', 'the trickling client was closed (EOF)');
    await until(
      async () => k.output(),
      (o) => o.includes(`"listener":"${l.id}","reason":"too-slow`),
    );
    t.match(k.output(), new RegExp(`"listener":"${l.id}","reason":"too-slow: \\d+ B in 800 ms"`));
    // A client that keeps up is left alone.
    const fast = await connect(l.port);
    for (let i = 0; i < 12; i++) {
      fast.write('y'.repeat(100));
      await readBytes(fast, 100);
      await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(!fast.destroyed, 'a client above the floor stays connected past the window');
    fast.destroy();
  },
);

t.test('an upstream FIN mid-stream reaches the client after all its data', async (t) => {
  const body = payload(500_000);
  const up = await upstream((s) => s.end(body));
  t.teardown(() => up.close());
  const l = await newListener({ mode: 'forward', target: `127.0.0.1:${up.port}` });
  const got = await sendAndCollect(l.port, Buffer.alloc(0));
  t.ok(got.equals(body), 'every byte before the FIN, then EOF');
});

t.test('a client reset mid-relay resets the upstream; the engine keeps serving', async (t) => {
  let upstreamSaw = '';
  const up = await upstream((s) => {
    s.on('error', (e: NodeJS.ErrnoException) => (upstreamSaw = e.code ?? 'error'));
    s.on('end', () => (upstreamSaw ||= 'end'));
    s.on('close', () => (upstreamSaw ||= 'close'));
    const chunk = Buffer.alloc(64 * 1024, 1);
    const timer = setInterval(() => s.writable && s.write(chunk), 5);
    s.on('close', () => clearInterval(timer));
  });
  t.teardown(() => up.close());
  const l = await newListener({ mode: 'forward', target: `127.0.0.1:${up.port}` });
  const s = await connect(l.port);
  await readBytes(s, 100_000);
  s.resetAndDestroy();
  await until(
    async () => upstreamSaw,
    (v) => v !== '',
  );
  t.ok(
    ['ECONNRESET', 'end', 'close'].includes(upstreamSaw),
    `the upstream side was closed (${upstreamSaw})`,
  );
  await quiet(l.id);
  t.equal(
    (
      await sendAndCollect(
        portOf((await api('GET', '/listeners')).body.items[0].address),
        Buffer.from('ok'),
      )
    ).toString(),
    'ok',
  );
});

t.test('clients resetting during a drain: the drain still completes', async (t) => {
  const l = await newListener({ mode: 'echo' });
  const clients = await Promise.all(Array.from({ length: 10 }, () => connect(l.port)));
  await until(
    () => api('GET', `/connections?listener=${l.id}`),
    (r) => r.body.total === 10,
  );
  t.equal((await api('DELETE', `/listeners/${l.id}?mode=drain&deadlineMs=60000`)).status, 202);
  for (const c of clients) c.resetAndDestroy();
  const gone = await until(
    () => api('GET', `/listeners/${l.id}`),
    (r) => r.status === 404,
    30_000,
  );
  t.equal(gone.status, 404, 'the drained listener is gone once its reset clients were cleaned up');
});

t.test('afterwards: nothing in flight but the accepts, no key but the listeners', async (t) => {
  const ops = (await api('GET', '/ops')).body.items as Array<{
    op: string;
    connection: string | null;
  }>;
  t.equal(ops.filter((o) => o.connection).length, 0, 'no connection op left');
  const keys = (await api('GET', '/keys')).body.items as Array<{ owner: { kind: string } }>;
  t.equal(keys.filter((k) => k.owner.kind === 'connection').length, 0, 'no connection key left');
  t.equal((await api('GET', '/healthz')).status, 200);
});
