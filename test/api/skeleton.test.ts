import t from 'tap';
import { buildApi } from '../../src/api/app.js';
import { VERSION } from '../../src/version.js';
import { publicReadsControl } from '../helpers/stub-control.js';

// Real HTTP over loopback, not inject(): exercises the listener, headers and serialization.
async function start(control: { readonly startedAt: number }) {
  const app = buildApi({ control });
  // Test-only route to exercise schema validation before any real route takes input.
  app.get(
    '/test/validate',
    {
      schema: {
        hide: true,
        querystring: {
          type: 'object',
          properties: { limit: { type: 'integer', minimum: 1 } },
          required: ['limit'],
        },
      },
    },
    async () => ({ ok: true }),
  );
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url };
}

const errorShape = (statusCode: number) => ({
  statusCode,
  error: String,
  message: String,
});

t.test('api skeleton over real HTTP', async (t) => {
  const { app, url } = await start({ startedAt: Date.now() - 2_000 });
  t.teardown(() => app.close());

  t.test('GET /healthz', async (t) => {
    const res = await fetch(`${url}/healthz`);
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type'), /^application\/json/);
    const body = (await res.json()) as Record<string, unknown>;
    t.same(Object.keys(body).sort(), ['status', 'uptimeSeconds', 'version']);
    t.equal(body.status, 'ok');
    t.equal(body.version, VERSION);
    t.type(body.uptimeSeconds, 'number');
    t.ok((body.uptimeSeconds as number) >= 2, 'uptime counts from control.startedAt');
  });

  t.test('unknown route is a JSON 404', async (t) => {
    const res = await fetch(`${url}/no/such/route?x=1`);
    t.equal(res.status, 404);
    t.match(res.headers.get('content-type'), /^application\/json/);
    const body = (await res.json()) as Record<string, unknown>;
    t.same(Object.keys(body).sort(), ['error', 'message', 'statusCode']);
    t.match(body, {
      ...errorShape(404),
      error: 'Not Found',
      message: 'no route GET /no/such/route',
    });
  });

  t.test('wrong method is a JSON 404 too', async (t) => {
    const res = await fetch(`${url}/healthz`, { method: 'DELETE' });
    t.equal(res.status, 404);
    t.match(await res.json(), errorShape(404));
  });

  t.test('validation errors are 400 and name the field', async (t) => {
    const res = await fetch(`${url}/test/validate?limit=0`);
    t.equal(res.status, 400);
    const body = (await res.json()) as Record<string, unknown>;
    t.same(Object.keys(body).sort(), ['error', 'message', 'statusCode']);
    t.match(body, { statusCode: 400, error: 'Bad Request', message: /limit/ });

    const missing = await fetch(`${url}/test/validate`);
    t.equal(missing.status, 400);
    t.match(await missing.json(), { statusCode: 400, message: /limit/ });
  });

  t.test('GET /openapi.json', async (t) => {
    const res = await fetch(`${url}/openapi.json`);
    t.equal(res.status, 200);
    const spec = (await res.json()) as {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, unknown>;
    };
    t.match(spec.openapi, /^3\.0\./);
    t.same(spec.info.title, 'keyport');
    t.equal(spec.info.version, VERSION);
    t.ok(spec.paths['/healthz'], 'documents /healthz');
    t.notOk(spec.paths['/openapi.json'], 'does not document itself');
    t.notOk(spec.paths['/test/validate'], 'hidden routes stay hidden');
  });
});

t.test('server errors are generic and leak nothing', async (t) => {
  const secret = 'C:\\secret\\engine.ts internal detail';
  const { app, url } = await start({
    get startedAt(): number {
      throw new Error(secret);
    },
  });
  t.teardown(() => app.close());

  const res = await fetch(`${url}/healthz`);
  t.equal(res.status, 500);
  const text = await res.text();
  t.notMatch(text, 'secret');
  t.notMatch(text, /at .*\(/, 'no stack frames');
  t.same(JSON.parse(text), {
    statusCode: 500,
    error: 'Internal Server Error',
    message: 'Internal Server Error',
  });
});

t.test(
  'with protect: all, a route needs the token unless its config marks it public',
  async (t) => {
    const token = 'a-long-enough-secret-token';
    const app = buildApi({
      // biome-ignore lint/suspicious/noExplicitAny: a stub of the two reads the public routes make
      control: publicReadsControl as any,
      auth: { token, protect: 'all' },
    });
    // Every route as it is added, with the mark it ends up with.
    const routes: { method: string; url: string; public: boolean }[] = [];
    app.addHook('onRoute', (r) => {
      for (const method of [r.method].flat())
        routes.push({ method, url: r.url, public: r.config?.public === true });
    });
    await app.ready();
    t.teardown(() => app.close());

    const marked = (method: string, url: string) =>
      routes.find((r) => r.method === method && r.url === url)?.public;
    for (const url of ['/healthz', '/readyz', '/openapi.json', '/docs', '/', '/ui/config'])
      t.equal(marked('GET', url), true, `GET ${url} is marked public`);
    t.equal(marked('GET', '/listeners'), false, 'GET /listeners is not');
    t.equal(marked('POST', '/listeners'), false, 'POST /listeners is not');

    const concrete = (url: string) =>
      url
        .replace(':record', '0x1')
        .replace(/:[a-z]+/g, 'x')
        .replace('*', 'x');
    for (const r of routes) {
      const res = await app.inject({ method: r.method as 'GET', url: concrete(r.url) });
      if (r.public) t.not(res.statusCode, 401, `${r.method} ${r.url}: public, no token needed`);
      else t.equal(res.statusCode, 401, `${r.method} ${r.url}: the token is needed`);
    }
    t.equal(
      (await app.inject({ url: '/no/such/route' })).statusCode,
      401,
      'so does no route at all',
    );
    const ok = await app.inject({
      url: '/listeners',
      headers: { authorization: `Bearer ${token}` },
    });
    t.not(ok.statusCode, 401, 'with the token, an unmarked route answers');

    // The OpenAPI says the same: no security on exactly the marked operations.
    const spec = app.swagger() as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const url = path.replace(/\{([^}]+)\}/g, ':$1');
        t.equal(
          op.security?.length === 0,
          marked(method.toUpperCase(), url),
          `${method.toUpperCase()} ${path}: security ${JSON.stringify(op.security)}`,
        );
      }
    }
  },
);
