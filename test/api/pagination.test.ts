// Every collection of the API paginates over real HTTP on the real engine, with a few hundred
// live connections on two echo listeners: pages concatenate to the full set with no duplicate
// and no gap while nothing changes, `total` is right and agrees with the filter, filters agree
// with a full scan, out-of-range paging is a 400 that names the field, and the summaries
// (/ops/summary, /connections/summary) agree with the collections they summarise.
import type net from 'node:net';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { BACKEND, startKeyport } from '../helpers/keyport.js';
import { connect, readBytes, until } from '../helpers/tcp.js';

const N_A = 200; // connections on listener A
const N_B = 100; // connections on listener B
const N = N_A + N_B;
const BUSY = 10; // the first BUSY clients of A move distinct, larger byte counts

const k = await startKeyport(['--listener', '127.0.0.1:0=echo', '--listener', '127.0.0.1:0=echo']);
t.teardown(() => k.stop());
// biome-ignore lint/suspicious/noExplicitAny: the views' JSON, read as the API answers it
type J = any;
const get = async (path: string): Promise<J> => {
  const r = await request(k.api, 'GET', path);
  if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

const listeners = (await get('/listeners')).items as Array<{ id: string; address: string }>;
const [la, lb] = listeners as [{ id: string; address: string }, { id: string; address: string }];

const sockets: net.Socket[] = [];
t.teardown(() => {
  for (const s of sockets) s.destroy();
});
/**
 * Bytes each client echoed, by "client address|listener address" (the same ephemeral port may
 * serve two clients of different listeners).
 */
const moved = new Map<string, number>();
const tuple = (c: J) => `${c.remote}|${c.local}`;

async function open(port: number, count: number, busyFirst: number): Promise<void> {
  for (let base = 0; base < count; base += 25) {
    await Promise.all(
      Array.from({ length: Math.min(25, count - base) }, async (_, j) => {
        const i = base + j;
        const s = await connect(port);
        s.on('error', () => {});
        sockets.push(s);
        // The busy ones echo 1000 + 100·i bytes (distinct), the others 2.
        const n = i < busyFirst ? 1000 + 100 * (busyFirst - i) : 2;
        s.write(Buffer.alloc(n, 0x61));
        await readBytes(s, n);
        moved.set(`127.0.0.1:${s.localPort}|127.0.0.1:${s.remotePort}`, n);
      }),
    );
  }
}
await open(portOf(la.address), N_A, BUSY);
await open(portOf(lb.address), N_B, 0);

// Settled: every connection open and its echo's next recv posted (the set of ops no longer
// changes but for the heartbeat's nop, which comes and goes).
await until(
  () => get('/ops?kind=recv&limit=1000'),
  (r) => r.total === N,
);
const conns: J[] = (await get('/connections?limit=1000')).items;
t.equal(conns.length, N, `${N} connections (${BACKEND})`);

/**
 * Every page of `path` at `limit`, concatenated; checks each page's envelope on the way and
 * reports what was wrong with them in one assertion.
 */
async function sweep(
  t: Tap,
  path: string,
  limit: number,
): Promise<{ items: J[]; totals: number[] }> {
  const items: J[] = [];
  const totals: number[] = [];
  const wrong: string[] = [];
  const sep = path.includes('?') ? '&' : '?';
  for (let offset = 0; ; offset += limit) {
    const page = await get(`${path}${sep}offset=${offset}&limit=${limit}`);
    if (page.offset !== offset || page.limit !== limit)
      wrong.push(`page envelope ${page.offset}/${page.limit}, asked ${offset}/${limit}`);
    totals.push(page.total);
    items.push(...page.items);
    if (offset + limit >= page.total) {
      if (page.items.length !== page.total - offset)
        wrong.push(
          `last page (offset ${offset}) holds ${page.items.length}, not ${page.total - offset}`,
        );
      break;
    }
    if (page.items.length !== limit)
      wrong.push(`page at offset ${offset} holds ${page.items.length}, not ${limit}`);
    if (offset > 100_000) break;
  }
  t.same(wrong.slice(0, 3), [], `${path} at limit ${limit}: every page full but the last`);
  return { items, totals };
}
type Tap = typeof t;

const ids = (xs: J[], f: string) => xs.map((x) => x[f]);
const noDup = (xs: unknown[]) => new Set(xs).size === xs.length;

t.test('/connections pages concatenate to the full set', async (t) => {
  const full = await get('/connections?limit=1000');
  t.equal(full.total, N);
  for (const limit of [1, 7, 100]) {
    const { items, totals } = await sweep(t, '/connections', limit);
    t.same(ids(items, 'id'), ids(full.items, 'id'), `limit ${limit}: same ids, same order`);
    t.ok(noDup(ids(items, 'id')), `limit ${limit}: no duplicate`);
    t.ok(
      totals.every((n) => n === N),
      `limit ${limit}: every page says total ${N}`,
    );
  }
  const past = await get(`/connections?offset=${N + 5}`);
  t.same([past.total, past.items.length], [N, 0], 'an offset past the end: no items, the total');
  const dflt = await get('/connections');
  t.same([dflt.offset, dflt.limit, dflt.items.length], [0, 100, 100], 'default page: 0, 100');
});

t.test('/connections filters agree with a full scan', async (t) => {
  for (const l of [la, lb]) {
    const want = conns.filter((c) => c.listener === l.id).map((c) => c.id);
    const { items, totals } = await sweep(t, `/connections?listener=${l.id}`, 33);
    t.same(ids(items, 'id'), want, `listener ${l.id}: the full scan's connections`);
    t.ok(
      totals.every((n) => n === want.length),
      `listener ${l.id}: total ${want.length}`,
    );
  }
  t.equal((await get('/connections?state=open&limit=1000')).total, N, 'state=open: all');
  t.equal((await get('/connections?state=closing')).total, 0, 'state=closing: none');
  t.equal((await get('/connections?listener=l999')).total, 0, 'an unknown listener: none');
});

t.test('/keys pages concatenate to the full set', async (t) => {
  const full = await get('/keys?limit=1000');
  // One key per client socket, one per listener, one for the engine's heartbeat.
  t.equal(full.total, N + 2 + 1, 'a key per connection, per listener, and the heartbeat');
  t.equal(full.items.length, full.total);
  const idx = ids(full.items, 'index');
  t.same(
    idx,
    [...idx].sort((a, b) => a - b),
    'slot order: index ascending',
  );
  for (const limit of [1, 7, 100]) {
    const { items, totals } = await sweep(t, '/keys', limit);
    t.same(ids(items, 'key'), ids(full.items, 'key'), `limit ${limit}: same keys, same order`);
    t.ok(noDup(ids(items, 'key')), `limit ${limit}: no duplicate`);
    t.ok(
      totals.every((n) => n === full.total),
      `limit ${limit}: every page says the total`,
    );
  }
  const keyOf = new Set(conns.map((c) => c.key));
  t.ok(
    [...keyOf].every((key) => full.items.some((x: J) => x.key === key)),
    "every connection's key is in the table",
  );
});

t.test('/ops pages concatenate to the full set', async (t) => {
  // kind=recv is steady (one per echo connection); the unfiltered set also holds the
  // heartbeat's nop, which may come and go between two requests: compared without it.
  const full = await get('/ops?kind=recv&limit=1000');
  t.equal(full.total, N, 'one recv in flight per connection');
  for (const limit of [1, 7, 100]) {
    const { items, totals } = await sweep(t, '/ops?kind=recv', limit);
    t.same(ids(items, 'record'), ids(full.items, 'record'), `recv, limit ${limit}: same order`);
    t.ok(noDup(ids(items, 'record')), `recv, limit ${limit}: no duplicate`);
    t.ok(
      totals.every((n) => n === N),
      `recv, limit ${limit}: every page says total ${N}`,
    );
  }
  const all = await get('/ops?limit=1000');
  const { items } = await sweep(t, '/ops', 9);
  const noNop = (xs: J[]) => xs.filter((o) => o.op !== 'nop').map((o) => o.record);
  t.same(noNop(items), noNop(all.items), 'all kinds, limit 9: the same ops in the same order');
  t.ok(noDup(ids(items, 'record')), 'all kinds: no duplicate');
  t.ok(Math.abs(all.total - all.items.length) === 0, 'limit 1000 holds every op (total = items)');
});

t.test('/ops filters agree with a full scan', async (t) => {
  const all: J[] = (await get('/ops?limit=1000')).items;
  for (const kind of ['recv', 'accept', 'send', 'connect']) {
    const r = await get(`/ops?kind=${kind}&limit=1000`);
    const want = all.filter((o) => o.op === kind).map((o) => o.record);
    t.same(ids(r.items, 'record'), want, `kind=${kind}: the full scan's ops`);
    t.equal(r.total, want.length, `kind=${kind}: total ${want.length}`);
  }
  for (const c of [conns[0], conns[N_A], conns[N - 1]]) {
    const r = await get(`/ops?connection=${c.id}`);
    const want = all.filter((o) => o.connection === c.id).map((o) => o.record);
    t.same(ids(r.items, 'record'), want, `connection=${c.id}: its ops`);
    t.equal(r.total, want.length);
    t.ok(want.length >= 1, `${c.id} has its recv in flight`);
  }
  const aged = await get('/ops?kind=recv&minAgeMs=0&limit=3');
  t.same([aged.total, aged.items.length], [N, 3], 'minAgeMs=0: every recv, a page of 3');
  const oldest = (await get('/ops/summary?oldest=1')).oldest[0];
  const none = await get(`/ops?minAgeMs=${Math.ceil(oldest.ageMs) + 3_600_000}`);
  t.same([none.total, none.items.length], [0, 0], 'older than the oldest: none');
  const some = await get('/ops?minAgeMs=1&kind=recv&limit=5');
  t.ok(
    some.items.every((o: J) => o.ageMs >= 1),
    'minAgeMs: every item at least that old',
  );
});

t.test('/ops/summary agrees with /ops', async (t) => {
  const s = await get('/ops/summary?olderThanMs=0&oldest=20');
  const all: J[] = (await get('/ops?limit=1000')).items;
  const count = (kind: string) => all.filter((o) => o.op === kind).length;
  for (const kind of ['recv', 'accept', 'send', 'connect'])
    t.equal(s.byKind[kind] ?? 0, count(kind), `byKind.${kind}`);
  const nops = s.byKind.nop ?? 0;
  t.ok(Math.abs(s.total - all.length) <= 1 && nops <= 1, 'total agrees (the nop comes and goes)');
  t.equal(
    s.byAge.reduce((n: number, b: J) => n + b.count, 0),
    s.total,
    'the age buckets add up to the total',
  );
  t.same(
    s.byAge.map((b: J) => b.label),
    ['<10ms', '<100ms', '<1s', '<10s', '>=10s'],
    'the buckets',
  );
  t.same(s.olderThan, { ms: 0, byKind: s.byKind }, 'olderThanMs=0 counts every op');
  // Within one answer (one clock read, one pass) the buckets at and above a bound hold exactly
  // the ops olderThanMs=bound counts.
  const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
  for (const [i, bound] of [10, 100, 1_000, 10_000].entries()) {
    const a = await get(`/ops/summary?olderThanMs=${bound}&oldest=0`);
    const above = a.byAge.slice(i + 1).reduce((n: number, b: J) => n + b.count, 0);
    t.equal(sum(a.olderThan.byKind), above, `buckets from ${bound} ms on = olderThanMs=${bound}`);
  }
  t.equal(s.oldest.length, 20, '20 oldest asked, 20 listed');
  const at = (o: J) => Date.parse(o.issuedAt);
  for (let i = 1; i < s.oldest.length; i++)
    if (at(s.oldest[i]) < at(s.oldest[i - 1])) t.fail(`oldest[${i}] is younger than before it`);
  // Every op issued strictly before the youngest listed must be listed (ties may go either way).
  const cut = at(s.oldest[s.oldest.length - 1]);
  const listed = new Set(ids(s.oldest, 'record'));
  const missing = all.filter((o) => at(o) < cut && !listed.has(o.record));
  t.same(missing, [], 'no op older than those listed is left out');
  t.same(Object.keys(s.oldest[0]).sort(), Object.keys(all[0]).sort(), 'oldest: full op views');
  t.equal((await get('/ops/summary?oldest=0')).oldest.length, 0, 'oldest=0: none listed');
  t.equal((await get('/ops/summary')).oldest.length, 10, 'oldest defaults to 10');
  t.notOk('olderThan' in (await get('/ops/summary')), 'no olderThan unless asked');
});

t.test('/connections/summary agrees with /connections', async (t) => {
  const s = await get('/connections/summary?top=20');
  t.equal(s.total, N);
  t.same(s.byListener, { [la.id]: N_A, [lb.id]: N_B }, 'by listener');
  t.same(s.byState, { open: N }, 'by state');
  t.equal(s.oldest.length, 20);
  const at = (c: J) => Date.parse(c.createdAt);
  const cut = at(s.oldest[19]);
  const listed = new Set(ids(s.oldest, 'id'));
  t.same(
    conns.filter((c) => at(c) < cut && !listed.has(c.id)).map((c) => c.id),
    [],
    'no connection older than those listed is left out',
  );
  for (let i = 1; i < 20; i++)
    if (at(s.oldest[i]) < at(s.oldest[i - 1])) t.fail(`oldest[${i}] younger than before it`);
  // The BUSY clients moved distinct byte counts, more than any other: they lead, in order.
  const bytes = (c: J) => c.bytesIn + c.bytesOut;
  const top = s.busiest.slice(0, BUSY);
  t.same(
    top.map((c: J) => moved.get(tuple(c)) as number),
    [...moved.values()].sort((a, b) => b - a).slice(0, BUSY),
    'the busiest: the clients that echoed the most, most first',
  );
  t.ok(
    top.every((c: J) => bytes(c) === 2 * (moved.get(tuple(c)) as number)),
    'their bytes in + out',
  );
  t.equal((await get('/connections/summary')).oldest.length, 10, 'top defaults to 10');
});

t.test('out-of-range paging is a 400 that names the field', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['/connections?limit=1001', /limit/],
    ['/connections?offset=-1', /offset/],
    ['/keys?limit=1001', /limit/],
    ['/keys?limit=0', /limit/],
    ['/keys?offset=-1', /offset/],
    ['/ops?limit=1001', /limit/],
    ['/ops?offset=-1', /offset/],
    ['/ops?limit=abc', /limit/],
    ['/ops/summary?oldest=21', /oldest/],
    ['/ops/summary?olderThanMs=-5', /olderThanMs/],
    ['/connections/summary?top=21', /top/],
    ['/connections/summary?top=-1', /top/],
  ];
  for (const [path, field] of cases) {
    const r = await request(k.api, 'GET', path);
    t.equal(r.status, 400, `${path}: 400`);
    t.match(r.body.message, field, `${path}: the message names the field`);
  }
  const ok = await get('/keys?limit=1000&offset=0');
  t.equal(ok.limit, 1000, 'limit 1000 is allowed');
});
