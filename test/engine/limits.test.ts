// Who may connect, and how many (issue 16): allow/deny CIDRs and per-source caps on a listener,
// the engine-wide caps on listeners and connections, and the API server's own connection cap.
// Floods come from loopback aliases (127.0.0.2, 127.0.0.3: Linux routes all of 127/8 to lo with
// no set-up, and keyport under Wine sees the same kernel's addresses). Asserted from the peers'
// side: a refused client gets a reset and not one byte (its own bytes are never echoed), its
// upstream never sees a connect (counted at a test upstream), and the metric counts it by reason.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { ROOT, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { closed, readBytes, until, upstream } from '../helpers/tcp.js';

const dir = join(ROOT, 'test-output', `limits-${process.pid}`);
mkdirSync(dir, { recursive: true });
function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(content, null, 2));
  return p;
}

// A test upstream that echoes and counts the connects it saw.
let upstreamConnects = 0;
const up = await upstream((s) => {
  upstreamConnects++;
  s.pipe(s);
});
t.teardown(() => up.close());

// One engine for the per-listener rules (its config file sets one listener with them), one with
// small engine-wide caps (two listeners, four connections, eight API connections).
const [k, kc] = await Promise.all([
  startKeyport([
    '--config',
    file('rules.json', {
      listeners: [
        {
          address: '127.0.0.1:0',
          mode: 'forward',
          target: `127.0.0.1:${up.port}`,
          allow: ['127.0.0.0/8', '::1'],
          deny: ['127.0.0.3/32'],
        },
      ],
    }),
  ]),
  startKeyport([
    '--config',
    file('caps.json', {
      engine: { maxListeners: 2, maxConnections: 4 },
      api: { maxConnections: 8 },
      listeners: [{ address: '127.0.0.1:0', mode: 'echo' }],
    }),
  ]),
]);
t.teardown(() => Promise.all([k.stop(), kc.stop()]));

/**
 * One client from `from` that sends a byte at once: 'served' when it is echoed back (through the
 * upstream, for a forward listener), 'reset' when the connection is reset (or refused) before a
 * byte came back, else what happened.
 */
async function attempt(port: number, from: string, host = '127.0.0.1'): Promise<string> {
  const s = net.connect({ port, host, localAddress: from });
  s.on('error', () => {});
  const connected = await new Promise<boolean>((res) => {
    s.once('connect', () => res(true));
    s.once('error', () => res(false));
  });
  if (!connected) return 'reset';
  // Whichever comes first: the echo of our byte (served), or the end of the connection.
  const end = closed(s);
  const echoed = new Promise<'served'>((res) => s.once('data', () => res('served')));
  s.write('x');
  const r = await Promise.race([
    echoed,
    end,
    new Promise<null>((res) => setTimeout(() => res(null), 10_000)),
  ]);
  s.destroy();
  if (r === null) return 'open, no echo after 10 s';
  if (r === 'served') return r;
  return r.how === 'error' && /ECONNRESET|EPIPE/.test(r.code ?? '') ? 'reset' : r.how;
}

/** Holds a served connection open (its echo proven); resolves with the socket. */
async function hold(port: number, from: string): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
  await new Promise<void>((res, rej) => {
    s.once('connect', () => res());
    s.once('error', rej);
  });
  s.write('h');
  await readBytes(s, 1);
  return s;
}

/** Waits until keyport has seen connections close: `n` left open on the listener. */
async function openOn(api: string, listener: string, n: number): Promise<void> {
  await until(
    () => request(api, 'GET', `/connections?listener=${listener}&limit=1`),
    (r) => r.body.total === n,
  );
}

const counts = (n: number, v: string) => Array.from({ length: n }, () => v);

t.test('allow/deny: a flood from a denied source is reset before any byte', async (t) => {
  const l = (await request(k.api, 'GET', '/listeners')).body.items[0];
  const port = portOf(l.address);
  t.match(l, { allow: ['127.0.0.0/8', '::1'], deny: ['127.0.0.3/32'] }, 'GET shows the rules');
  upstreamConnects = 0;
  const denied = await Promise.all(Array.from({ length: 30 }, () => attempt(port, '127.0.0.3')));
  t.same(denied, counts(30, 'reset'), 'every client from 127.0.0.3 (denied) was reset, 0 bytes');
  const allowed = await Promise.all(Array.from({ length: 5 }, () => attempt(port, '127.0.0.2')));
  t.same(allowed, counts(5, 'served'), '127.0.0.2 (allowed) is served, through the upstream');
  t.equal(upstreamConnects, 5, 'the upstream saw a connect for the served clients only');
  t.equal(
    await metric(k.api, 'keyport_connections_rejected_total', { listener: l.id, reason: 'denied' }),
    30,
  );
  t.equal(
    (await request(k.api, 'GET', `/listeners/${l.id}`)).body.rejected.denied,
    30,
    'GET /listeners/{id} counts them too',
  );

  // From the API: only 127.0.0.2 is allowed; the IPv6 rule on an IPv6 listener.
  const r = await request(k.api, 'POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'forward',
    target: `127.0.0.1:${up.port}`,
    allow: ['127.0.0.2'],
  });
  t.equal(r.status, 201, JSON.stringify(r.body));
  const p2 = portOf(r.body.address);
  upstreamConnects = 0;
  t.same(
    await Promise.all([
      attempt(p2, '127.0.0.1'),
      attempt(p2, '127.0.0.3'),
      attempt(p2, '127.0.0.2'),
    ]),
    ['reset', 'reset', 'served'],
    'an allow list refuses every address outside it',
  );
  t.equal(upstreamConnects, 1, 'no upstream connect for the refused ones');
  const r6 = await request(k.api, 'POST', '/listeners', {
    address: '[::1]:0',
    mode: 'echo',
    deny: ['::1/128'],
  });
  t.equal(r6.status, 201, JSON.stringify(r6.body));
  t.equal(await attempt(portOf(r6.body.address), '::1', '::1'), 'reset', 'IPv6 deny rule holds');
  t.equal(
    await metric(k.api, 'keyport_connections_rejected_total', {
      listener: r6.body.id,
      reason: 'denied',
    }),
    1,
  );
});

t.test('per-source cap: one source past it is reset, others and freed slots served', async (t) => {
  const r = await request(k.api, 'POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'echo',
    maxConnectionsPerSource: 2,
  });
  t.equal(r.status, 201, JSON.stringify(r.body));
  t.equal(r.body.maxConnectionsPerSource, 2);
  const port = portOf(r.body.address);
  const held = [await hold(port, '127.0.0.2'), await hold(port, '127.0.0.2')];
  const flood = await Promise.all(Array.from({ length: 20 }, () => attempt(port, '127.0.0.2')));
  t.same(flood, counts(20, 'reset'), 'every client past 2 from 127.0.0.2 was reset, 0 bytes');
  t.same(
    await Promise.all([attempt(port, '127.0.0.3'), attempt(port, '127.0.0.1')]),
    ['served', 'served'],
    'other sources are still served',
  );
  held[0]?.destroy();
  await openOn(k.api, r.body.id, 1);
  t.equal(await attempt(port, '127.0.0.2'), 'served', 'a freed slot serves that source again');
  held[1]?.destroy();
  t.equal(
    await metric(k.api, 'keyport_connections_rejected_total', {
      listener: r.body.id,
      reason: 'per-source',
    }),
    20,
  );
  t.equal((await request(k.api, 'GET', `/listeners/${r.body.id}`)).body.rejected['per-source'], 20);
});

t.test('bad CIDRs are refused with the bad entry named', async (t) => {
  const before = (await request(k.api, 'GET', '/listeners')).body.items.length;
  for (const [field, list, re] of [
    ['allow', ['10.0.0.0/8', '10.0.0.0/33'], /body\/allow\/1: "10\.0\.0\.0\/33" is not a CIDR/],
    ['deny', ['nonsense'], /body\/deny\/0: "nonsense" is not a CIDR/],
    ['deny', ['fd00::/129'], /body\/deny\/0: .*prefix length must be 0-128/],
  ] as const) {
    const r = await request(k.api, 'POST', '/listeners', {
      address: '127.0.0.1:0',
      mode: 'echo',
      [field]: list,
    });
    t.equal(r.status, 400);
    t.match(r.body.message, re);
  }
  t.equal((await request(k.api, 'GET', '/listeners')).body.items.length, before, 'none created');
  await t.rejects(
    startKeyport([
      '--config',
      file('bad-cidr.json', {
        listeners: [{ address: '127.0.0.1:0', mode: 'echo', allow: ['::1', '300.1.2.3/8'] }],
      }),
    ]),
    /exited \(2\)[\s\S]*bad-cidr\.json: \/listeners\/0\/allow\/1: "300\.1\.2\.3\/8" is not a CIDR/,
  );
});

t.test('the listener limit: reset at maxConnections is counted by reason', async (t) => {
  const r = await request(k.api, 'POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'echo',
    maxConnections: 1,
    onLimit: 'reset',
  });
  const port = portOf(r.body.address);
  const h = await hold(port, '127.0.0.1');
  t.same(
    await Promise.all(Array.from({ length: 3 }, () => attempt(port, '127.0.0.1'))),
    counts(3, 'reset'),
  );
  h.destroy();
  t.equal(
    await metric(k.api, 'keyport_connections_rejected_total', {
      listener: r.body.id,
      reason: 'max-connections',
    }),
    3,
  );
});

t.test('engine.maxListeners: POST past it is 409 naming the limit', async (t) => {
  const r = await request(kc.api, 'POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'forward',
    target: `127.0.0.1:${up.port}`,
  });
  t.equal(r.status, 201);
  const over = await request(kc.api, 'POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'echo',
  });
  t.equal(over.status, 409);
  t.match(over.body.message, /engine\.maxListeners \(2\) reached/);
  t.equal((await request(kc.api, 'GET', '/listeners')).body.items.length, 2, 'nothing created');
  await t.rejects(
    startKeyport([
      '--config',
      file('too-many.json', {
        engine: { maxListeners: 2 },
        listeners: Array.from({ length: 3 }, () => ({ address: '127.0.0.1:0', mode: 'echo' })),
      }),
    ]),
    /exited \(2\)[\s\S]*too-many\.json: \/listeners: 3 listeners, more than engine\.maxListeners \(2\)/,
  );
});

t.test(
  'engine.maxConnections: across listeners, the surplus is reset before any read',
  async (t) => {
    const ls = (await request(kc.api, 'GET', '/listeners')).body.items;
    const echo = ls.find((l: { mode: string }) => l.mode === 'echo');
    const fwd = ls.find((l: { mode: string }) => l.mode === 'forward');
    const pe = portOf(echo.address);
    const pf = portOf(fwd.address);
    upstreamConnects = 0;
    const held = [
      await hold(pe, '127.0.0.1'),
      await hold(pe, '127.0.0.2'),
      await hold(pe, '127.0.0.3'),
      await hold(pf, '127.0.0.1'),
    ];
    const flood = await Promise.all(
      Array.from({ length: 12 }, (_, i) => attempt(i % 2 ? pe : pf, '127.0.0.2')),
    );
    t.same(flood, counts(12, 'reset'), 'with 4 open, every further client was reset, 0 bytes');
    t.equal(upstreamConnects, 1, 'no upstream connect for the refused forward clients');
    const m = (id: string) =>
      metric(kc.api, 'keyport_connections_rejected_total', {
        listener: id,
        reason: 'engine-max-connections',
      });
    t.equal((await m(echo.id)) + (await m(fwd.id)), 12);
    t.equal(await m(fwd.id), 6);
    held[0]?.destroy();
    t.equal(
      await until(
        () => attempt(pf, '127.0.0.2'),
        (v) => v === 'served',
        10_000,
      ),
      'served',
      'a freed slot is served again',
    );
    for (const h of held) h.destroy();
  },
);

t.test('api.maxConnections: the API server holds at most its cap', async (t) => {
  // 20 raw keep-alive clients; at most 8 (fewer if this test's own fetch pool holds some) are
  // answered, the others are closed without a byte.
  const results = await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        new Promise<{ s: net.Socket; answered: boolean }>((res) => {
          const s = net.connect({ port: portOf(kc.api), host: '127.0.0.1' });
          let data = '';
          s.on('error', () => {});
          s.on('data', (d) => {
            data += d;
            if (data.includes('\r\n\r\n')) res({ s, answered: true });
          });
          s.on('close', () => res({ s, answered: false }));
          s.on('connect', () =>
            s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n'),
          );
        }),
    ),
  );
  const answered = results.filter((r) => r.answered).length;
  t.ok(answered >= 1 && answered <= 8, `answered ${answered} of 20 (cap 8)`);
  t.ok(20 - answered >= 12, `${20 - answered} closed unanswered`);
  for (const r of results) r.s.destroy();
  const ok = await until(
    () =>
      request(kc.api, 'GET', '/healthz')
        .then((r) => r.status)
        .catch(() => 0),
    (s) => s === 200,
    10_000,
  );
  t.equal(ok, 200, 'served again once they left');
});
