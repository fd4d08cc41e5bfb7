// Several upstreams per forward listener (issue 17): round-robin (smooth weighted),
// least-connections and random-two over real upstreams, passive health (a target that refuses
// is ejected, the clients notice nothing, it comes back after its cool-down), panic mode (every
// target ejected: keyport tries them all anyway), active checks (a target is taken down and up
// again with no client connecting), the status page's view of the targets (Chromium), and the
// config and API errors that name the field.
//
// The upstreams are Node servers in this process on 127.0.0.1, at ports below the ephemeral
// range (freePort: a refused connect to a port inside it may connect to itself), so that one can
// be stopped and started again on the same port. Each writes its name and a newline on connect,
// then echoes: a client knows which upstream served it, and each server counts what it saw.
// Every count asserted is one the peers observed (greetings, the servers' accepts and open
// sockets), compared with what GET /listeners/{id} and /metrics say.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import t, { type Test } from 'tap';
import type { ListenerSnapshot, UpstreamSnapshot } from '../../src/engine/views/schemas.js';
import { portOf, request } from '../helpers/http.js';
import { ERR, logRecords, OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { openEvents } from '../helpers/sse.js';
import { closed, connect, freePort, payload, readBytes, until } from '../helpers/tcp.js';

const CHROMIUM = '/usr/bin/chromium';
const dir = join(OUT_DIR, `balance-${process.pid}`);
mkdirSync(dir, { recursive: true });
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** An upstream that greets with its name, then echoes; it can stop and start on its port. */
interface Named {
  readonly name: string;
  readonly port: number;
  /** `127.0.0.1:PORT`, as configured and as keyport shows it. */
  readonly target: string;
  /** Connections accepted, ever (clients relayed by keyport, and active checks). */
  accepted: number;
  /** Its sockets open now. */
  readonly open: Set<net.Socket>;
  start(): Promise<void>;
  /** server.close(), every socket destroyed. */
  stop(): Promise<void>;
}

async function named(name: string, listening = true): Promise<Named> {
  const port = await freePort();
  let server: net.Server | null = null;
  const u: Named = {
    name,
    port,
    target: `127.0.0.1:${port}`,
    accepted: 0,
    open: new Set(),
    async start() {
      const s = net.createServer({ allowHalfOpen: true }, (sock) => {
        u.accepted++;
        u.open.add(sock);
        sock.on('error', () => {});
        sock.on('close', () => u.open.delete(sock));
        sock.write(`${name}\n`);
        sock.pipe(sock);
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, '127.0.0.1', () => resolve());
      });
      server = s;
    },
    async stop() {
      const s = server;
      server = null;
      if (!s) return;
      for (const sock of u.open) sock.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
  if (listening) await u.start();
  t.teardown(() => u.stop());
  return u;
}

/** Reads the upstream's greeting line; rejects when the stream ends first. */
function readLine(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (): void => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      s.off('error', onError);
    };
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const i = buf.indexOf('\n');
      if (i < 0) return;
      done();
      if (i === buf.length - 1) resolve(buf.slice(0, i));
      else reject(new Error(`bytes after the greeting: ${JSON.stringify(buf)}`));
    };
    const onEnd = (): void => {
      done();
      reject(new Error(`the stream ended before a greeting (got ${JSON.stringify(buf)})`));
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    s.once('error', onError);
  });
}

interface Visit {
  name: string;
  socket: net.Socket;
}

/**
 * One client through keyport: reads which upstream it reached; with `echo`, sends that many
 * random bytes and checks they come back; then closes (FIN, and expects the upstream's FIN back)
 * unless `hold`. Rejects on anything else, and after 15 s without progress.
 */
async function visit(port: number, opts: { echo?: number; hold?: boolean } = {}): Promise<Visit> {
  const s = await connect(port);
  s.on('error', () => {});
  s.setTimeout(15_000, () => s.destroy(new Error('no progress in 15 s')));
  try {
    const name = await readLine(s);
    if (opts.echo) {
      const data = payload(opts.echo);
      const back = readBytes(s, data.length);
      s.write(data);
      if (!(await back).equals(data)) throw new Error(`${name}: the echo differs`);
    }
    if (opts.hold) {
      s.setTimeout(0);
      return { name, socket: s };
    }
    const end = closed(s);
    s.end();
    const how = await end;
    if (how.how !== 'end') throw new Error(`${name}: ended by ${how.how} ${how.code ?? ''}`);
    return { name, socket: s };
  } finally {
    if (!opts.hold) s.destroy();
  }
}

/** `n` clients one after another; how many each upstream served, and the order. */
async function visits(
  port: number,
  n: number,
  opts: { echo?: number } = {},
): Promise<{ counts: Record<string, number>; order: string[] }> {
  const counts: Record<string, number> = {};
  const order: string[] = [];
  for (let i = 0; i < n; i++) {
    const { name } = await visit(port, opts);
    counts[name] = (counts[name] ?? 0) + 1;
    order.push(name);
  }
  return { counts, order };
}

/** Closes held clients gracefully and waits for each to end. */
async function release(held: Visit[]): Promise<void> {
  await Promise.all(
    held.map(async ({ socket }) => {
      const end = closed(socket);
      socket.end();
      await end;
      socket.destroy();
    }),
  );
}

/** The views as the API answers them (the engine's own snapshot types). */
type UpstreamView = UpstreamSnapshot;
type ListenerView = Pick<
  ListenerSnapshot,
  'id' | 'address' | 'mode' | 'target' | 'balance' | 'upstreams'
>;

// ---- the upstreams, the config file, keyport ----

const [rrA, rrB, rrC] = [await named('rr-a'), await named('rr-b'), await named('rr-c')];
const [wA, wB, wC] = [await named('w-a'), await named('w-b'), await named('w-c')];
const [lcA, lcB, lcC] = [await named('lc-a'), await named('lc-b'), await named('lc-c')];
const [lwA, lwB, lwC] = [await named('lw-a'), await named('lw-b'), await named('lw-c')];
const [r2A, r2B, r2C] = [await named('r2-a'), await named('r2-b'), await named('r2-c')];
const [foA, foB, foC] = [await named('fo-a'), await named('fo-b'), await named('fo-c')];
// Nothing listens at these until the panic-mode test starts one.
const [dnA, dnB, dnC] = [
  await named('dn-a', false),
  await named('dn-b', false),
  await named('dn-c', false),
];
const [ckA, ckB] = [await named('ck-a'), await named('ck-b')];
const one = await named('one');
const [apiA, apiB] = [await named('api-a'), await named('api-b')];

const fwd = (extra: Record<string, unknown>) => ({
  address: '127.0.0.1:0',
  mode: 'forward',
  ...extra,
});
const cfg = join(dir, 'keyport.json');
writeFileSync(
  cfg,
  JSON.stringify(
    {
      listeners: [
        { address: '127.0.0.1:0', mode: 'echo' },
        fwd({ target: one.target }),
        // balance left out: round-robin is the default
        fwd({ targets: [rrA.target, rrB.target, rrC.target] }),
        fwd({
          targets: [
            { address: wA.target, weight: 1 },
            { address: wB.target, weight: 2 },
            { address: wC.target, weight: 3 },
          ],
          balance: 'round-robin',
        }),
        fwd({ targets: [lcA.target, lcB.target, lcC.target], balance: 'least-connections' }),
        fwd({
          targets: [
            { address: lwA.target, weight: 1 },
            { address: lwB.target, weight: 2 },
            { address: lwC.target, weight: 3 },
          ],
          balance: 'least-connections',
        }),
        fwd({ targets: [r2A.target, r2B.target, r2C.target], balance: 'random-two' }),
        fwd({
          targets: [foA.target, foB.target, foC.target],
          health: { failures: 2, ejectMs: 2000 },
        }),
        // A long cool-down: every target stays ejected through the panic-mode test.
        fwd({
          targets: [dnA.target, dnB.target, dnC.target],
          health: { failures: 3, ejectMs: 30_000 },
        }),
        fwd({
          targets: [ckA.target, ckB.target],
          health: { check: { intervalMs: 200, timeoutMs: 200, rise: 2, fall: 2 } },
        }),
      ],
    },
    null,
    2,
  ),
);
const k = await startKeyport(['--config', cfg]);
t.teardown(() => k.stop());
const api = (m: string, p: string, b?: unknown) => request(k.api, m, p, b);
const all = (await api('GET', '/listeners')).body.items as ListenerView[];
/** The listener whose first target is `u`. */
const of = (u: Named): ListenerView => {
  const l = all.find((x) => x.target === u.target);
  if (!l) throw new Error(`no listener with target ${u.target}: ${JSON.stringify(all)}`);
  return l;
};
const echoL = all.find((x) => x.mode === 'echo') as ListenerView;
const [oneL, rrL, wL, lcL, lwL, r2L, foL, dnL, ckL] = [
  of(one),
  of(rrA),
  of(wA),
  of(lcA),
  of(lwA),
  of(r2A),
  of(foA),
  of(dnA),
  of(ckA),
];

async function view(l: ListenerView): Promise<ListenerView> {
  const r = await api('GET', `/listeners/${l.id}`);
  if (r.status !== 200)
    throw new Error(`GET /listeners/${l.id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as ListenerView;
}
function upOf(v: ListenerView, u: Named): UpstreamView {
  const x = v.upstreams.find((y) => y.target === u.target);
  if (!x)
    throw new Error(`${u.target} not in upstreams of ${v.id}: ${JSON.stringify(v.upstreams)}`);
  return x;
}
const upMetric = (name: string, l: ListenerView, u: Named) =>
  metric(k.api, name, { listener: l.id, target: u.target });

/** Each of `want` within ±tol, by upstream name. */
function near(t: Test, counts: Record<string, number>, want: Record<string, number>, tol: number) {
  for (const [name, n] of Object.entries(want)) {
    const got = counts[name] ?? 0;
    t.ok(Math.abs(got - n) <= tol, `${name}: ${got} (want ${n} ± ${tol})`);
  }
  const others = Object.keys(counts).filter((x) => !(x in want));
  t.same(others, [], 'no other upstream served anyone');
}

/** keyport's per-target totals agree with what each server accepted. */
async function totalsAgree(t: Test, l: ListenerView, us: Named[]): Promise<void> {
  const v = await view(l);
  for (const u of us) {
    t.equal(upOf(v, u).connectionsTotal, u.accepted, `${u.name}: connectionsTotal = its accepts`);
    t.equal(
      await upMetric('keyport_upstream_connections_total', l, u),
      u.accepted,
      `${u.name}: keyport_upstream_connections_total = its accepts`,
    );
  }
}

// Everything below is in subtests: tap ends a file's root test when it has seen an assertion
// and then waits on nothing of its own.

t.test('GET /listeners/{id} shows the balance and every upstream', async (t) => {
  const rr = await view(rrL);
  t.equal(rr.balance, 'round-robin', 'round-robin is the default');
  t.equal(rr.target, rrA.target, '`target` is the first target');
  t.same(
    rr.upstreams.map((u) => [u.target, u.weight]),
    [
      [rrA.target, 1],
      [rrB.target, 1],
      [rrC.target, 1],
    ],
    'every target in order, weight 1 by default',
  );
  for (const u of rr.upstreams) {
    t.match(
      u,
      {
        state: 'up',
        connections: 0,
        connectionsTotal: 0,
        connectFailuresTotal: 0,
        consecutiveFailures: 0,
        ejectedUntil: null,
        ejectionsTotal: 0,
        lastError: null,
        lastErrorAt: null,
        check: null,
      },
      `${u.target}: up, nothing counted, no checks`,
    );
  }
  t.same(
    (await view(wL)).upstreams.map((u) => u.weight),
    [1, 2, 3],
    'weights as configured',
  );
  t.equal((await view(lcL)).balance, 'least-connections');
  t.equal((await view(r2L)).balance, 'random-two');
  const single = await view(oneL);
  t.equal(single.balance, 'round-robin', 'a single `target` balances (trivially) round-robin');
  t.same(
    single.upstreams.map((u) => u.target),
    [one.target],
    'a single `target` shows as one upstream',
  );
  const echo = await view(echoL);
  t.equal(echo.balance, null, 'echo: balance null');
  t.same(echo.upstreams, [], 'echo: no upstreams');
  t.equal(echo.target, null, 'echo: target null');
  const checked = (await view(ckL)).upstreams;
  t.ok(
    checked.length === 2 && checked.every((u) => typeof u.check?.state === 'string'),
    'with health.check: a check view per target',
  );
  t.equal(await upMetric('keyport_upstream_up', rrL, rrB), 1, 'keyport_upstream_up is 1');
  t.equal(await upMetric('keyport_upstream_ejections_total', rrL, rrB), 0);
  t.equal(await upMetric('keyport_upstream_target_failures_total', rrL, rrB), 0);
});

t.test('round-robin: 300 clients over 3 equal targets, 100 each', async (t) => {
  const { counts, order } = await visits(portOf(rrL.address), 300);
  // Smooth round-robin over equal weights is a strict rotation: exactly 100 each. ±2 leaves
  // room for where the rotation starts, nothing more.
  near(t, counts, { 'rr-a': 100, 'rr-b': 100, 'rr-c': 100 }, 2);
  const repeats = order.filter((n, i) => n === order[i - 1] || n === order[i - 2]).length;
  t.equal(repeats, 0, 'a strict rotation: no upstream serves twice within 3 clients');
  await totalsAgree(t, rrL, [rrA, rrB, rrC]);
});

t.test('round-robin, weights 1, 2, 3: 300 clients split 50/100/150, interleaved', async (t) => {
  const { counts, order } = await visits(portOf(wL.address), 300);
  // Smooth weighted round-robin is exact over each cycle of 6 (c b a c b c): 50/100/150.
  near(t, counts, { 'w-a': 50, 'w-b': 100, 'w-c': 150 }, 5);
  let run = 0;
  let longest = 0;
  for (const [i, n] of order.entries()) {
    run = n === order[i - 1] ? run + 1 : 1;
    if (n === 'w-c') longest = Math.max(longest, run);
  }
  t.ok(longest <= 2, `smooth: the heaviest target serves at most 2 in a row (${longest})`);
  await totalsAgree(t, wL, [wA, wB, wC]);
});

t.test(
  'least-connections: held connections spread evenly, and new ones fill the gap',
  async (t) => {
    const port = portOf(lcL.address);
    let held: Visit[] = [];
    t.teardown(() => release(held));
    for (let i = 0; i < 30; i++) held.push(await visit(port, { hold: true }));
    const counts: Record<string, number> = {};
    for (const h of held) counts[h.name] = (counts[h.name] ?? 0) + 1;
    // One at a time, each to the target with fewest open: 10 each (±1 for ties).
    near(t, counts, { 'lc-a': 10, 'lc-b': 10, 'lc-c': 10 }, 1);
    let v = await view(lcL);
    for (const u of [lcA, lcB, lcC]) {
      t.equal(upOf(v, u).connections, u.open.size, `${u.name}: connections = its open sockets`);
      t.equal(
        await upMetric('keyport_upstream_connections', lcL, u),
        u.open.size,
        `${u.name}: keyport_upstream_connections = its open sockets`,
      );
    }

    // lc-a's clients leave: the next 10 all go to lc-a (fewest open until it has 10 again).
    const leaving = held.filter((h) => h.name === 'lc-a');
    held = held.filter((h) => h.name !== 'lc-a');
    await release(leaving);
    v = await until(
      () => view(lcL),
      (x) => upOf(x, lcA).connections === 0,
    );
    t.equal(upOf(v, lcA).connections, 0, "lc-a's connections went to 0");
    const next: Record<string, number> = {};
    for (let i = 0; i < 10; i++) {
      const h = await visit(port, { hold: true });
      held.push(h);
      next[h.name] = (next[h.name] ?? 0) + 1;
    }
    t.same(next, { 'lc-a': 10 }, 'all 10 new clients went to lc-a, the least loaded');
    v = await view(lcL);
    for (const u of [lcA, lcB, lcC]) {
      t.equal(upOf(v, u).connections, u.open.size, `${u.name}: ${u.open.size} open, as it saw`);
    }
    const last = held;
    held = [];
    await release(last);
    await until(
      () => view(lcL),
      (x) => x.upstreams.every((u) => u.connections === 0),
    );
    await totalsAgree(t, lcL, [lcA, lcB, lcC]);
  },
);

t.test('least-connections, weights 1, 2, 3: 60 held split 10/20/30', async (t) => {
  const port = portOf(lwL.address);
  const held: Visit[] = [];
  t.teardown(() => release(held));
  for (let i = 0; i < 60; i++) held.push(await visit(port, { hold: true }));
  const counts: Record<string, number> = {};
  for (const h of held) counts[h.name] = (counts[h.name] ?? 0) + 1;
  near(t, counts, { 'lw-a': 10, 'lw-b': 20, 'lw-c': 30 }, 1);
  const v = await view(lwL);
  for (const u of [lwA, lwB, lwC]) {
    t.equal(upOf(v, u).connections, u.open.size, `${u.name}: connections = its open sockets`);
  }
});

t.test('random-two: 600 clients, in held batches of 30, stay balanced', async (t) => {
  const port = portOf(r2L.address);
  const counts: Record<string, number> = {};
  for (let batch = 0; batch < 20; batch++) {
    const held: Visit[] = [];
    for (let i = 0; i < 30; i++) held.push(await visit(port, { hold: true }));
    for (const h of held) counts[h.name] = (counts[h.name] ?? 0) + 1;
    if (batch === 19) {
      const v = await view(r2L);
      for (const u of [r2A, r2B, r2C]) {
        t.equal(upOf(v, u).connections, u.open.size, `${u.name}: connections = its open sockets`);
      }
    }
    await release(held);
    await until(
      () => view(r2L),
      (x) => x.upstreams.every((u) => u.connections === 0),
    );
  }
  // Even plain random keeps 600 within 150..250 (±4 sd); two choices keep it much closer.
  for (const name of ['r2-a', 'r2-b', 'r2-c']) {
    const n = counts[name] ?? 0;
    t.ok(n >= 150 && n <= 250, `${name}: ${n} of 600 (150..250)`);
  }
  t.equal(
    Object.values(counts).reduce((a, b) => a + b, 0),
    600,
    'every client was served',
  );
  await totalsAgree(t, r2L, [r2A, r2B, r2C]);
});

t.test(
  'failover: a target that refuses is ejected, no client notices, it comes back',
  async (t) => {
    const port = portOf(foL.address);
    const events = await openEvents(k.api, '/events');
    t.teardown(() => events.close());
    const failures: string[] = [];
    const counts: Record<string, number> = {};
    const client = async (): Promise<void> => {
      try {
        const { name } = await visit(port, { echo: 1024 });
        counts[name] = (counts[name] ?? 0) + 1;
      } catch (e) {
        failures.push(String(e));
      }
    };
    for (let i = 0; i < 30; i++) await client();
    t.same(counts, { 'fo-a': 10, 'fo-b': 10, 'fo-c': 10 }, 'before: 10 each');

    await foB.stop();
    const bBefore = foB.accepted;
    for (const name of Object.keys(counts)) counts[name] = 0;
    for (let i = 0; i < 100; i++) await client();
    t.same(failures, [], 'zero client failures: every one got a greeting and its 1 KB back');
    t.equal((counts['fo-a'] ?? 0) + (counts['fo-c'] ?? 0), 100, 'fo-a and fo-c served all 100');
    t.equal(counts['fo-b'] ?? 0, 0, 'fo-b served none');

    // The cool-down (2 s, then 4 s…) may have ended by now; a few more clients make keyport try
    // fo-b again and eject it again.
    let v = await until(
      async () => {
        const x = await view(foL);
        if (upOf(x, foB).state !== 'ejected') await client();
        return x;
      },
      (x) => upOf(x, foB).state === 'ejected',
      10_000,
    );
    const b = upOf(v, foB);
    t.equal(b.state, 'ejected', 'fo-b is ejected');
    t.equal(b.lastError, ERR.refused, `its lastError is ${ERR.refused}`);
    t.ok(b.connectFailuresTotal >= 2, `connectFailuresTotal ${b.connectFailuresTotal} >= 2`);
    t.ok(b.ejectionsTotal >= 1, `ejectionsTotal ${b.ejectionsTotal} >= 1`);
    t.ok(b.lastErrorAt !== null && !Number.isNaN(Date.parse(b.lastErrorAt)), 'lastErrorAt');
    t.ok(
      b.ejectedUntil !== null && Date.parse(b.ejectedUntil) > Date.now() - 1000,
      `ejectedUntil ${b.ejectedUntil}`,
    );
    for (const u of [foA, foC]) {
      t.match(upOf(v, u), { state: 'up', connectFailuresTotal: 0 }, `${u.name} stays up`);
    }
    t.equal(await upMetric('keyport_upstream_up', foL, foB), 0, 'keyport_upstream_up{fo-b} 0');
    t.equal(await upMetric('keyport_upstream_up', foL, foA), 1, 'keyport_upstream_up{fo-a} 1');
    t.ok(
      (await upMetric('keyport_upstream_target_failures_total', foL, foB)) >= 2,
      'keyport_upstream_target_failures_total{fo-b} >= 2',
    );
    t.equal(
      await metric(k.api, 'keyport_upstream_connect_failures_total', { listener: foL.id }),
      0,
      'keyport_upstream_connect_failures_total (clients that reached no target) stays 0',
    );
    t.ok(
      (await upMetric('keyport_upstream_ejections_total', foL, foB)) >= 1,
      'keyport_upstream_ejections_total{fo-b} >= 1',
    );
    const ejected = await until(
      async () => logRecords(k, 'upstream ejected').filter((r) => r.target === foB.target),
      (r) => r.length > 0,
      10_000,
    );
    t.match(
      ejected[0],
      { msg: 'upstream ejected', listener: foL.id, target: foB.target, forMs: Number },
      'logged: upstream ejected, with the listener, the target and the cool-down',
    );
    await events
      .until((m) => m.some((x) => isUpstreamEvent(x, foB.target)), 10_000)
      .then(
        () => t.pass('GET /events: an "upstream" event for fo-b'),
        (e) => t.fail(String(e)),
      );

    // Back on the same port: after its cool-down keyport tries it, and one success makes it up.
    await foB.start();
    v = await until(
      async () => {
        await client();
        return view(foL);
      },
      (x) => upOf(x, foB).state === 'up' && foB.accepted > bBefore,
      25_000,
    );
    t.equal(upOf(v, foB).state, 'up', 'fo-b is up again');
    t.ok(foB.accepted > bBefore, `fo-b served clients again (${foB.accepted - bBefore})`);
    t.equal(upOf(v, foB).consecutiveFailures, 0, 'its consecutive failures reset');
    t.equal(await upMetric('keyport_upstream_up', foL, foB), 1, 'keyport_upstream_up{fo-b} 1');
    t.same(failures, [], 'still zero client failures');
    const back = await until(
      async () => logRecords(k, 'upstream back').filter((r) => r.target === foB.target),
      (r) => r.length > 0,
      10_000,
    );
    t.ok(back.length > 0, 'logged: upstream back');
    await totalsAgree(t, foL, [foA, foB, foC]);
  },
);

// biome-ignore lint/suspicious/noExplicitAny: an event is whatever JSON the engine sent
function isUpstreamEvent(m: { event: string; data: any }, target: string): boolean {
  return (m.event === 'upstream' || m.data?.type === 'upstream') && m.data?.target === target;
}

t.test('every target down: clients are reset, then panic mode tries them anyway', async (t) => {
  const port = portOf(dnL.address);
  for (let i = 0; i < 6; i++) {
    // Reset so soon that it may come before the connect is reported: no connect() helper here.
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    let bytes = 0;
    s.on('data', (d: Buffer) => (bytes += d.length));
    const end = await closed(s);
    t.equal(bytes, 0, `client ${i}: no byte, no greeting`);
    t.not(end.how, 'end', `client ${i}: reset, not given a FIN (${end.how} ${end.code ?? ''})`);
  }
  t.equal((await api('GET', '/healthz')).status, 200, 'keyport keeps running: /healthz 200');
  const v = await view(dnL);
  for (const u of v.upstreams) {
    t.equal(u.state, 'ejected', `${u.target}: ejected`);
    t.ok(u.connectFailuresTotal >= 3, `${u.target}: ${u.connectFailuresTotal} failures >= 3`);
    t.equal(u.lastError, ERR.refused, `${u.target}: lastError ${ERR.refused}`);
  }
  // Each client's close line (debug) says every target was tried, ejected or not.
  const reasons = await until(
    async () =>
      logRecords(k, 'targets tried')
        .filter((r) => r.listener === dnL.id)
        .map((r) => String(r.reason)),
    (r) => r.length >= 6,
    10_000,
  );
  t.equal(reasons.length, 6, 'six close lines');
  for (const r of reasons) t.match(r, /^upstream connect failed: .*\(3 targets tried\)$/);

  // Panic mode: dn-b answers again, long before its 30 s cool-down ends; the next client is
  // served by it, since with every target ejected keyport tries them all.
  await dnB.start();
  const got = await visit(port, { echo: 1024 });
  t.equal(got.name, 'dn-b', 'panic mode: the next client reached dn-b');
  const after = await view(dnL);
  t.equal(upOf(after, dnB).state, 'up', 'one success makes dn-b up');
  t.same(
    [upOf(after, dnA).state, upOf(after, dnC).state],
    ['ejected', 'ejected'],
    'the others stay ejected',
  );
  const failing = [upOf(after, dnA).connectFailuresTotal, upOf(after, dnC).connectFailuresTotal];
  const { counts } = await visits(port, 3);
  t.same(counts, { 'dn-b': 3 }, 'the next clients all go to dn-b');
  const later = await view(dnL);
  t.same(
    [upOf(later, dnA).connectFailuresTotal, upOf(later, dnC).connectFailuresTotal],
    failing,
    'no longer in panic: the ejected dn-a and dn-c were not tried for them',
  );
  t.equal(
    await metric(k.api, 'keyport_upstream_connect_failures_total', { listener: dnL.id }),
    6,
    'keyport_upstream_connect_failures_total: the 6 clients that reached no target',
  );
});

t.test('active checks take a target down and up with no client connecting', async (t) => {
  const port = portOf(ckL.address);
  let v = await until(
    () => view(ckL),
    (x) => x.upstreams.every((u) => u.check?.state === 'up' && u.state === 'up'),
    10_000,
  );
  for (const u of [ckA, ckB]) {
    const x = upOf(v, u);
    t.equal(x.check?.state, 'up', `${u.name}: check up`);
    t.ok((x.check?.checksTotal ?? 0) >= 2, `${u.name}: ${x.check?.checksTotal} checks`);
    t.ok(u.accepted > 0, `${u.name} saw the checks connect (${u.accepted})`);
    t.equal(x.connectionsTotal, 0, `${u.name}: checks are not client connections`);
  }

  await ckB.stop();
  v = await until(
    () => view(ckL),
    (x) => upOf(x, ckB).check?.state === 'down' && upOf(x, ckB).state === 'down',
    10_000,
  );
  const b = upOf(v, ckB);
  t.equal(b.check?.state, 'down', 'ck-b: check down');
  t.equal(b.state, 'down', 'ck-b: down');
  t.ok((b.check?.failuresTotal ?? 0) >= 2, `ck-b: ${b.check?.failuresTotal} failed checks >= 2`);
  t.match(b.check?.lastError ?? '', ERR.refused, `ck-b: the check's lastError is ${ERR.refused}`);
  t.equal(upOf(v, ckA).state, 'up', 'ck-a stays up');
  t.equal(await upMetric('keyport_upstream_up', ckL, ckB), 0, 'keyport_upstream_up{ck-b} 0');

  const down = await visits(port, 10);
  t.same(down.counts, { 'ck-a': 10 }, 'a down target gets no new connections');
  // Failed checks count in check.failuresTotal; connectFailuresTotal counts client connects.
  t.equal(upOf(await view(ckL), ckB).connectFailuresTotal, 0, 'no client was sent to ck-b');

  await ckB.start();
  v = await until(
    () => view(ckL),
    (x) => upOf(x, ckB).check?.state === 'up' && upOf(x, ckB).state === 'up',
    10_000,
  );
  t.equal(upOf(v, ckB).state, 'up', 'ck-b: up again after `rise` good checks');
  t.equal(await upMetric('keyport_upstream_up', ckL, ckB), 1, 'keyport_upstream_up{ck-b} 1');
  const up = await visits(port, 10);
  near(t, up.counts, { 'ck-a': 5, 'ck-b': 5 }, 1);
});

t.test('POST /listeners takes targets, and names the field it refuses', async (t) => {
  const empty = await api('POST', '/listeners', fwd({ targets: [] }));
  t.equal(empty.status, 400, 'targets: [] is a 400');
  t.match(empty.body.message, /body\/targets/, `it names body/targets: ${empty.body.message}`);
  const both = await api(
    'POST',
    '/listeners',
    fwd({ target: apiA.target, targets: [apiB.target] }),
  );
  t.equal(both.status, 400, 'target and targets together is a 400');
  t.match(both.body.message, /body\/targets/, `it names body/targets: ${both.body.message}`);
  const echo = await api('POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'echo',
    targets: [apiA.target],
  });
  t.equal(echo.status, 400, 'targets on an echo listener is a 400');
  t.match(echo.body.message, /body\/targets/, `it names body/targets: ${echo.body.message}`);
  const weight = await api(
    'POST',
    '/listeners',
    fwd({ targets: [apiA.target, { address: apiB.target, weight: 0 }] }),
  );
  t.equal(weight.status, 400, 'weight 0 is a 400');
  t.match(
    weight.body.message,
    /^body\/targets\/1\/weight must be >= 1$/,
    `it names the weight, not only the item: ${weight.body.message}`,
  );

  const r = await api(
    'POST',
    '/listeners',
    fwd({ targets: [apiA.target, { address: apiB.target, weight: 3 }], balance: 'random-two' }),
  );
  t.equal(r.status, 201, `a listener with targets is created: ${JSON.stringify(r.body)}`);
  t.equal(r.body.balance, 'random-two');
  t.equal(r.body.target, apiA.target, '`target` is the first');
  t.same(
    (r.body.upstreams as UpstreamView[]).map((u) => [u.target, u.weight]),
    [
      [apiA.target, 1],
      [apiB.target, 3],
    ],
  );
  const { counts } = await visits(portOf(r.body.address), 8, { echo: 64 });
  t.equal((counts['api-a'] ?? 0) + (counts['api-b'] ?? 0), 8, 'it serves, from its targets');
  t.equal((await api('DELETE', `/listeners/${r.body.id}?mode=abort`)).status, 202);
});

t.test('the status page lists each target with its state', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    return;
  }
  const dead = `127.0.0.1:${await freePort()}`;
  const r = await api(
    'POST',
    '/listeners',
    fwd({ targets: [apiA.target, dead], health: { failures: 1, ejectMs: 60_000 } }),
  );
  t.equal(r.status, 201, 'a listener with a live and a dead target');
  t.teardown(() => api('DELETE', `/listeners/${r.body.id}?mode=abort`));
  const { counts } = await visits(portOf(r.body.address), 4, { echo: 16 });
  t.equal(counts['api-a'], 4, 'every client served by the live target');
  const userData = mkdtempSync(join(tmpdir(), 'keyport-chromium-'));
  const browser = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  t.teardown(async () => {
    await browser.close();
    rmSync(userData, { recursive: true, force: true });
  });
  const page = await browser.newPage();
  await page.goto(`${k.api}/`);
  const badge = (target: string) =>
    `#listeners tr[data-id="${r.body.id}"] .upstream[data-target="${target}"] .badge`;
  await page.waitForSelector(badge(dead), { timeout: 15_000 });
  t.equal(await page.textContent(badge(dead)), 'ejected', `${dead}: ejected on the page`);
  t.equal(await page.textContent(badge(apiA.target)), 'up', `${apiA.target}: up on the page`);
  t.match(
    await page.getAttribute(
      `#listeners tr[data-id="${r.body.id}"] .upstream[data-target="${dead}"]`,
      'title',
    ),
    ERR.refused,
    'its last error in the title',
  );
});

t.test('a config file with bad targets stops start-up, naming the field', async (t) => {
  const bad = (name: string, listener: Record<string, unknown>): string => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify({ listeners: [{ address: '127.0.0.1:0', ...listener }] }));
    return p;
  };
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'both.json',
      { mode: 'forward', target: apiA.target, targets: [apiB.target] },
      /exited \(2\)[\s\S]*both\.json: \/listeners\/0\/targets/,
    ],
    [
      'duplicate.json',
      { mode: 'forward', targets: [apiA.target, { address: apiA.target, weight: 2 }] },
      /exited \(2\)[\s\S]*duplicate\.json: \/listeners\/0\/targets/,
    ],
    [
      'echo-targets.json',
      { mode: 'echo', targets: [apiA.target] },
      /exited \(2\)[\s\S]*echo-targets\.json: \/listeners\/0\/targets/,
    ],
    [
      'echo-balance.json',
      { mode: 'echo', balance: 'least-connections' },
      /exited \(2\)[\s\S]*echo-balance\.json: \/listeners\/0\/balance/,
    ],
    [
      'weight.json',
      { mode: 'forward', targets: [apiA.target, { address: apiB.target, weight: 0 }] },
      // The field inside the union's object member is named, not only the item.
      /exited \(2\)[\s\S]*weight\.json: \/listeners\/0\/targets\/1\/weight: Expected integer to be greater or equal to 1/,
    ],
  ];
  for (const [name, listener, want] of cases) {
    await t.rejects(startKeyport(['--config', bad(name, listener)]), want, name);
  }
});
