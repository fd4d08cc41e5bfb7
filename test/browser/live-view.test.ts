// The status page at / in a real browser (Debian's headless Chromium driven by playwright-core)
// against a real engine with real TCP traffic: the connections and their keys as /connections
// has them, the op table following clients that come and go, the latency chart drawing, a
// connection's trace, and the command buttons acting on real sockets. Then the token: read-only
// until one is entered, and a page that asks for it when every read needs it. Screenshots go to
// test-output/ for a person to look at.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { BACKEND, ERR, type Keyport, ROOT, startKeyport } from '../helpers/keyport.js';
import { closed, connect, readBytes, until } from '../helpers/tcp.js';

const CHROMIUM = '/usr/bin/chromium';
const OUT = join(ROOT, 'test-output');
const TOKEN = 'live-view-token-0123456789';

if (!existsSync(CHROMIUM)) {
  t.fail(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  process.exit(1);
}

const dir = join(OUT, `live-view-${process.pid}`);
mkdirSync(dir, { recursive: true });
const allCfg = join(dir, 'protect-all.json');
writeFileSync(allCfg, JSON.stringify({ api: { protect: 'all' } }));

// Three engines, started side by side: no token; a token for commands; a token for everything.
const [k, kCmd, kAll] = await Promise.all([
  startKeyport(['--listener', '127.0.0.1:0=echo']),
  startKeyport(['--listener', '127.0.0.1:0=echo'], { env: { KEYPORT_TOKEN: TOKEN } }),
  startKeyport(['--config', allCfg, '--listener', '127.0.0.1:0=echo'], {
    env: { KEYPORT_TOKEN: TOKEN },
  }),
]);
t.teardown(() => Promise.all([k.stop(), kCmd.stop(), kAll.stop()]));

const userData = mkdtempSync(join(tmpdir(), 'keyport-chromium-'));
const ctx: BrowserContext = await chromium.launchPersistentContext(userData, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1440, height: 900 },
});
t.teardown(async () => {
  await ctx.close();
  rmSync(userData, { recursive: true, force: true });
});

const sockets: net.Socket[] = [];
t.teardown(() => {
  for (const s of sockets) s.destroy();
});

async function client(kp: Keyport): Promise<{ s: net.Socket; id: string; key: string }> {
  const auth = kp === kAll ? { authorization: `Bearer ${TOKEN}` } : {};
  const l = (await request(kp.api, 'GET', '/listeners', undefined, auth)).body as {
    items: Array<{ address: string }>;
  };
  const s = await connect(portOf(l.items[0]?.address as string));
  s.on('error', () => {});
  sockets.push(s);
  s.write('hello');
  await readBytes(s, 5);
  const r = await until(
    () => request(kp.api, 'GET', '/connections?limit=1000', undefined, auth),
    (r) => r.body.items.some((c: { remote: string }) => c.remote === `127.0.0.1:${s.localPort}`),
  );
  const c = r.body.items.find((c: { remote: string }) => c.remote === `127.0.0.1:${s.localPort}`);
  return { s, id: c.id, key: c.key };
}

async function open(
  kp: Keyport,
): Promise<{ page: Page; errors: string[]; foreign: string[]; asked: string[] }> {
  const page = await ctx.newPage();
  const errors: string[] = [];
  const foreign: string[] = [];
  const asked: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => {
    if (!r.url().startsWith(`${kp.api}/`) && !r.url().startsWith('data:')) foreign.push(r.url());
    else asked.push(r.url().slice(kp.api.length));
  });
  await page.goto(`${kp.api}/`);
  return { page, errors, foreign, asked };
}

async function shot(page: Page, name: string): Promise<void> {
  await page.evaluate(() => window.scrollTo(0, 0));

  await page.screenshot({ path: join(OUT, `live-view-${name}-${BACKEND}.png`), fullPage: true });
}

/** Command buttons ask for a second click: the first one arms them. */
async function confirmClick(page: Page, selector: string): Promise<void> {
  await page.click(selector);
  await page.click(`${selector}.armed`);
}

const rowsOf = (page: Page) =>
  page.$$eval('#connections tbody tr[data-id]', (trs) =>
    trs.map((tr) => ({
      id: (tr as HTMLElement).dataset.id,
      key: tr.querySelector('td.key')?.textContent,
    })),
  );

// ---- the open engine: traffic, tables, chart, trace, commands ------------------------------

const { page, errors, foreign, asked } = await open(k);
const busy = [await client(k), await client(k)];
const idle = await client(k);
// Steady traffic on two connections, so the latency chart has something to draw.
const traffic = setInterval(() => {
  for (const c of busy) c.s.write(Buffer.alloc(2000, 97));
}, 100);
for (const c of busy) c.s.on('data', () => {});
t.teardown(() => clearInterval(traffic));

t.test(
  'the page shows the live connections and their keys, as /connections has them',
  async (t) => {
    await page.waitForFunction(
      () => document.querySelectorAll('#connections tr[data-id]').length === 3,
    );
    const api = (await k.get('/connections')).body as { items: Array<{ id: string; key: string }> };
    const byId = (a: { id?: string }, b: { id?: string }) =>
      String(a.id).localeCompare(String(b.id));
    t.same(
      (await rowsOf(page)).sort(byId),
      api.items.map((c) => ({ id: c.id, key: c.key })).sort(byId),
      'the same ids with the same completion keys',
    );
    for (const c of [...busy, idle]) {
      t.match(
        await page.textContent(`#keys tr[data-key="${c.key}"]`),
        `${c.id} client`,
        `the key table has ${c.key} owned by ${c.id}`,
      );
    }
    const l = ((await k.get('/listeners')).body as { items: Array<{ id: string; key: string }> })
      .items[0];
    t.equal(
      await page.textContent(`#listeners tr[data-id="${l?.id}"] td.key`),
      l?.key,
      'the listener row shows the key every AcceptEx completes with',
    );
    t.equal(await page.textContent('#t-connections'), '3', 'the summary counts them');
    await page.waitForFunction(() => document.querySelector('#live')?.textContent === 'live');
    t.pass('the event stream is live');
  },
);

t.test('the op table changes when a client connects and leaves', async (t) => {
  const recvRow = (key: string) => `#ops tr[data-key="${key}"][data-op="recv"]`;
  const c = await client(k);
  await page.waitForSelector(recvRow(c.key));
  t.pass(`a pending recv on ${c.key} appeared`);
  await page.waitForSelector(`#events li[data-type="connection-opened"][data-conn="${c.id}"]`);
  t.pass('the event feed shows it opened');
  c.s.end();
  await page.waitForSelector(recvRow(c.key), { state: 'detached' });
  await page.waitForSelector(`#connections tr[data-id="${c.id}"]`, { state: 'detached' });
  await page.waitForSelector(`#events li[data-type="connection-closed"][data-conn="${c.id}"]`);
  t.pass('its recv, its row and its key went, and the feed shows it closed');
  t.equal(await page.$(`#keys tr[data-key="${c.key}"]`), null, 'its key left the key table');
});

t.test('the latency chart draws from the /metrics histograms', async (t) => {
  // Points of both lines together: 6 make lines long enough to count (with 3, CI once saw a
  // send/recv line of 49 pixels, under the 50 asserted below).
  await page.waitForFunction(
    () => Number(document.querySelector('#chart')?.getAttribute('data-points')) >= 6,
    undefined,
    { timeout: 30_000 },
  );
  // Pixels in the colours of the send and recv lines (the grid is grey).
  const coloured = await page.evaluate(() => {
    const canvas = document.querySelector('#chart canvas') as HTMLCanvasElement;
    const d = canvas.getContext('2d')?.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; d && i < d.length; i += 4) {
      const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]] as number[];
      const near = (x: number, y: number, z: number) =>
        Math.abs(r - x) + Math.abs(g - y) + Math.abs(b - z) < 60;
      if (a > 200 && (near(22, 163, 74) || near(37, 99, 235))) n++;
    }
    return n;
  });
  t.ok(coloured > 50, `the send/recv lines are drawn (${coloured} pixels)`);
  const p99 = await page.textContent('#latency tr[data-op="send"] td:nth-child(5)');
  t.match(p99, /\d+(\.\d+)? (µs|ms|s)$/, `send p99 over the last 10 s: ${p99}`);
  const total = Number(await page.textContent('#latency tr[data-op="send"] td:nth-child(6)'));
  t.ok(total > 10, `sends completed: ${total}`);
  await shot(page, 'overview');
});

t.test('clicking a connection shows its completion trace', async (t) => {
  await page.click(`#connections tr[data-id="${idle.id}"] td.id`);
  await page.waitForFunction(
    (id) => document.querySelector('#trace-title')?.textContent === id,
    idle.id,
  );
  await page.waitForSelector('#trace-table tbody tr td .badge');
  const detail = (await k.get(`/connections/${idle.id}`)).body as {
    trace: Array<{ record: string; op: string; status: string }>;
  };
  const shown = await page.$$eval('#trace-table tbody tr', (trs) =>
    trs.map((tr) => tr.lastElementChild?.textContent),
  );
  t.same(
    shown.sort(),
    detail.trace.map((e) => e.record).sort(),
    'the OVERLAPPED records of its completions, as /connections/{id} has them',
  );
  t.match(await page.textContent('#trace'), idle.key, 'with its key');
  t.match(await page.textContent('#trace-table'), /recv[\s\S]*SUCCESS/);
  t.ok(
    await page.$(`#connections tr.selected[data-id="${idle.id}"]`),
    'the row is marked selected',
  );
  t.ok(await page.$(`#keys tr.selected[data-key="${idle.key}"]`), 'and so is its key');
  await shot(page, 'trace');
});

t.test('connections sort by column and filter by text', async (t) => {
  await page.fill('#conn-filter', idle.key);
  await page.waitForFunction(
    () => document.querySelectorAll('#connections tr[data-id]').length === 1,
  );
  t.same(
    (await rowsOf(page)).map((r) => r.id),
    [idle.id],
    'filtering by key leaves its connection',
  );
  await page.fill('#conn-filter', '');
  await page.waitForFunction(
    () => document.querySelectorAll('#connections tr[data-id]').length === 3,
  );
  await page.click('#connections th[data-sort="bytesIn"]');
  const first = (await rowsOf(page))[0]?.id;
  t.not(first, idle.id, 'sorted by bytes in, the idle connection is not first');
  await page.click('#connections th[data-sort="id"]');
  await page.click('#connections th[data-sort="id"]');
  const ids = (await rowsOf(page)).map((r) => Number(r.id?.slice(1)));
  t.same(
    ids,
    [...ids].sort((a, b) => b - a),
    'sorted by id, descending on the second click',
  );
  await page.click('#connections th[data-sort="id"]');
});

t.test('the command buttons act on real sockets', async (t) => {
  const a = await client(k);
  const aClosed = closed(a.s);
  await confirmClick(page, `#connections tr[data-id="${a.id}"] button[data-cmd="conn-close"]`);
  t.same(await aClosed, { how: 'end' }, 'Close: the client got EOF');
  await page.waitForSelector('.toast >> text=closed gracefully');

  const b = await client(k);
  const bClosed = closed(b.s);
  await confirmClick(page, `#connections tr[data-id="${b.id}"] button[data-cmd="conn-abort"]`);
  t.same(await bClosed, { how: 'error', code: 'ECONNRESET' }, 'Abort: the client got RST');

  const c = await client(k);
  const cClosed = closed(c.s);
  const recv = (await k.get(`/ops?connection=${c.id}`)).body as {
    items: Array<{ record: string }>;
  };
  const record = recv.items[0]?.record as string;
  await page.waitForSelector(`#ops tr[data-record="${record}"]`);
  await confirmClick(page, `#ops tr[data-record="${record}"] button[data-cmd="op-cancel"]`);
  await page.waitForSelector(`.toast >> text=${ERR.aborted}`);
  t.pass(`Cancel: the recv ${record} completed with ${ERR.aborted}`);
  await cClosed;
  t.pass('and a cancelled read ends its connection');
  await page.waitForSelector(`#events li[data-type="op-cancelled"]`);

  const l2 = await request(k.api, 'POST', '/listeners', { address: '127.0.0.1:0', mode: 'echo' });
  t.equal(l2.status, 201);
  await page.waitForSelector(`#listeners tr[data-id="${l2.body.id}"]`);
  await confirmClick(
    page,
    `#listeners tr[data-id="${l2.body.id}"] button[data-cmd="listener-drain"]`,
  );
  await until(
    () => k.get(`/listeners/${l2.body.id}`),
    (r) => r.status === 404,
  );
  t.equal((await k.get(`/listeners/${l2.body.id}`)).status, 404, 'Drain: the listener went');
  await page.waitForSelector(`#listeners tr[data-id="${l2.body.id}"]`, { state: 'detached' });
  await page.waitForSelector(`#events li[data-type="listener-down"]`);
  t.pass('and left the page');
});

t.test('a send that cannot complete is highlighted as stuck', async (t) => {
  // A client that sends and never reads: the echo's send back to it stays pending once the
  // socket buffers are full.
  const c = await client(k);
  c.s.pause();
  const chunk = Buffer.alloc(256 * 1024, 120);
  const sendRow = `#ops tr[data-key="${c.key}"][data-op="send"]`;
  const pump = setInterval(() => {
    if (c.s.writableLength < 4 * 1024 * 1024) c.s.write(chunk);
  }, 20);
  t.teardown(() => clearInterval(pump));
  await page.waitForSelector(sendRow, { timeout: 30_000 });
  await page.fill('#stuck-ms', '500');
  await page.waitForSelector(`${sendRow}.stuck`, { timeout: 30_000 });
  t.pass('its pending send is marked stuck past the threshold');
  t.match(await page.textContent(`${sendRow}`), /stuck/);
  t.ok(await page.$('.tile.alert #t-stuck'), 'the stuck-ops tile turns red');
  await shot(page, 'stuck');
  clearInterval(pump);
  c.s.destroy();
  await page.waitForSelector(sendRow, { state: 'detached' });
  await page.fill('#stuck-ms', '5000');
  t.notOk(await page.$('.tile.alert #t-stuck'), 'and back to normal when it went');
});

t.test('the page loaded nothing from elsewhere and threw nothing', async (t) => {
  t.same(foreign, [], 'every request went to keyport itself');
  // Issue 15: a poll costs one bounded page per table, never a whole collection.
  const views = asked.filter((u) => /^\/(connections|keys|ops)(\?|$)/.test(u));
  t.ok(views.length > 0, 'it polled the tables');
  const unbounded = views.filter((u) => {
    const limit = Number(new URL(u, 'http://x').searchParams.get('limit'));
    return !(limit >= 1 && limit <= 100);
  });
  t.same(unbounded, [], 'every table poll asks for a page of at most 100');
  t.ok(
    asked.some((u) => u.startsWith('/ops/summary?')),
    'the op counts come from /ops/summary',
  );
  t.same(errors, [], 'no page errors');
  await page.close();
});

// The page's script is browser ES modules: main.js and what it imports, each fetched as /ui/<name>
// and served only if src/api/ui/routes.ts lists it. Followed here from index.html through every
// import, as the browser does, so a module left out of the list fails here by name.
t.test('every asset the page names and every module it imports is served', async (t) => {
  const html = (await request(k.api, 'GET', '/')).body as string;
  const named = [...html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="(\/ui\/[^"]+)"/g)].map(
    (m) => m[1] as string,
  );
  t.ok(named.includes('/ui/main.js'), 'index.html loads the entry, /ui/main.js');
  t.match(html, /<script type="module" src="\/ui\/main.js"><\/script>/, 'as a module');
  for (const path of named.filter((p) => !p.endsWith('.js'))) {
    const r = await request(k.api, 'GET', path);
    t.equal(r.status, 200, `${path}: 200`);
  }
  const modules = new Set<string>();
  const todo = named.filter((p) => p.endsWith('.js'));
  while (todo.length) {
    const path = todo.shift() as string;
    if (modules.has(path)) continue;
    modules.add(path);
    const r = await request(k.api, 'GET', path);
    t.equal(r.status, 200, `${path}: 200`);
    t.match(r.headers.get('content-type'), /^text\/javascript\b/, `${path}: JavaScript`);
    t.equal(r.headers.get('x-content-type-options'), 'nosniff', `${path}: nosniff`);
    const text = typeof r.body === 'string' ? r.body : '';
    for (const m of text.matchAll(/^\s*(?:import|export)\b[^'";]*?['"](\.{1,2}\/[^'"]+)['"]/gm))
      todo.push(new URL(m[1] as string, `http://x${path}`).pathname);
  }
  const files = readdirSync(join(ROOT, 'src/api/ui/page')).filter((f) => f.endsWith('.js'));
  t.ok(files.length > 1, `the page's script is ${files.length} modules`);
  for (const f of files)
    t.ok(modules.has(`/ui/${f}`), `src/api/ui/page/${f} is reached from main.js`);
  for (const path of modules) t.ok(asked.includes(path), `the browser loaded ${path}`);

  const get = (path: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const u = new URL(k.api);
      http
        .get({ host: u.hostname, port: u.port, path }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        })
        .on('error', reject);
    });
  // Sent as written (fetch would resolve the dots): no path from the request reaches the disk.
  for (const path of [
    '/ui/nothing.js',
    '/ui/app.js',
    '/ui/index.html',
    '/ui/../package.json',
    '/ui/..%2Fpackage.json',
    '/ui/%2e%2e%2fpackage.json',
    '/ui/..%2Fui%2Fmain.js',
    '/ui/main.js%00',
  ]) {
    const r = await get(path);
    t.equal(r.status, 404, `${path}: 404`);
    t.notMatch(r.text, /devDependencies|import \{/, `${path}: no file's content`);
  }
});

// ---- tokens --------------------------------------------------------------------------------

t.test('with a token for commands: read-only until the right token is entered', async (t) => {
  const c = await client(kCmd);
  const { page } = await open(kCmd);
  t.teardown(() => page.close());
  const close = `#connections tr[data-id="${c.id}"] button[data-cmd="conn-close"]`;
  await page.waitForSelector(close);
  t.equal(await page.textContent('#mode'), 'read-only');
  t.ok(await page.isDisabled(close), 'the command buttons are disabled without a token');
  t.ok(await page.isDisabled('#listeners button[data-cmd="listener-drain"]'));
  await shot(page, 'read-only');

  await page.fill('#token', 'not-the-token-at-all-000');
  await page.press('#token', 'Enter');
  await page.waitForSelector(`${close}:not([disabled])`);
  await confirmClick(page, close);
  await page.waitForFunction(
    () => document.querySelector('#mode')?.textContent === 'token refused',
  );
  t.pass('a wrong token: keyport answers 401 and the page says so');
  t.ok(await page.isDisabled(close), 'the buttons are disabled again');
  t.equal(c.s.destroyed, false, 'the connection is untouched');

  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForFunction(
    () => document.querySelector('#mode')?.textContent === 'commands enabled',
  );
  const cClosed = closed(c.s);
  await confirmClick(page, close);
  t.same(await cClosed, { how: 'end' }, 'the right token: Close works');
});

t.test('with every read protected: the page asks for the token, then shows all', async (t) => {
  const { page } = await open(kAll);
  t.teardown(() => page.close());
  await page.waitForSelector('#banner:not([hidden])');
  t.match(await page.textContent('#banner'), /needs the API token/);
  await page.waitForFunction(() =>
    /token needed/.test(document.querySelector('#live')?.textContent ?? ''),
  );
  t.equal(await page.$$eval('#connections tr[data-id]', (r) => r.length), 0, 'nothing is shown');
  await shot(page, 'locked');

  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#banner', { state: 'hidden' });
  await page.waitForFunction(() => document.querySelector('#live')?.textContent === 'live');
  const c = await client(kAll);
  await page.waitForSelector(`#connections tr[data-id="${c.id}"]`);
  await page.waitForSelector(`#events li[data-type="connection-opened"][data-conn="${c.id}"]`);
  t.pass('with the token: tables, and the event stream (fetched with the token) live');
  const cClosed = closed(c.s);
  await confirmClick(page, `#connections tr[data-id="${c.id}"] button[data-cmd="conn-abort"]`);
  t.same(await cClosed, { how: 'error', code: 'ECONNRESET' }, 'and commands work');
});
