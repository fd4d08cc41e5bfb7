// The PROXY protocol against HAProxy itself (Debian's package), both ways and both versions:
// keyport `send: v1|v2` in front of an HAProxy `accept-proxy` frontend, whose own log names the
// original client; an HAProxy `send-proxy[-v2]` server line in front of a keyport `accept`
// listener, whose /connections and access log then show the original client. Then 500
// malformed headers (seeded, every kind of damage, each followed by the client's FIN): every one
// is reset and counted (keyport_connections_closed_total{reason="proxy-header"}), nothing
// leaks, and a good client is still served.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { findHaproxy } from '../helpers/haproxy.js';
import { portOf, request } from '../helpers/http.js';
import { OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { closed, connect, freePort, readBytes, until, upstream } from '../helpers/tcp.js';

const dir = join(OUT_DIR, `proxy-protocol-${process.pid}`);
mkdirSync(dir, { recursive: true });
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const echo = await upstream((s) => s.pipe(s));
t.teardown(() => echo.close());

const HAPROXY = findHaproxy();
// Ports: HAProxy's accept-proxy frontends (v1, v2) and its send-proxy frontends (v1, v2).
const [hpAccept1, hpAccept2, hpSend1, hpSend2] = [
  await freePort(),
  await freePort(),
  await freePort(),
  await freePort(),
];
const [kAccept1, kAccept2] = [await freePort(), await freePort()];

const accessLog = join(dir, 'access.log');
const cfg = join(dir, 'keyport.json');
writeFileSync(
  cfg,
  JSON.stringify({
    listeners: [
      // keyport → HAProxy (accept-proxy) → echo
      {
        address: '127.0.0.1:0',
        mode: 'forward',
        target: `127.0.0.1:${hpAccept1}`,
        proxyProtocol: { send: 'v1' },
      },
      {
        address: '127.0.0.1:0',
        mode: 'forward',
        target: `127.0.0.1:${hpAccept2}`,
        proxyProtocol: { send: 'v2' },
      },
      // HAProxy (send-proxy) → keyport (accept) → echo
      {
        address: `127.0.0.1:${kAccept1}`,
        mode: 'forward',
        target: `127.0.0.1:${echo.port}`,
        proxyProtocol: { accept: true },
      },
      {
        address: `127.0.0.1:${kAccept2}`,
        mode: 'echo',
        proxyProtocol: { accept: true, timeoutMs: 1500 },
      },
    ],
    accessLog: { to: accessLog },
  }),
);
const k = await startKeyport(['--config', cfg]);
t.teardown(() => k.stop());
const ls = (await request(k.api, 'GET', '/listeners')).body.items as Array<{
  id: string;
  address: string;
}>;
const [lSend1, lSend2, lAccept1, lAccept2] = ls as [
  { id: string; address: string },
  { id: string; address: string },
  { id: string; address: string },
  { id: string; address: string },
];

/** Round trip of `msg` through `port`; the client socket's own port, then its close. */
async function roundTrip(port: number, msg: Buffer, hold?: () => Promise<void>) {
  const s = await connect(port);
  s.on('error', () => {});
  const clientPort = s.localPort as number; // gone once the socket closes
  s.write(msg);
  const back = await readBytes(s, msg.length);
  await hold?.();
  s.end();
  const end = await closed(s);
  return { back, clientPort, end };
}

let haproxy: ChildProcess | null = null;
let haproxyOut = '';
if (!HAPROXY) {
  t.fail("haproxy is missing: npm test's pretest installs it (scripts/provision-test-tools.mjs)");
} else {
  const hcfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    hcfg,
    [
      'global',
      '  nbthread 1',
      '  log stdout format raw local0',
      'defaults',
      '  mode tcp',
      '  log global',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 30s',
      // One line per connection, at its end: the client HAProxy believes in, and what it reached.
      '  log-format "CLIENT %ci:%cp FRONTEND %ft"',
      'frontend acc1',
      `  bind 127.0.0.1:${hpAccept1} accept-proxy`,
      '  default_backend echo',
      'frontend acc2',
      `  bind 127.0.0.1:${hpAccept2} accept-proxy`,
      '  default_backend echo',
      'backend echo',
      `  server e 127.0.0.1:${echo.port}`,
      'frontend snd1',
      `  bind 127.0.0.1:${hpSend1}`,
      '  default_backend k1',
      'backend k1',
      `  server k 127.0.0.1:${kAccept1} send-proxy`,
      'frontend snd2',
      `  bind 127.0.0.1:${hpSend2}`,
      '  default_backend k2',
      'backend k2',
      `  server k 127.0.0.1:${kAccept2} send-proxy-v2`,
      '',
    ].join('\n'),
  );
  haproxy = spawn(HAPROXY, ['-db', '-f', hcfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stdout?.on('data', (d) => (haproxyOut += d));
  haproxy.stderr?.on('data', (d) => (haproxyOut += d));
  t.teardown(() => {
    haproxy?.kill('SIGKILL');
  });
  // Up once its last frontend accepts.
  await until(
    () =>
      new Promise<boolean>((ok) => {
        const c = net.connect(hpSend2, '127.0.0.1', () => {
          c.destroy();
          ok(true);
        });
        c.on('error', () => ok(false));
      }),
    (up) => up,
    10_000,
  );

  for (const [version, l, front] of [
    ['v1', lSend1, 'acc1'],
    ['v2', lSend2, 'acc2'],
  ] as const) {
    t.test(`send ${version}: HAProxy (accept-proxy) logs the original client`, async (t) => {
      const msg = Buffer.from(`hello through keyport, PROXY ${version}, then HAProxy`);
      const r = await roundTrip(portOf(l.address), msg);
      t.same(r.back, msg, 'the bytes came back through keyport and HAProxy');
      t.equal(r.end.how, 'end', 'the stream ended with a FIN');
      const want = `CLIENT 127.0.0.1:${r.clientPort} FRONTEND ${front}`;
      await until(
        async () => haproxyOut,
        (o) => o.includes(want),
        5000,
      );
      t.ok(haproxyOut.includes(want), `HAProxy logged "${want}" (not keyport's own address)`);
    });
  }

  for (const [version, port, l] of [
    ['v1', hpSend1, lAccept1],
    ['v2', hpSend2, lAccept2],
  ] as const) {
    t.test(`accept ${version}: /connections and the access log show the client`, async (t) => {
      const msg = Buffer.from(`hello through HAProxy send-proxy ${version}, then keyport`);
      let seen: { remote: string; local: string } | undefined;
      const r = await roundTrip(port, msg, async () => {
        // While the connection is open: keyport shows the client HAProxy named.
        const conns = (await request(k.api, 'GET', `/connections?listener=${l.id}`)).body
          .items as Array<{ remote: string; local: string }>;
        seen = conns[0];
      });
      t.same(r.back, msg, 'the bytes came back through HAProxy and keyport');
      t.equal(seen?.remote, `127.0.0.1:${r.clientPort}`, '/connections: remote is the client');
      t.equal(seen?.local, `127.0.0.1:${port}`, '/connections: local is what the client reached');
      const line = await until(
        async () =>
          readFileSync(accessLog, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((x) => JSON.parse(x))
            .find((x) => x.client === `127.0.0.1:${r.clientPort}`),
        (x) => x !== undefined,
        5000,
      );
      t.ok(line, 'the access log line names the client');
      t.equal(line?.bytesIn, msg.length, 'its bytesIn: the client bytes, not the header');
    });
  }
}

/** A seeded PRNG (mulberry32), so a failing case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Headers damaged in one of many ways; none is a valid header, each is sent and then FIN. */
function malformed(rand: () => number, i: number): Buffer {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const v2 = (verCmd: number, fam: number, len: number, body = Buffer.alloc(len)) =>
    Buffer.concat([SIG, Buffer.from([verCmd, fam, len >> 8, len & 0xff]), body]);
  const kinds: Array<() => Buffer> = [
    () => Buffer.from(`PROXY TCP5 127.0.0.1 127.0.0.1 1 2\r\n`),
    () => Buffer.from(`PROXY TCP4 127.0.0.1 127.0.0.1 ${65536 + Math.floor(rand() * 1000)} 80\r\n`),
    () => Buffer.from(`PROXY TCP4 ::1 127.0.0.1 1000 80\r\n`),
    () => Buffer.from(`PROXY TCP6 127.0.0.1 ::1 1000 80\r\n`),
    () => Buffer.from(`PROXY TCP4 127.0.0.1 127.0.0.1 1000\r\n`),
    () => Buffer.from(`PROXY TCP4 127.0.0.1 127.0.0.1 01 80\r\n`),
    () => Buffer.from(`PROXY ${'x'.repeat(100 + Math.floor(rand() * 50))}`), // no CRLF in 107
    () => Buffer.from(`PROXY TCP4 127.0.0.1`), // cut short, then FIN
    () => Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\n\r\n`), // no header at all
    () => Buffer.from(`proxy TCP4 127.0.0.1 127.0.0.1 1 2\r\n`),
    () => v2(0x11, 0x11, 12), // version 1 in a v2 signature
    () => v2(0x22 + Math.floor(rand() * 14), 0x11, 12), // command 2..15
    () => v2(0x21, pick([0x12, 0x22, 0x31, 0x32, 0x13, 0x41]), 12), // UDP, UNIX, unknown
    () => v2(0x21, 0x11, Math.floor(rand() * 12)), // TCP4 with too few address bytes
    () => v2(0x21, 0x21, 12 + Math.floor(rand() * 24)), // TCP6 with too few address bytes
    () => v2(0x21, 0x11, 3000 + Math.floor(rand() * 60000), Buffer.alloc(0)), // too long
    () => Buffer.concat([SIG.subarray(0, 5 + Math.floor(rand() * 7))]), // signature cut short
    () => {
      const b = Buffer.from(SIG);
      b[Math.floor(rand() * 12)] ^= 1 + Math.floor(rand() * 254);
      return Buffer.concat([b, Buffer.alloc(20)]); // signature damaged
    },
    () => Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 200) }, () => rand() * 256)),
  ];
  const b = (kinds[i % kinds.length] as () => Buffer)();
  // Random bytes may begin like a header: never let a case start with "PROXY UNKNOWN".
  return b.subarray(0, 13).toString('latin1') === 'PROXY UNKNOWN' ? Buffer.from('X') : b;
}

t.test('500 malformed headers: each reset and counted, the engine serves on', async (t) => {
  const before = await metric(k.api, 'keyport_connections_closed_total', {
    listener: lAccept2.id,
    reason: 'proxy-header',
  }).catch(() => 0);
  const rand = prng(0x5eed);
  const N = 500;
  const ends: string[] = [];
  for (let i = 0; i < N; i += 25) {
    await Promise.all(
      Array.from({ length: Math.min(25, N - i) }, async (_, j) => {
        const bytes = malformed(rand, i + j);
        const s = net.connect(kAccept2, '127.0.0.1');
        s.on('error', () => {});
        s.on('connect', () => s.end(bytes));
        let echoed = 0;
        s.on('data', (d) => (echoed += d.length));
        const end = await closed(s);
        ends.push(echoed > 0 ? `echoed ${echoed} B` : end.how);
      }),
    );
  }
  t.notOk(
    ends.some((e) => e.startsWith('echoed')),
    'no malformed header let a byte through',
  );
  const counted = await until(
    () =>
      metric(k.api, 'keyport_connections_closed_total', {
        listener: lAccept2.id,
        reason: 'proxy-header',
      }),
    (n) => n - before >= N,
    10_000,
  );
  t.equal(counted - before, N, `${N} closes counted under reason="proxy-header"`);
  const live = (await request(k.api, 'GET', `/connections?listener=${lAccept2.id}`)).body.total;
  t.equal(live, 0, 'none of them left open');

  // A client that sends nothing is reset once timeoutMs (1.5 s) has passed.
  const silent = await connect(kAccept2);
  silent.on('error', () => {});
  const a = Date.now();
  const end = await closed(silent);
  t.ok(end.how !== 'end' || Date.now() - a >= 1000, `a silent client is cut off (${end.how})`);

  // And a good header with data right behind it, in one write, is still served.
  const good = await connect(kAccept2);
  good.on('error', () => {});
  const data = Buffer.from('after a good header');
  good.write(Buffer.concat([Buffer.from('PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n'), data]));
  t.same(await readBytes(good, data.length), data, 'a good header: the data behind it echoed');
  const c = (await request(k.api, 'GET', `/connections?listener=${lAccept2.id}`)).body.items[0];
  t.equal(c?.remote, '192.0.2.7:40000', 'shown as the client the header named');
  good.destroy();
});
