// The state file: listeners created over the API survive a SIGKILL (same addresses, same
// options); a truncated state file stops start-up (exit 2, path and field) and is left as it
// was; an address named by both the config file and the state file is an error.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { request } from '../helpers/http.js';
import { ROOT, startKeyport } from '../helpers/keyport.js';
import { freePort, sendAndCollect, upstream } from '../helpers/tcp.js';

const dir = join(ROOT, 'test-output', `state-${process.pid}`);
mkdirSync(dir, { recursive: true });

t.test('API listeners come back after a SIGKILL; a truncated file stops start-up', async (t) => {
  const up = await upstream((s) => s.pipe(s));
  t.teardown(() => up.close());
  const [cfgPort, p1, p2, p3] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const cfgPath = join(dir, 'config.json');
  const statePath = join(dir, 'state.json');
  writeFileSync(
    cfgPath,
    JSON.stringify({ listeners: [{ address: `127.0.0.1:${cfgPort}`, mode: 'echo' }] }),
  );
  const args = ['--config', cfgPath, '--state-file', statePath];

  const k1 = await startKeyport(args);
  t.teardown(() => k1.stop());
  const echo = {
    address: `127.0.0.1:${p1}`,
    mode: 'echo',
    idleTimeoutMs: 45_000,
    maxConnections: 77,
  };
  const fwd = {
    address: `127.0.0.1:${p2}`,
    mode: 'forward',
    target: `127.0.0.1:${up.port}`,
    connectTimeoutMs: 3000,
    deny: ['192.0.2.0/24'],
  };
  const gone = { address: `127.0.0.1:${p3}`, mode: 'echo' };
  for (const body of [echo, fwd, gone]) {
    const r = await request(k1.api, 'POST', '/listeners', body);
    t.equal(r.status, 201, JSON.stringify(r.body));
  }
  const goneId = (
    (await request(k1.api, 'GET', '/listeners')).body.items as Array<{
      id: string;
      address: string;
    }>
  ).find((l) => l.address === gone.address)?.id;
  t.equal((await request(k1.api, 'DELETE', `/listeners/${goneId}?mode=abort`)).status, 202);
  t.same(
    JSON.parse(readFileSync(statePath, 'utf8')),
    { version: 1, listeners: [echo, fwd] },
    'the state file holds the inputs as given',
  );

  process.kill(k1.enginePid(), 'SIGKILL');
  await k1.exited;

  const k2 = await startKeyport(args);
  t.teardown(() => k2.stop());
  const g = await request(k2.api, 'GET', '/config');
  t.same(
    (g.body.listeners as Array<Record<string, unknown>>).map(({ id: _id, ...rest }) => rest),
    [
      { source: 'config', address: `127.0.0.1:${cfgPort}`, mode: 'echo' },
      { source: 'api', ...echo },
      { source: 'api', ...fwd },
    ],
    'the config file listener, then the state file ones, as created',
  );
  const items = (await request(k2.api, 'GET', '/listeners')).body.items as Array<
    Record<string, unknown>
  >;
  t.match(
    items.find((l) => l.address === echo.address),
    { mode: 'echo', idleTimeoutMs: 45_000, maxConnections: 77 },
  );
  t.match(
    items.find((l) => l.address === fwd.address),
    {
      mode: 'forward',
      target: fwd.target,
      connectTimeoutMs: 3000,
      deny: ['192.0.2.0/24'],
    },
  );
  t.notOk(
    items.some((l) => l.address === gone.address),
    'the deleted one stays deleted',
  );
  t.equal((await sendAndCollect(p1, Buffer.from('back'))).toString(), 'back');
  t.equal((await sendAndCollect(p2, Buffer.from('relayed'))).toString(), 'relayed');
  // A reload leaves API listeners alone.
  const r = await request(k2.api, 'POST', '/config/reload');
  t.match(r.body, { added: [], removed: [], replaced: [], unchanged: 1 });
  t.equal((await sendAndCollect(p1, Buffer.from('still'))).toString(), 'still');
  // A config file may not take an address an API listener holds: refused whole.
  const cfgText = readFileSync(cfgPath);
  writeFileSync(
    cfgPath,
    JSON.stringify({
      listeners: [
        { address: `127.0.0.1:${cfgPort}`, mode: 'echo', maxConnections: 9 },
        { address: echo.address, mode: 'echo' },
      ],
    }),
  );
  const held = await request(k2.api, 'POST', '/config/reload');
  t.equal(held.status, 400);
  t.match(
    held.body.message,
    /\/listeners\/1\/address: 127\.0\.0\.1:\d+ is held by listener l\d+, created over the API/,
  );
  t.match(
    (
      (await request(k2.api, 'GET', '/listeners')).body.items as Array<Record<string, unknown>>
    ).find((l) => l.address === `127.0.0.1:${cfgPort}` && l.state === 'listening'),
    { maxConnections: 10_000 },
    'nothing of the refused file was applied',
  );
  writeFileSync(cfgPath, cfgText);
  await k2.stop();

  // Truncated mid-write (as a crash of a non-atomic writer would leave it): exit 2, the path
  // and the field it was cut in, and the file untouched.
  const whole = readFileSync(statePath);
  const cut = whole.subarray(0, Math.floor(whole.length * 0.6));
  writeFileSync(statePath, cut);
  const err = await startKeyport(args).then(
    () => null,
    (e: Error) => e.message,
  );
  t.match(err, /exited \(2\)/);
  t.match(
    err,
    new RegExp(`state file ${statePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: /listeners/1`),
  );
  t.match(err, /truncated/);
  t.same(readFileSync(statePath), cut, 'the state file is left as it was');

  // Valid JSON, wrong shape: the field by its JSON pointer.
  writeFileSync(
    statePath,
    JSON.stringify({ version: 1, listeners: [echo, { ...fwd, mode: 'relay' }] }),
  );
  await t.rejects(startKeyport(args), /exited \(2\)[\s\S]*state\.json: \/listeners\/1\/mode/);

  // The same address in the config file and the state file: an error, naming both.
  writeFileSync(
    statePath,
    JSON.stringify({ version: 1, listeners: [{ address: `127.0.0.1:${cfgPort}`, mode: 'echo' }] }),
  );
  await t.rejects(
    startKeyport(args),
    /exited \(2\)[\s\S]*state\.json: \/listeners\/0\/address: 127\.0\.0\.1:\d+ is also config file .*config\.json: \/listeners\/0\/address/,
  );
  t.ok(existsSync(statePath));
});
