import t from 'tap';
import { buildApi } from '../../src/api/app.js';
import { VERSION } from '../../src/version.js';

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
