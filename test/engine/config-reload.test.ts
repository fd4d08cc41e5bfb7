// Config reload (POST /config/reload, SIGHUP) and GET /config, end to end: 200 connections
// relay through a forward listener while the config file changes three times (a listener
// added, an unrelated one's option changed, another removed); not a byte is lost and no
// connection is cut. An invalid file changes nothing; without a config file, 409.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { request } from '../helpers/http.js';
import { BACKEND, ROOT, startKeyport } from '../helpers/keyport.js';
import { connect, freePort, sendAndCollect, until, upstream } from '../helpers/tcp.js';

const dir = join(ROOT, 'test-output', `reload-${process.pid}`);
mkdirSync(dir, { recursive: true });
const TOKEN = 'a-long-enough-secret-token-for-reload';
const tokenFile = join(dir, 'api.token');
writeFileSync(tokenFile, `${TOKEN}\n`);
const auth = { authorization: `Bearer ${TOKEN}` };

/** Exactly n bytes, or a rejection when the socket ends, closes or stays silent for 15 s. */
function readExact(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const done = (err?: Error) => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      s.off('error', onErr);
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (d: Buffer): void => {
      chunks.push(d);
      got += d.length;
      if (got >= n) done();
    };
    const onEnd = () => done(new Error(`the connection ended after ${got} of ${n} bytes`));
    const onErr = (e: Error) => done(e);
    const timer = setTimeout(() => done(new Error(`${got} of ${n} bytes in 15 s`)), 15_000);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    s.once('error', onErr);
  });
}

/** One client relaying through keyport: writes chunks and checks each comes back whole. */
function client(s: net.Socket) {
  let stop = false;
  let sent = 0;
  let echoed = 0;
  let mismatch = false;
  let cut = false;
  s.on('error', () => {});
  s.on('close', () => {
    if (!stop) cut = true;
  });
  const done = (async () => {
    while (!stop) {
      const chunk = randomBytes(256 + Math.floor(Math.random() * 3840));
      s.write(chunk);
      sent += chunk.length;
      const back = await readExact(s, chunk.length).catch(() => Buffer.alloc(0));
      if (back.length === 0) {
        cut = true;
        break;
      }
      if (!back.equals(chunk)) mismatch = true;
      echoed += back.length;
      await new Promise((r) => setTimeout(r, 20 + Math.random() * 40));
    }
  })();
  return {
    async finish() {
      stop = true;
      await done;
      s.end();
      return { sent, echoed, mismatch, cut };
    },
  };
}

t.test(
  'reload under load: added, replaced, removed; no byte lost, no connection cut',
  async (t) => {
    const up = await upstream((s) => s.pipe(s));
    t.teardown(() => up.close());
    const [fwd, a, b, c] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const cfgPath = join(dir, 'load.json');
    const base = {
      api: { tokenFile },
      shutdownDeadlineMs: 60_000,
    };
    const fwdL = { address: `127.0.0.1:${fwd}`, mode: 'forward', target: `127.0.0.1:${up.port}` };
    const write = (listeners: unknown[], extra: Record<string, unknown> = {}) =>
      writeFileSync(cfgPath, JSON.stringify({ ...base, ...extra, listeners }, null, 2));
    const aL = { address: `127.0.0.1:${a}`, mode: 'echo', maxConnections: 100 };
    const bL = { address: `127.0.0.1:${b}`, mode: 'echo' };
    const cL = { address: `127.0.0.1:${c}`, mode: 'echo', idleTimeoutMs: 60_000 };
    write([fwdL, aL, bL]);

    const k = await startKeyport(['--config', cfgPath]);
    t.teardown(() => k.stop());
    const reload = () => request(k.api, 'POST', '/config/reload', undefined, auth);
    const listeners = async () =>
      (
        (await request(k.api, 'GET', '/listeners')).body.items as Array<{
          id: string;
          address: string;
          state: string;
          maxConnections: number;
        }>
      ).filter((l) => l.state === 'listening');

    t.equal((await request(k.api, 'POST', '/config/reload')).status, 401, 'reload needs the token');

    const socks = await Promise.all(Array.from({ length: 200 }, () => connect(fwd)));
    const clients = socks.map(client);
    // Held across the changes: one on the listener that is replaced, one on the one removed.
    const onA = await connect(a);
    const onB = await connect(b);

    // 1. Add a listener.
    write([fwdL, aL, bL, cL]);
    let r = await reload();
    t.equal(r.status, 200, JSON.stringify(r.body));
    t.match(r.body, {
      added: [{ address: `127.0.0.1:${c}`, mode: 'echo' }],
      removed: [],
      replaced: [],
      unchanged: 3,
      failed: [],
    });
    t.equal(
      (await sendAndCollect(c, Buffer.from('new'))).toString(),
      'new',
      'the added one serves',
    );

    // 2. Change an unrelated listener's option: drain-and-replace on the same address.
    const aIdBefore = (await listeners()).find((l) => l.address === `127.0.0.1:${a}`)?.id;
    write([fwdL, { ...aL, maxConnections: 50 }, bL, cL]);
    r = await reload();
    t.equal(r.status, 200, JSON.stringify(r.body));
    t.match(r.body, {
      added: [],
      removed: [],
      replaced: [{ address: `127.0.0.1:${a}`, previousId: aIdBefore }],
      unchanged: 3,
      failed: [],
    });
    const aNow = (await listeners()).find((l) => l.address === `127.0.0.1:${a}`);
    t.equal(aNow?.maxConnections, 50, 'the new options are in force');
    t.not(aNow?.id, aIdBefore);
    t.equal(
      (await sendAndCollect(a, Buffer.from('replaced'))).toString(),
      'replaced',
      'a new client reaches the new listener',
    );
    onA.write('old-a');
    t.equal(
      (await readExact(onA, 5).catch((e: Error) => Buffer.from(e.message))).toString(),
      'old-a',
      'a connection of the old listener runs on',
    );

    // 3. Remove another.
    write([fwdL, { ...aL, maxConnections: 50 }, cL]);
    r = await reload();
    t.equal(r.status, 200, JSON.stringify(r.body));
    t.match(r.body, {
      added: [],
      removed: [{ address: `127.0.0.1:${b}` }],
      replaced: [],
      unchanged: 3,
      failed: [],
    });
    await t.rejects(sendAndCollect(b, Buffer.from('x')), 'the removed one refuses new clients');
    onB.write('old-b');
    t.equal(
      (await readExact(onB, 5).catch((e: Error) => Buffer.from(e.message))).toString(),
      'old-b',
      'its connection drains (not cut)',
    );

    // An invalid file: 400 naming the field; nothing changes.
    const before = (await listeners())
      .map((l) => `${l.id} ${l.address} ${l.maxConnections}`)
      .sort();
    write([fwdL, { ...aL, maxConnections: 0 }, cL, { address: `127.0.0.1:${b}`, mode: 'echo' }]);
    r = await reload();
    t.equal(r.status, 400);
    t.match(r.body.message, `${cfgPath}: /listeners/1/maxConnections`);
    write([fwdL, { address: `127.0.0.1:${b}`, mode: 'forward' }]);
    r = await reload();
    t.equal(r.status, 400);
    t.match(r.body.message, '/listeners/1/target');
    const after = (await listeners()).map((l) => `${l.id} ${l.address} ${l.maxConnections}`).sort();
    t.same(after, before, 'the listeners are as they were');
    await t.rejects(sendAndCollect(b, Buffer.from('x')), 'nothing of the bad file was applied');

    // A field a reload does not apply is named, and not applied.
    write([fwdL, { ...aL, maxConnections: 50 }, cL], { engine: { bufferSize: 4096 } });
    r = await reload();
    t.equal(r.status, 200);
    t.match(r.body, { unchanged: 3, needsRestart: ['engine.bufferSize'] });

    const results = await Promise.all(clients.map((cl) => cl.finish()));
    t.equal(results.filter((x) => x.cut).length, 0, 'no relayed connection was cut');
    t.equal(results.filter((x) => x.mismatch).length, 0, 'every chunk came back as sent');
    t.equal(
      results.reduce((n, x) => n + x.sent - x.echoed, 0),
      0,
      'zero bytes lost',
    );
    t.ok(results.every((x) => x.sent > 0));
    onA.destroy();
    onB.destroy();

    // GET /config: the effective configuration, the token redacted.
    const g = await request(k.api, 'GET', '/config');
    t.equal(g.status, 200);
    t.notMatch(JSON.stringify(g.body), TOKEN, 'the token never appears');
    t.match(g.body, {
      configFile: cfgPath,
      stateFile: null,
      api: { token: 'redacted', tokenFile },
      shutdownDeadlineMs: 60_000,
      backendInUse: BACKEND,
      engine: { bufferSize: 65536 },
    });
    t.same(
      (g.body.listeners as Array<Record<string, unknown>>).map(({ id: _id, ...rest }) => rest),
      [
        { source: 'config', ...fwdL },
        { source: 'config', ...aL, maxConnections: 50 },
        { source: 'config', ...cL },
      ],
    );
  },
);

t.test('SIGHUP reloads the config file', async (t) => {
  const [a, b] = [await freePort(), await freePort()];
  const cfgPath = join(dir, 'hup.json');
  writeFileSync(
    cfgPath,
    JSON.stringify({ listeners: [{ address: `127.0.0.1:${a}`, mode: 'echo' }] }),
  );
  const k = await startKeyport(['--config', cfgPath]);
  t.teardown(() => k.stop());
  writeFileSync(
    cfgPath,
    JSON.stringify({
      listeners: [
        { address: `127.0.0.1:${a}`, mode: 'echo' },
        { address: `127.0.0.1:${b}`, mode: 'echo' },
      ],
    }),
  );
  // The process the user signals: keyport itself on Linux, the launcher under Wine.
  k.proc.kill('SIGHUP');
  const up = await until(
    () =>
      sendAndCollect(b, Buffer.from('hup')).then(
        (x) => x.toString(),
        () => '',
      ),
    (x) => x === 'hup',
    30_000,
  );
  t.equal(up, 'hup', 'the listener the file added serves');
  // The log reaches this process after the listener serves (under Wine it is a followed file).
  await until(
    async () => k.output(),
    (o) => /config reloaded/.test(o),
    30_000,
  );
  t.match(k.output(), /config reloaded/);
  // An invalid file on SIGHUP: logged, nothing changes, keyport runs on.
  writeFileSync(cfgPath, '{"listeners": [');
  k.proc.kill('SIGHUP');
  await until(
    async () => k.output(),
    (o) => /reload refused/.test(o),
    30_000,
  );
  t.match(k.output(), /reload refused, nothing changed: config file .*hup\.json/);
  t.equal((await sendAndCollect(b, Buffer.from('still'))).toString(), 'still');
  t.equal(k.proc.exitCode, null, 'keyport runs on');
});

t.test('a reload without a config file is a 409 that says so', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
  t.teardown(() => k.stop());
  const r = await request(k.api, 'POST', '/config/reload');
  t.equal(r.status, 409);
  t.match(r.body.message, /without a config file/);
  const g = await request(k.api, 'GET', '/config');
  t.equal(g.status, 200);
  t.match(g.body, {
    configFile: null,
    api: { token: null },
    listeners: [{ source: 'cli', mode: 'echo' }],
  });
});
