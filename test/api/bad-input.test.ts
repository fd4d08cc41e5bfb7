// A table of bad requests: each gets the right 4xx with the offending field named, never a
// 5xx, and traffic on an existing connection carries on untouched.
import t from 'tap';
import { request } from '../helpers/http.js';
import { startKeyport } from '../helpers/keyport.js';
import { connect, readBytes } from '../helpers/tcp.js';

const TOKEN = 'correct-horse-battery-staple-42';
const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], { env: { KEYPORT_TOKEN: TOKEN } });
t.teardown(() => k.stop());
const auth = { authorization: `Bearer ${TOKEN}` };
const listener = (await request(k.api, 'GET', '/listeners')).body.items[0] as {
  id: string;
  address: string;
};
const port = Number(listener.address.split(':').pop());

type Case = [string, string, string, unknown, number, RegExp, Record<string, string>?];
const big = 'x'.repeat(64 * 1024);
const cases: Case[] = [
  // method, path, description, body, status, message pattern, headers (default: with token)
  ['POST', '/listeners', 'empty body', undefined, 400, /body/],
  ['POST', '/listeners', 'not JSON', '{nope', 400, /JSON|body/],
  ['POST', '/listeners', 'array body', [], 400, /body/],
  ['POST', '/listeners', 'missing mode', { address: '127.0.0.1:0' }, 400, /mode/],
  ['POST', '/listeners', 'missing address', { mode: 'echo' }, 400, /address/],
  [
    'POST',
    '/listeners',
    'unknown field',
    { address: '127.0.0.1:0', mode: 'echo', colour: 'red' },
    400,
    /body\/colour: unknown field/,
  ],
  ['POST', '/listeners', 'bad mode', { address: '127.0.0.1:0', mode: 'proxy' }, 400, /mode/],
  ['POST', '/listeners', 'address a number', { address: 7007, mode: 'echo' }, 400, /address/],
  [
    'POST',
    '/listeners',
    'address without port',
    { address: '127.0.0.1', mode: 'echo' },
    400,
    /body\/address: .*missing port/,
  ],
  [
    'POST',
    '/listeners',
    'port out of range',
    { address: '127.0.0.1:70000', mode: 'echo' },
    400,
    /body\/address: .*70000/,
  ],
  [
    'POST',
    '/listeners',
    'negative port',
    { address: '127.0.0.1:-1', mode: 'echo' },
    400,
    /body\/address/,
  ],
  [
    'POST',
    '/listeners',
    'unbracketed IPv6',
    { address: '::1:7007', mode: 'echo' },
    400,
    /body\/address: .*bracket/,
  ],
  [
    'POST',
    '/listeners',
    'bracketed IPv4',
    { address: '[127.0.0.1]:7007', mode: 'echo' },
    400,
    /body\/address/,
  ],
  [
    'POST',
    '/listeners',
    'bad IPv6',
    { address: '[::zz]:7007', mode: 'echo' },
    400,
    /body\/address/,
  ],
  [
    'POST',
    '/listeners',
    'forward without target',
    { address: '127.0.0.1:0', mode: 'forward' },
    400,
    /body\/target/,
  ],
  [
    'POST',
    '/listeners',
    'echo with target',
    { address: '127.0.0.1:0', mode: 'echo', target: '127.0.0.1:9' },
    400,
    /body\/target/,
  ],
  [
    'POST',
    '/listeners',
    'target port 0',
    { address: '127.0.0.1:0', mode: 'forward', target: '127.0.0.1:0' },
    400,
    /body\/target/,
  ],
  [
    'POST',
    '/listeners',
    'target no port',
    { address: '127.0.0.1:0', mode: 'forward', target: 'example' },
    400,
    /body\/target/,
  ],
  [
    'POST',
    '/listeners',
    'acceptDepth 0',
    { address: '127.0.0.1:0', mode: 'echo', acceptDepth: 0 },
    400,
    /acceptDepth/,
  ],
  [
    'POST',
    '/listeners',
    'acceptDepth huge',
    { address: '127.0.0.1:0', mode: 'echo', acceptDepth: 100000 },
    400,
    /acceptDepth/,
  ],
  [
    'POST',
    '/listeners',
    'acceptDepth string',
    { address: '127.0.0.1:0', mode: 'echo', acceptDepth: 'many' },
    400,
    /acceptDepth/,
  ],
  [
    'POST',
    '/listeners',
    'acceptDepth float',
    { address: '127.0.0.1:0', mode: 'echo', acceptDepth: 1.5 },
    400,
    /acceptDepth/,
  ],
  [
    'POST',
    '/listeners',
    'maxConnections 0',
    { address: '127.0.0.1:0', mode: 'echo', maxConnections: 0 },
    400,
    /maxConnections/,
  ],
  [
    'POST',
    '/listeners',
    'idleTimeoutMs negative',
    { address: '127.0.0.1:0', mode: 'echo', idleTimeoutMs: -5 },
    400,
    /idleTimeoutMs/,
  ],
  [
    'POST',
    '/listeners',
    'connectTimeoutMs null',
    { address: '127.0.0.1:0', mode: 'forward', target: 'a:1', connectTimeoutMs: null },
    400,
    /connectTimeoutMs/,
  ],
  [
    'POST',
    '/listeners',
    'address too long',
    { address: `${'a'.repeat(400)}:1`, mode: 'echo' },
    400,
    /address/,
  ],
  [
    'POST',
    '/listeners',
    'huge body',
    { address: '127.0.0.1:0', mode: 'echo', pad: big },
    413,
    /body|large|limit/i,
  ],
  [
    'POST',
    '/listeners',
    'text/plain body',
    'address=1',
    400,
    /body must be object/,
    { ...auth, 'content-type': 'text/plain' },
  ],
  [
    'POST',
    '/listeners',
    'unknown content type',
    'address=1',
    415,
    /content-type/i,
    { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
  ],
  ['POST', '/listeners', 'no token', { address: '127.0.0.1:0', mode: 'echo' }, 401, /Bearer/, {}],
  [
    'POST',
    '/listeners',
    'wrong token',
    { address: '127.0.0.1:0', mode: 'echo' },
    401,
    /not valid/,
    { authorization: 'Bearer wrong-token-wrong-token' },
  ],
  [
    'POST',
    '/listeners',
    'basic auth',
    { address: '127.0.0.1:0', mode: 'echo' },
    401,
    /Bearer/,
    { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
  ],
  ['DELETE', '/listeners/l999', 'unknown listener', undefined, 404, /l999/],
  ['DELETE', `/listeners/${listener.id}?mode=explode`, 'bad drain mode', undefined, 400, /mode/],
  [
    'DELETE',
    `/listeners/${listener.id}?deadlineMs=-1`,
    'negative deadline',
    undefined,
    400,
    /deadlineMs/,
  ],
  [
    'DELETE',
    `/listeners/${listener.id}?foo=1`,
    'unknown query field',
    undefined,
    400,
    /querystring\/foo: unknown field/,
  ],
  ['DELETE', `/listeners/${listener.id}`, 'delete without token', undefined, 401, /Bearer/, {}],
  ['DELETE', '/connections/c999999', 'unknown connection', undefined, 404, /c999999/],
  ['DELETE', '/connections/c1?mode=maybe', 'bad close mode', undefined, 400, /mode/],
  ['DELETE', '/ops/banana', 'record not hex', undefined, 400, /record/],
  ['DELETE', '/ops/0x1234', 'record not in flight', undefined, 404, /0x1234/],
  ['DELETE', '/ops/0x11111111111111111', 'record too long', undefined, 400, /record/],
  ['GET', '/connections?limit=0', 'limit 0', undefined, 400, /limit/],
  ['GET', '/connections?limit=100000', 'limit too big', undefined, 400, /limit/],
  ['GET', '/connections?offset=-1', 'negative offset', undefined, 400, /offset/],
  ['GET', '/connections?state=sleeping', 'unknown state', undefined, 400, /state/],
  [
    'GET',
    '/connections?sort=age',
    'unknown filter',
    undefined,
    400,
    /querystring\/sort: unknown field/,
  ],
  ['GET', '/ops?kind=read', 'unknown op kind', undefined, 400, /kind/],
  ['GET', '/ops?minAgeMs=soon', 'minAgeMs not a number', undefined, 400, /minAgeMs/],
  ['GET', '/connections/c999999', 'unknown connection view', undefined, 404, /c999999/],
  ['GET', '/listeners/nope', 'unknown listener view', undefined, 404, /nope/],
  ['GET', '/nothing-here', 'unknown route', undefined, 404, /no route GET \/nothing-here/],
  [
    'PUT',
    '/listeners',
    'wrong method',
    { address: '127.0.0.1:0', mode: 'echo' },
    404,
    /no route PUT/,
  ],
  ['PATCH', '/connections/c1', 'wrong method on an id', {}, 404, /no route PATCH/],
  ['GET', '/%E0%A4%A', 'undecodable URL', undefined, 400, /.+/],
];

t.test(`${cases.length} bad requests: each a 4xx naming what was wrong`, async (t) => {
  t.ok(cases.length >= 40, 'at least 40 cases');
  const s = await connect(port);
  for (const [method, path, what, body, status, pattern, headers] of cases) {
    const r = await request(k.api, method, path, body, headers ?? auth);
    t.equal(
      r.status,
      status,
      `${what}: ${method} ${path} → ${r.status} ${JSON.stringify(r.body).slice(0, 160)}`,
    );
    t.ok(r.status < 500, `${what}: never a 5xx`);
    t.match(
      r.body,
      { statusCode: status, error: String, message: pattern },
      `${what}: JSON error naming it`,
    );
    // The data plane is untouched between bad requests.
    s.write(what);
    t.equal((await readBytes(s, Buffer.byteLength(what))).toString(), what);
  }
  s.end();
});

t.test(
  'reads stay open without the token (protect: commands); commands work with it',
  async (t) => {
    t.equal((await request(k.api, 'GET', '/connections')).status, 200);
    const r = await request(
      k.api,
      'POST',
      '/listeners',
      { address: '127.0.0.1:0', mode: 'echo' },
      auth,
    );
    t.equal(r.status, 201);
    t.notMatch(k.output(), TOKEN, 'the token never appears in the logs');
    const docs = await fetch(`${k.api}/docs`);
    t.equal(docs.status, 200, '/docs answers');
    t.match(docs.headers.get('content-type'), /text\/html/, 'with a page');
    const spec = (await request(k.api, 'GET', '/openapi.json')).body;
    for (const route of [
      '/listeners',
      '/connections/{id}',
      '/keys',
      '/ops',
      '/ops/{record}',
      '/metrics',
      '/readyz',
    ]) {
      t.ok(spec.paths[route], `the spec documents ${route}`);
    }
  },
);
