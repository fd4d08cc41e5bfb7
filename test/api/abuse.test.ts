// API abuse: 1000 schema-guided random and malformed requests (seeded, so a failure can be
// replayed) never get a 5xx and never interrupt the data plane; a client that trickles its
// request is cut off at the request timeout without holding the API hostage.
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { connect, readBytes } from '../helpers/tcp.js';

const TOKEN = 'fuzzing-token-0123456789';
const cfg = join(OUT_DIR, `abuse-${process.pid}.json`);
writeFileSync(
  cfg,
  JSON.stringify({
    api: { requestTimeoutMs: 1500 },
    listeners: [{ address: '127.0.0.1:0', mode: 'echo' }],
  }),
);
const k = await startKeyport(['--config', cfg], { env: { KEYPORT_TOKEN: TOKEN } });
t.teardown(() => k.stop());
const port = portOf((await request(k.api, 'GET', '/listeners')).body.items[0].address);

// A small seeded PRNG (mulberry32): the same seed gives the same 1000 requests.
const SEED = Number(process.env.KEYPORT_FUZZ_SEED ?? 20261125);
let state = SEED >>> 0;
function rnd(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let x = state;
  x = Math.imul(x ^ (x >>> 15), x | 1);
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

const junkStrings = [
  '',
  ' ',
  '0',
  '-1',
  '1e309',
  'null',
  'true',
  '[]',
  '{}',
  '%00',
  '../../etc',
  'ł😀',
  'x'.repeat(300),
  '127.0.0.1:',
  ':80',
  '[::1',
  '0x',
  'NaN',
  'l',
  'c',
  '\u0000',
];
function junkValue(depth = 0): unknown {
  switch (Math.floor(rnd() * (depth > 2 ? 5 : 8))) {
    case 0:
      return pick(junkStrings);
    case 1:
      return Math.floor((rnd() - 0.5) * 2 ** (rnd() * 64));
    case 2:
      return rnd() < 0.5;
    case 3:
      return null;
    case 4:
      return rnd() * 1e6;
    case 5:
      return Array.from({ length: Math.floor(rnd() * 4) }, () => junkValue(depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(rnd() * 4); i > 0; i--) {
        const key = pick([
          'address',
          'mode',
          'target',
          'acceptDepth',
          'maxConnections',
          'idleTimeoutMs',
          'x',
          '__proto__',
          'constructor',
        ]);
        // defineProperty: a literal "__proto__" key travels in the JSON instead of changing o's prototype.
        Object.defineProperty(o, key, {
          value: junkValue(depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return o;
    }
  }
}
/** An id that is never one of keyport's real ids (l1, c12 …), so no request hits real state. */
const junkId = () =>
  encodeURIComponent(`z${String(pick(junkStrings)).slice(0, 40)}${Math.floor(rnd() * 1000)}`);

interface Spec {
  paths: Record<string, Record<string, { parameters?: Array<{ in: string; name: string }> }>>;
}
const spec = (await request(k.api, 'GET', '/openapi.json')).body as Spec;

function randomRequest(): {
  method: string;
  path: string;
  body?: unknown;
  headers: Record<string, string>;
} {
  // Streams (GET /events) never end by design: they are tested on their own.
  const route = pick(Object.keys(spec.paths).filter((p) => p !== '/events'));
  const methods = Object.keys(spec.paths[route] ?? {});
  const method =
    rnd() < 0.9 ? pick(methods).toUpperCase() : pick(['PUT', 'PATCH', 'OPTIONS', 'POST', 'DELETE']);
  let path = route.replace(/\{[^}]+\}/g, () =>
    rnd() < 0.3 ? `0x${Math.floor(rnd() * 1e9).toString(16)}` : junkId(),
  );
  const query = (spec.paths[route]?.[method.toLowerCase()]?.parameters ?? []).filter(
    (p) => p.in === 'query',
  );
  const qs = [...query.map((q) => q.name), 'bogus']
    .filter(() => rnd() < 0.5)
    .map((name) => `${name}=${encodeURIComponent(JSON.stringify(junkValue(2)) ?? '')}`);
  if (qs.length) path += `?${qs.join('&')}`;
  const headers: Record<string, string> = {};
  // Header values must be printable Latin-1, or fetch refuses to send them.
  const printable = (v: string) => v.replace(/[^\x20-\x7e]/g, '?');
  if (rnd() < 0.6)
    headers.authorization =
      rnd() < 0.8 ? `Bearer ${TOKEN}` : `Bearer ${printable(pick(junkStrings))}x`;
  const canHaveBody = method !== 'GET' && method !== 'HEAD';
  const body =
    canHaveBody && (method === 'POST' || rnd() < 0.3)
      ? rnd() < 0.15
        ? '{"unterminated": '
        : junkValue()
      : undefined;
  if (body !== undefined && rnd() < 0.1)
    headers['content-type'] = pick([
      'text/plain',
      'application/xml',
      'application/json; charset=utf-16',
      'multipart/form-data',
    ]);
  return { method, path, body, headers };
}

t.test('1000 random and malformed requests: no 5xx, the data plane uninterrupted', async (t) => {
  const s = await connect(port);
  const statuses = new Map<number, number>();
  const fiveXX: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const r = randomRequest();
    const reply = await request(k.api, r.method, r.path, r.body, r.headers, 10_000).catch(
      (e: Error) => ({ status: -1, body: e.message }),
    );
    statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
    if (reply.status >= 500 || reply.status < 0)
      fiveXX.push(
        `#${i} ${r.method} ${r.path} ${JSON.stringify(r.body)?.slice(0, 200)} → ${reply.status} ${JSON.stringify(reply.body).slice(0, 200)}`,
      );
    if (i % 50 === 0) {
      s.write(`tick${i}`);
      const want = `tick${i}`;
      if ((await readBytes(s, want.length)).toString() !== want)
        t.fail(`the data plane broke at request ${i}`);
    }
  }
  t.same(
    fiveXX,
    [],
    `no 5xx (seed ${SEED}); statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
  );
  t.ok(statuses.size > 3, 'the fuzzer reached several kinds of answer');
  s.write('still');
  t.equal(
    (await readBytes(s, 5)).toString(),
    'still',
    'the connection made before the storm still echoes',
  );
  s.end();
  t.equal((await request(k.api, 'GET', '/healthz')).status, 200);
});

t.test(
  'a client that trickles its request is cut off; the API keeps answering others',
  async (t) => {
    const slow = net.connect({ port: portOf(k.api.replace('http://', '')), host: '127.0.0.1' });
    slow.on('error', () => {});
    await new Promise((r) => slow.once('connect', r));
    slow.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => slow.writable && slow.write('X'), 200);
    const started = Date.now();
    const fast = await request(k.api, 'GET', '/healthz');
    t.equal(fast.status, 200, 'another client is answered meanwhile');
    await new Promise((r) => slow.once('close', r));
    clearInterval(trickle);
    const held = Date.now() - started;
    t.ok(
      held < 6000,
      `the trickling client was cut off after ${held} ms (request timeout 1500 ms)`,
    );
  },
);
