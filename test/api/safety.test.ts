// The API is safe from browsers and from the network (issue 16, docs/security.md): forged Host
// (DNS rebinding), cross-origin commands, the POST /listeners policy, the loopback rule decided
// on addresses, token hygiene, the /events cap and /readyz under protect: all. Real HTTP against
// keyport started as a user does; every refused command leaves the engine as it was.

import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { parseCli } from '../../src/config/cli.js';
import { checkApiExposure, loadSettings } from '../../src/config/settings.js';
import { portOf, request } from '../helpers/http.js';
import { ROOT, startKeyport } from '../helpers/keyport.js';
import { openEvents, type SseStream } from '../helpers/sse.js';

const dir = join(ROOT, 'test-output', `safety-${process.pid}`);
mkdirSync(dir, { recursive: true });
function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return p;
}

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON the route answers
  body: any;
}

/** node:http, because fetch does not let a caller set Host (nor Sec-Fetch-*). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<Raw> {
  const u = new URL(base);
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        headers: {
          ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}),
          ...headers,
        },
        setHost: !('host' in headers),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
      },
    );
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    if (data) req.write(data);
    req.end();
  });
}

/** The listeners that exist and what they are (not their live counters, which move by themselves). */
const listenersOf = async (api: string, headers: Record<string, string> = {}) =>
  JSON.stringify(
    (await request(api, 'GET', '/listeners', undefined, headers)).body.items.map(
      (l: { id: string; mode: string; address: string; target: string | null }) => [
        l.id,
        l.mode,
        l.address,
        l.target,
      ],
    ),
  );

/** Waits until a deleted listener has left GET /listeners (30 s at most). */
async function gone(api: string, id: string): Promise<void> {
  for (const end = Date.now() + 30_000; Date.now() < end; ) {
    const items: { id: string }[] = (await request(api, 'GET', '/listeners')).body.items;
    if (!items.some((l) => l.id === id)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`listener ${id} still listed 30 s after DELETE`);
}

t.test('without a token: Host allowlist, cross-origin refusal, listener policy', async (t) => {
  const cfg = file('no-token.json', {
    api: { allowTargets: ['127.0.0.0/8', 'upstream.example:5432'] },
    listeners: [{ address: '127.0.0.1:0', mode: 'echo' }],
  });
  const k = await startKeyport(['--config', cfg]);
  t.teardown(() => k.stop());
  const apiPort = portOf(k.api);
  const before = await listenersOf(k.api);
  const echo = { address: '127.0.0.1:0', mode: 'echo' };
  const rebind = {
    address: '127.0.0.1:0',
    mode: 'forward',
    target: '169.254.169.254:80',
  };

  t.test('a foreign Host is answered 421 before routing, on every route', async (t) => {
    for (const [method, path, body] of [
      ['POST', '/listeners', rebind],
      ['GET', '/listeners', undefined],
      ['GET', '/no/such/route', undefined],
      ['DELETE', '/listeners/l1', undefined],
    ] as const) {
      const r = await raw(
        k.api,
        method,
        path,
        { host: `attacker.example:${apiPort}`, origin: `http://attacker.example:${apiPort}` },
        body,
      );
      t.equal(r.status, 421, `${method} ${path}`);
      t.match(r.body, {
        statusCode: 421,
        error: 'Misdirected Request',
        message: /attacker\.example/,
      });
      t.equal(r.headers['x-content-type-options'], 'nosniff');
      t.notOk(r.headers['access-control-allow-origin'], 'no CORS header');
    }
    for (const host of ['127.attacker.example', 'localhost.attacker.example', '10.0.0.1']) {
      t.equal((await raw(k.api, 'GET', '/healthz', { host })).status, 421, `Host ${host}`);
    }
    t.equal(await listenersOf(k.api), before, 'the engine did not change');
  });

  t.test('loopback names and literals, any port, are served', async (t) => {
    for (const host of [
      `127.0.0.1:${apiPort}`,
      '127.0.0.1',
      'localhost:1234',
      'LOCALHOST.',
      '127.9.8.7:80',
      '[::1]:9180',
    ]) {
      const r = await raw(k.api, 'GET', '/healthz', { host });
      t.equal(r.status, 200, `Host ${host}`);
      t.equal(r.headers['x-content-type-options'], 'nosniff');
      t.equal(r.headers['cache-control'], 'no-store');
    }
  });

  t.test('cross-origin commands are refused 403, the engine unchanged', async (t) => {
    const host = `127.0.0.1:${apiPort}`;
    const cases: [string, Record<string, string>, RegExp][] = [
      ['foreign Origin', { host, origin: 'http://attacker.example' }, /Origin http:\/\/attacker/],
      ['other port', { host, origin: 'http://127.0.0.1:8000' }, /not this API's origin/],
      ['Origin null', { host, origin: 'null' }, /Origin null/],
      ['cross-site', { host, 'sec-fetch-site': 'cross-site' }, /Sec-Fetch-Site: cross-site/],
      ['same-site', { host, 'sec-fetch-site': 'same-site' }, /Sec-Fetch-Site: same-site/],
    ];
    for (const [what, headers, message] of cases) {
      const post = await raw(k.api, 'POST', '/listeners', headers, echo);
      t.equal(post.status, 403, `POST, ${what}`);
      t.match(post.body, { statusCode: 403, error: 'Forbidden', message });
      const del = await raw(k.api, 'DELETE', '/listeners/l1?mode=abort', headers);
      t.equal(del.status, 403, `DELETE, ${what}`);
    }
    const noCors = await raw(k.api, 'GET', '/ops', {
      host,
      'sec-fetch-site': 'cross-site',
      'sec-fetch-mode': 'no-cors',
    });
    t.equal(noCors.status, 403, 'a cross-site no-cors GET is refused too');
    const nav = await raw(k.api, 'GET', '/healthz', {
      host,
      'sec-fetch-site': 'cross-site',
      'sec-fetch-mode': 'navigate',
    });
    t.equal(nav.status, 200, 'a top-level navigation from a link is served');
    t.equal(await listenersOf(k.api), before, 'the engine did not change');
    const same = await raw(
      k.api,
      'POST',
      '/listeners',
      { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' },
      echo,
    );
    t.equal(same.status, 201, 'the same origin (the status page) may command');
    t.equal(
      (await request(k.api, 'DELETE', `/listeners/${same.body.id}?mode=abort`)).status,
      202,
      'a client with no Origin (curl) may command',
    );
    // DELETE answers 202 before the listener is gone (its accepts are cancelled first): wait, so
    // the next subtests' "the engine did not change" compares a settled list.
    await gone(k.api, same.body.id);
  });

  t.test('without a token, listeners bind loopback only', async (t) => {
    const now = await listenersOf(k.api);
    for (const address of ['0.0.0.0:0', '[::]:0']) {
      const r = await request(k.api, 'POST', '/listeners', { address, mode: 'echo' });
      t.equal(r.status, 403, address);
      t.match(r.body.message, /without an API token, listeners may only bind loopback/);
      t.match(r.body.message, /configure a token/);
    }
    t.equal(await listenersOf(k.api), now, 'the engine did not change');
  });

  t.test("a forward to the API's own address is refused", async (t) => {
    const now = await listenersOf(k.api);
    for (const target of [`127.0.0.1:${apiPort}`, `localhost:${apiPort}`, `0.0.0.0:${apiPort}`]) {
      const r = await request(k.api, 'POST', '/listeners', {
        address: '127.0.0.1:0',
        mode: 'forward',
        target,
      });
      t.equal(r.status, 403, target);
      t.match(r.body.message, /expose the API on a data port/);
    }
    t.equal(await listenersOf(k.api), now, 'the engine did not change');
  });

  t.test('api.allowTargets names the target and the rules', async (t) => {
    const now = await listenersOf(k.api);
    const r = await request(k.api, 'POST', '/listeners', rebind);
    t.equal(r.status, 403);
    t.match(
      r.body.message,
      /169\.254\.169\.254:80 refused: it matches no rule of api\.allowTargets \(127\.0\.0\.0\/8, upstream\.example:5432\)/,
    );
    const other = await request(k.api, 'POST', '/listeners', {
      address: '127.0.0.1:0',
      mode: 'forward',
      target: 'upstream.example:5433',
    });
    t.equal(other.status, 403, 'a name rule holds for its port only');
    t.equal(await listenersOf(k.api), now, 'the engine did not change');
    for (const target of ['127.0.0.1:9', 'upstream.example:5432']) {
      const ok = await request(k.api, 'POST', '/listeners', {
        address: '127.0.0.1:0',
        mode: 'forward',
        target,
      });
      t.equal(ok.status, 201, `${target} is allowed`);
      await request(k.api, 'DELETE', `/listeners/${ok.body.id}?mode=abort`);
    }
  });

  t.test('the events cap: 40 clients against 32, the admitted ones still served', async (t) => {
    const streams: SseStream[] = [];
    t.teardown(() => {
      for (const s of streams) s.close();
    });
    for (let i = 0; i < 40; i++) streams.push(await openEvents(k.api));
    const admitted = streams.filter((s) => s.status === 200);
    const refused = streams.filter((s) => s.status === 503);
    t.equal(admitted.length, 32, '32 admitted');
    t.equal(refused.length, 8, '8 refused');
    for (const s of refused) {
      t.equal(s.headers['retry-after'], '5');
      t.match(s.headers['content-type'], /application\/json/);
    }
    const made = await request(k.api, 'POST', '/listeners', echo);
    t.equal(made.status, 201);
    await Promise.all(
      admitted.map((s) =>
        s.until((m) =>
          m.some((e) => e.event === 'listener-up' && e.data.listener === made.body.id),
        ),
      ),
    );
    t.pass('every admitted stream saw the new listener');
    await request(k.api, 'DELETE', `/listeners/${made.body.id}?mode=abort`);
    // A closed client frees its slot.
    const first = admitted[0] as SseStream;
    first.close();
    await first.ended;
    let again: SseStream | null = null;
    for (let i = 0; i < 50 && again?.status !== 200; i++) {
      again?.close();
      again = await openEvents(k.api);
      if (again.status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    t.equal(again?.status, 200, 'a closed stream frees its slot');
    again?.close();
  });
});

t.test('with a token (trailing newline trimmed), protect: all', async (t) => {
  const token = 'a-long-enough-secret-token';
  const cfg = file('token.json', { api: { protect: 'all' } });
  const k = await startKeyport(['--config', cfg, '--listener', '127.0.0.1:0=echo'], {
    env: { KEYPORT_TOKEN: `${token}\n` },
  });
  t.teardown(() => k.stop());
  const auth = { authorization: `Bearer ${token}` };
  const ready = await request(k.api, 'GET', '/readyz');
  t.ok([200, 503].includes(ready.status), `/readyz without the token: ${ready.status}, not 401`);
  t.equal((await request(k.api, 'GET', '/listeners')).status, 401, 'other reads need it');
  const wide = await request(
    k.api,
    'POST',
    '/listeners',
    { address: '0.0.0.0:0', mode: 'echo' },
    auth,
  );
  t.equal(wide.status, 201, 'with a token, a listener may bind 0.0.0.0');
  t.equal(
    (await request(k.api, 'DELETE', `/listeners/${wide.body.id}?mode=abort`, undefined, auth))
      .status,
    202,
  );
  const self = await request(
    k.api,
    'POST',
    '/listeners',
    { address: '127.0.0.1:0', mode: 'forward', target: `127.0.0.1:${portOf(k.api)}` },
    auth,
  );
  t.equal(self.status, 403, "a forward to the API's own address is refused even with a token");
});

t.test('start-up refusals', async (t) => {
  await t.rejects(
    startKeyport(['--api', '127.attacker.example:9180', '--listener', '127.0.0.1:0=echo']),
    /exited \(2\)[\s\S]*--api: refusing to serve the API on 127\.attacker\.example:9180 without a token/,
    'a name that starts with 127. is not loopback',
  );
  await t.rejects(
    startKeyport(['--listener', '127.0.0.1:0=echo'], {
      env: { KEYPORT_TOKEN: 'a-long enough-secret-token' },
    }),
    /exited \(2\)[\s\S]*KEYPORT_TOKEN: the token must be visible ASCII/,
    'a token with an inner space',
  );
  await t.rejects(
    startKeyport(['--listener', '127.0.0.1:0=echo'], { env: { KEYPORT_TOKEN: ' short-token \n' } }),
    /exited \(2\)[\s\S]*KEYPORT_TOKEN: the token must be at least 16 characters/,
    'a short token',
  );
  const tabbed = file('tab.token', 'a-long-enough\tsecret-token\n');
  await t.rejects(
    startKeyport(['--listener', '127.0.0.1:0=echo'], { env: { KEYPORT_TOKEN_FILE: tabbed } }),
    /exited \(2\)[\s\S]*KEYPORT_TOKEN_FILE .*tab\.token: the token must be visible ASCII/,
    'a token file with an inner tab',
  );
});

t.test('the loopback rule is decided on the addresses a name resolves to', async (t) => {
  const settings = (api: string) => loadSettings(parseCli(['--api', api]), {});
  const resolver = (table: Record<string, string[]>) => async (host: string) => {
    const a = table[host];
    if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return a;
  };
  const r = resolver({
    'admin.example': ['127.0.0.1', '192.0.2.7'],
    'loop.example': ['127.0.0.1', '::1'],
  });
  await t.rejects(
    checkApiExposure(settings('admin.example:9180'), r),
    /--api: .*admin\.example resolves to 192\.0\.2\.7, which is not loopback/,
  );
  await t.rejects(
    checkApiExposure(settings('127.attacker.example:9180'), r),
    /cannot be resolved \(ENOTFOUND\)/,
  );
  await t.resolves(checkApiExposure(settings('loop.example:9180'), r), 'all loopback: served');
  await t.resolves(checkApiExposure(settings('127.0.0.2:9180'), r));
  await t.resolves(checkApiExposure(settings('[::1]:9180'), r));
  await t.rejects(checkApiExposure(settings('[::ffff:10.0.0.1]:9180'), r));
});
