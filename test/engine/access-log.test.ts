// The access log (issue 17): one JSON line per closed connection. Real clients on an echo and a
// forward listener send and receive known, distinct byte counts and end in known ways (a FIN, a
// reset, DELETE /connections); each line must say exactly what its client saw, matched by the
// client's own port. Rotation by size keeps every line whole and loses none; 'off' writes
// nothing; stdout carries the same lines.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { AccessLogRecord } from '../../src/main/access-log.js';
import { request } from '../helpers/http.js';
import { ERR, logRecords, OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { closed, connect, payload, readBytes, until, upstream } from '../helpers/tcp.js';

type Line = AccessLogRecord;

const FIELDS = [
  'time',
  'listener',
  'connection',
  'client',
  'local',
  'upstream',
  'clientKey',
  'upstreamKey',
  'bytesIn',
  'bytesOut',
  'upstreamBytesIn',
  'upstreamBytesOut',
  'durationMs',
  'reason',
  'reasonKind',
  'abortive',
  'error',
];
const KEY = /^0x[0-9a-f]{16}$/;
const portOfAddr = (a: string | null) => Number(a?.split(':').pop());

/** The whole lines of a file, each parsed (a line still being written is left out). */
function readLines(path: string): Line[] {
  const text = readFileSync(path, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

/** Every line of the file is whole: it ends with one, and each parses. */
function checkWhole(t: Test, path: string): void {
  const text = readFileSync(path, 'utf8');
  t.ok(text === '' || text.endsWith('\n'), `${path} ends with a whole line`);
  for (const l of text.split('\n').filter((x) => x !== '')) {
    let ok = true;
    try {
      JSON.parse(l);
    } catch {
      ok = false;
    }
    t.ok(ok, `${path}: every line is a whole JSON object`);
  }
}

// The upstream answers each client's FIN with twice what it got, plus 7 bytes, then FIN.
const up = await upstream((s) => {
  let got = 0;
  s.on('data', (d: Buffer) => (got += d.length));
  s.on('end', () => s.end(payload(2 * got + 7)));
});
t.teardown(() => up.close());

let seq = 0;
function configFile(accessLog: Record<string, unknown>): string {
  const path = join(OUT_DIR, `access-log-${process.pid}-${++seq}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      listeners: [
        { address: '127.0.0.1:0', mode: 'echo' },
        { address: '127.0.0.1:0', mode: 'forward', target: `127.0.0.1:${up.port}` },
      ],
      accessLog,
    }),
  );
  return path;
}
function logPath(): string {
  const path = join(OUT_DIR, `keyport-access-${process.pid}-${++seq}.log`);
  for (const suffix of ['', '.1', '.2', '.3']) rmSync(path + suffix, { force: true });
  return path;
}
async function listenersOf(api: string) {
  const items = (await request(api, 'GET', '/listeners')).body.items as Array<{
    id: string;
    address: string;
    mode: string;
  }>;
  const echo = items.find((l) => l.mode === 'echo');
  const fwd = items.find((l) => l.mode === 'forward');
  if (!echo || !fwd) throw new Error('listeners missing');
  return { echo, fwd };
}

/** Sends `n` bytes, half-closes, reads until the server's FIN: what the client saw. */
async function exchange(port: number, n: number): Promise<{ port: number; got: number }> {
  const s = await connect(port);
  const local = s.localPort as number;
  const end = closed(s);
  let got = 0;
  s.on('data', (d: Buffer) => (got += d.length));
  s.end(payload(n));
  await end;
  s.destroy();
  return { port: local, got };
}

t.test('a line per closed connection, with exactly what each client saw', async (t) => {
  const path = logPath();
  const started = Date.now();
  const k = await startKeyport(['--config', configFile({ to: path })]);
  t.teardown(() => k.stop());
  const { echo, fwd } = await listenersOf(k.api);
  const echoPort = portOfAddr(echo.address);
  const fwdPort = portOfAddr(fwd.address);

  // Graceful: the client's FIN, carried across, ends each (reason eof).
  const e1 = await exchange(echoPort, 1000);
  const e2 = await exchange(echoPort, 4321);
  const f1 = await exchange(fwdPort, 3000);
  const f2 = await exchange(fwdPort, 1234);
  t.same([e1.got, e2.got, f1.got, f2.got], [1000, 4321, 6007, 2475], 'the clients got their bytes');

  // Reset by the client, after 777 bytes each way and 300 ms.
  const r = await connect(echoPort);
  r.on('error', () => {});
  const rPort = r.localPort as number;
  r.write(payload(777));
  await readBytes(r, 777);
  await new Promise((res) => setTimeout(res, 300));
  r.resetAndDestroy();

  // Closed by the API (graceful) after 500 bytes reached the upstream, and 300 ms.
  const a = await connect(fwdPort);
  const aPort = a.localPort as number;
  const aEnd = closed(a);
  a.write(payload(500));
  const live = await until(
    () => request(k.api, 'GET', '/connections'),
    (res) =>
      (res.body.items as Array<{ remote: string; bytesIn: number }>).some(
        (c) => portOfAddr(c.remote) === aPort && c.bytesIn === 500,
      ),
  );
  const aConn = (
    live.body.items as Array<{ id: string; remote: string; key: string; upstreamKey: string }>
  ).find((c) => portOfAddr(c.remote) === aPort);
  t.ok(aConn, 'the API lists the connection');
  await new Promise((res) => setTimeout(res, 300));
  const del = await request(k.api, 'DELETE', `/connections/${aConn?.id}`);
  t.equal(del.status, 202, 'DELETE /connections accepted');
  t.equal((await aEnd).how, 'end', 'the API-closed client got a FIN');
  a.destroy();

  const lines = await until(
    async () => (existsSync(path) ? readLines(path) : []),
    (ls) => ls.length >= 6,
  );
  checkWhole(t, path);
  const elapsed = Date.now() - started;
  t.equal(lines.length, 6, 'one line per closed connection');
  for (const l of lines) {
    t.same(Object.keys(l), FIELDS, `${l.connection}: the documented fields, in order`);
    t.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'time is ISO 8601');
    const at = Date.parse(l.time);
    t.ok(at >= started - 1000 && at <= Date.now() + 1000, `${l.connection}: time is the close's`);
    t.match(l.clientKey, KEY, 'client key in hex');
    t.ok(l.durationMs >= 0 && l.durationMs <= elapsed, `${l.connection}: duration plausible`);
    const isEcho = l.listener === echo.id;
    t.equal(l.local, isEcho ? echo.address : fwd.address, 'local: the listener address reached');
    if (isEcho) {
      t.equal(l.upstream, null, 'echo: no upstream');
      t.equal(l.upstreamKey, null);
      t.equal(l.upstreamBytesIn, null);
      t.equal(l.upstreamBytesOut, null);
    } else {
      t.equal(l.listener, fwd.id);
      t.equal(l.upstream, `127.0.0.1:${up.port}`, 'forward: the upstream address');
      t.match(l.upstreamKey, KEY, 'upstream key in hex');
      t.not(l.upstreamKey, l.clientKey);
    }
  }
  // Linux may give two clients the same port when they reach different listeners (the 4-tuples
  // still differ), so a client is named by the listener it reached and its own port.
  const clientOf = (listenerAddress: string, port: number) => `${listenerAddress} <- ${port}`;
  const byClient = new Map(lines.map((l) => [clientOf(l.local, portOfAddr(l.client)), l]));
  t.equal(byClient.size, 6, 'each line names its client by address, each a different one');
  for (const l of lines) t.match(l.client, /^127\.0\.0\.1:\d+$/, 'client host:port');

  const lineOf = (isEcho: boolean, port: number) =>
    byClient.get(clientOf(isEcho ? echo.address : fwd.address, port));
  const graceful: Array<[typeof e1, number, boolean]> = [
    [e1, 1000, true],
    [e2, 4321, true],
    [f1, 3000, false],
    [f2, 1234, false],
  ];
  for (const [c, sent, isEcho] of graceful) {
    const l = lineOf(isEcho, c.port);
    t.ok(l, `a line for the client on port ${c.port}`);
    if (!l) continue;
    t.equal(l.listener, isEcho ? echo.id : fwd.id);
    t.equal(l.bytesIn, sent, `${l.connection}: bytesIn = what the client sent`);
    t.equal(l.bytesOut, c.got, `${l.connection}: bytesOut = what the client received`);
    if (!isEcho) {
      t.equal(l.upstreamBytesOut, sent, 'upstreamBytesOut = what the upstream got');
      t.equal(l.upstreamBytesIn, c.got, 'upstreamBytesIn = what the upstream sent');
    }
    t.equal(l.reason, 'eof');
    t.equal(l.reasonKind, 'eof');
    t.equal(l.abortive, false);
    t.equal(l.error, null);
  }

  const rl = lineOf(true, rPort);
  t.ok(rl, 'a line for the client that reset');
  if (rl) {
    t.equal(rl.listener, echo.id);
    t.same([rl.bytesIn, rl.bytesOut], [777, 777], 'the reset client: 777 bytes each way');
    t.match(rl.reason, /^client (recv|send) failed: /, rl.reason);
    t.match(rl.error, ERR.reset, 'error: the reset, by name');
    t.ok(rl.reason.endsWith(rl.error as string), 'the reason names the same error');
    t.equal(rl.reasonKind, 'client-error');
    t.equal(rl.abortive, true);
    t.ok(rl.durationMs >= 250, `it lived 300 ms (${rl.durationMs})`);
  }

  const al = lineOf(false, aPort);
  t.ok(al, 'a line for the client closed by the API');
  if (al) {
    t.equal(al.connection, aConn?.id, 'the connection id the API named');
    t.equal(al.clientKey, aConn?.key, 'the client key the API showed');
    t.equal(al.upstreamKey, aConn?.upstreamKey, 'the upstream key the API showed');
    t.same(
      [al.bytesIn, al.bytesOut, al.upstreamBytesOut, al.upstreamBytesIn],
      [500, 0, 500, 0],
      '500 bytes to the upstream, nothing back',
    );
    t.equal(al.reason, 'closed by API');
    t.equal(al.reasonKind, 'api');
    t.equal(al.abortive, false);
    t.equal(al.error, null);
    t.ok(al.durationMs >= 250, `it lived over 300 ms (${al.durationMs})`);
  }

  // The same reasons and counts as keyport's debug log of each close.
  const debug = await until(
    async () => logRecords(k, 'connection closed'),
    (d) => d.length >= 6,
  );
  for (const l of lines) {
    const d = debug.find((r) => r.connection === l.connection);
    t.equal(d?.reason, l.reason, `${l.connection}: the reason of the debug log`);
    t.equal(d?.bytesIn, l.bytesIn);
    t.equal(d?.bytesOut, l.bytesOut);
  }
  t.equal(await metric(k.api, 'keyport_access_log_dropped_total'), 0, 'nothing dropped');
});

t.test('rotation by size: whole lines, none lost, at most keep + 1 files', async (t) => {
  const path = logPath();
  const k = await startKeyport(['--config', configFile({ to: path, maxBytes: 2000, keep: 2 })]);
  t.teardown(() => k.stop());
  const { echo } = await listenersOf(k.api);
  const port = portOfAddr(echo.address);
  const files = () => [`${path}.2`, `${path}.1`, path].filter((f) => existsSync(f));
  // A rotation may rename a file between finding it and reading it: then read them all again.
  const all = (): Line[] => {
    for (;;) {
      try {
        return files().flatMap((f) => readLines(f));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  };

  // Twelve at once: lines that arrive while a rotation is under way wait for the new file.
  const first = await Promise.all(Array.from({ length: 12 }, (_, i) => exchange(port, 100 + i)));
  await until(
    async () => all().length,
    (n) => n >= 12,
  );
  const lines1 = all();
  for (const f of files()) checkWhole(t, f);
  t.equal(lines1.length, 12, 'twelve lines across the files: none lost');
  t.equal(files().length, 3, 'rotated twice (about five lines a file)');
  t.same(
    lines1.map((l) => portOfAddr(l.client)).sort(),
    first.map((c) => c.port).sort(),
    'one line for each client',
  );
  for (const l of lines1) {
    const c = first.find((x) => x.port === portOfAddr(l.client));
    t.equal(l.bytesIn, c?.got, `${l.connection}: its own byte count`);
  }

  // Then one at a time: older files are dropped beyond keep, the newest lines are all there.
  const order: number[] = [];
  for (let i = 0; i < 20; i++) order.push((await exchange(port, 200 + i)).port);
  await until(
    async () => all().at(-1)?.client ?? null,
    (c) => portOfAddr(c) === order.at(-1),
  );
  const names = files();
  t.ok(!existsSync(`${path}.3`), 'never more than keep rotated files');
  t.equal(names.length, 3, 'the file and two rotated ones');
  for (const f of names) {
    checkWhole(t, f);
    const size = readFileSync(f).length;
    t.ok(size <= 2000, `${f}: ${size} bytes, within maxBytes`);
  }
  const tail = all().map((l) => portOfAddr(l.client));
  t.ok(tail.length >= 10, `${tail.length} lines kept`);
  t.same(tail, order.slice(-tail.length), 'the kept lines are the newest, in order, none missing');
  t.equal(await metric(k.api, 'keyport_access_log_dropped_total'), 0, 'nothing dropped');
});

t.test("--access-log off (over the config file's path) writes nothing", async (t) => {
  const path = logPath();
  const k = await startKeyport(['--config', configFile({ to: path }), '--access-log', 'off']);
  const { echo, fwd } = await listenersOf(k.api);
  await exchange(portOfAddr(echo.address), 10);
  await exchange(portOfAddr(fwd.address), 10);
  await until(
    async () => logRecords(k, 'connection closed').length,
    (n) => n >= 2,
  );
  t.equal(await k.stop(), 0, 'stopped cleanly');
  t.notOk(existsSync(path), 'no access log file');
  t.notOk(k.output().includes('"reasonKind"'), 'and no access log line on stdout');
});

t.test('--access-log stdout: the same lines, among keyport’s own', async (t) => {
  const k = await startKeyport(['--access-log', 'stdout', '--listener', '127.0.0.1:0=echo']);
  t.teardown(() => k.stop());
  const listener = (await request(k.api, 'GET', '/listeners')).body.items[0];
  const c = await exchange(portOfAddr(listener.address), 4242);
  const line = await until(
    async () =>
      k
        .output()
        .split('\n')
        .find((l) => l.includes('"reasonKind"')),
    (l) => l !== undefined,
  );
  const l = JSON.parse(line as string) as Line;
  t.same(Object.keys(l), FIELDS, 'the documented fields');
  t.equal(portOfAddr(l.client), c.port);
  t.same([l.bytesIn, l.bytesOut, l.reason], [4242, 4242, 'eof']);
});

t.test('a path that cannot be opened stops start-up, naming the flag', async (t) => {
  const bad = join(OUT_DIR, 'no-such-dir', 'access.log');
  await t.rejects(
    startKeyport(['--access-log', bad], { timeoutMs: 60_000 }),
    /--access-log: cannot open the access log .*ENOENT/,
  );
});

t.test('a bad accessLog field is refused with its path', async (t) => {
  const cfg = configFile({ to: logPath(), maxBytes: 10 });
  await t.rejects(startKeyport(['--config', cfg], { timeoutMs: 60_000 }), /\/accessLog\/maxBytes/);
});
