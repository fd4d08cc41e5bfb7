// Start-up refusals and configuration: a non-loopback API without a token, bad config files,
// a port already taken; and a config file that sets listeners, limits and protection.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from '../helpers/http.js';
import { ROOT, startKeyport } from '../helpers/keyport.js';
import { upstream } from '../helpers/tcp.js';

const dir = join(ROOT, 'test-output', `config-${process.pid}`);
mkdirSync(dir, { recursive: true });
function file(name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return p;
}

t.test('a non-loopback API without a token is refused, saying why', async (t) => {
  await t.rejects(
    startKeyport(['--api', '0.0.0.0:0', '--listener', '127.0.0.1:0=echo']),
    /exited \(2\)[\s\S]*refusing to serve the API on 0\.0\.0\.0:0 without a token/,
  );
});

t.test('a config file error stops start-up with the path of the bad field', async (t) => {
  const bad = file('bad.json', {
    listeners: [{ address: '127.0.0.1:0', mode: 'echo', maxConnections: 'lots' }],
  });
  await t.rejects(
    startKeyport(['--config', bad]),
    /exited \(2\)[\s\S]*bad\.json: \/listeners\/0\/maxConnections/,
  );
  const unknown = file('unknown.json', { listners: [] });
  await t.rejects(
    startKeyport(['--config', unknown]),
    /exited \(2\)[\s\S]*unknown\.json: \/listners/,
  );
  const notJson = file('broken.json', '{ "api": ');
  await t.rejects(
    startKeyport(['--config', notJson]),
    /exited \(2\)[\s\S]*broken\.json: \/api: not valid JSON at line 1 column \d+ \(it ends early: truncated\?\)/,
  );
  await t.rejects(
    startKeyport(['--config', join(dir, 'missing.json')]),
    /exited \(2\)[\s\S]*missing\.json: cannot read it/,
  );
  const target = file('target.json', { listeners: [{ address: '127.0.0.1:0', mode: 'forward' }] });
  await t.rejects(
    startKeyport(['--config', target]),
    /exited \(2\)[\s\S]*\/listeners\/0\/target: a forward listener needs a target/,
  );
});

t.test('a listener port already in use stops start-up, naming it', async (t) => {
  const holder = await upstream(() => {});
  t.teardown(() => holder.close());
  await t.rejects(
    startKeyport(['--listener', `127.0.0.1:${holder.port}=echo`]),
    new RegExp(`exited \\(1\\)[\\s\\S]*127\\.0\\.0\\.1:${holder.port} is already in use`),
  );
});

t.test('a short token is refused', async (t) => {
  const tok = file('short.token', 'abc\n');
  await t.rejects(
    startKeyport(['--listener', '127.0.0.1:0=echo'], { env: { KEYPORT_TOKEN_FILE: tok } }),
    /exited \(2\)[\s\S]*at least 16 characters/,
  );
});

t.test('a config file sets listeners, limits and protection of every route', async (t) => {
  const tokenFile = file('api.token', 'a-long-enough-secret-token\n');
  const cfg = file('good.json', {
    api: { tokenFile, protect: 'all' },
    logLevel: 'info',
    listeners: [
      {
        address: '127.0.0.1:0',
        mode: 'echo',
        acceptDepth: 3,
        maxConnections: 50,
        idleTimeoutMs: 60000,
      },
      { address: '127.0.0.1:0', mode: 'forward', target: 'localhost:9', connectTimeoutMs: 2500 },
    ],
  });
  const k = await startKeyport(['--config', cfg]);
  t.teardown(() => k.stop());
  const auth = { authorization: 'Bearer a-long-enough-secret-token' };
  t.equal((await request(k.api, 'GET', '/healthz')).status, 200, '/healthz stays open');
  t.equal(
    (await request(k.api, 'GET', '/listeners')).status,
    401,
    'reads need the token with protect: all',
  );
  const ls = (await request(k.api, 'GET', '/listeners', undefined, auth)).body.items;
  t.equal(ls.length, 2);
  t.match(ls[0], {
    mode: 'echo',
    acceptDepth: 3,
    acceptsPending: 3,
    maxConnections: 50,
    idleTimeoutMs: 60000,
  });
  t.match(ls[1], { mode: 'forward', target: 'localhost:9', connectTimeoutMs: 2500 });
  t.equal(
    (await request(k.api, 'GET', '/openapi.json')).status,
    200,
    'the API description stays open',
  );
});
