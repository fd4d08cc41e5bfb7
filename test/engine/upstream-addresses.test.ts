// Every address of a target's name (issue 17): a forward listener whose target is a name that
// resolves to both 127.0.0.1 and ::1 reaches an upstream that listens on only one of them,
// whichever the resolver lists first, and counts no connect failure; when neither listens the
// client is reset once both were tried, and the failure is counted once. The name comes from
// /etc/hosts, which the resolver reads on both backends (under Wine, Wine's getaddrinfo asks
// the same file), so the test adds two lines for a name of its own and takes them out again.

import { lookup } from 'node:dns/promises';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { logRecords, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { closed, connect, freePort, readBytes, until } from '../helpers/tcp.js';

const HOSTS = '/etc/hosts';
const NAME = `keyport-dual-${process.pid}.test`;
const LINES = `\n127.0.0.1 ${NAME}\n::1 ${NAME}\n`;

if (process.getuid?.() !== 0) {
  t.skip(`*** SKIPPED: adding ${NAME} to ${HOSTS} needs root (CI runs as root)`);
  process.exit(0);
}
const before = readFileSync(HOSTS, 'utf8');
appendFileSync(HOSTS, LINES);
t.teardown(() => {
  // Only our lines go; anything else written meanwhile stays.
  writeFileSync(HOSTS, readFileSync(HOSTS, 'utf8').replace(LINES, ''));
});

/** An echo server on `host` only, at a port that is free on both loopbacks. */
async function echoOn(host: string): Promise<{ port: number; close: () => void }> {
  for (;;) {
    const port = await freePort();
    const other = net.createServer();
    const otherFree = await new Promise<boolean>((ok) => {
      other.once('error', () => ok(false));
      other.listen(port, host === '::1' ? '127.0.0.1' : '::1', () => other.close(() => ok(true)));
    });
    if (!otherFree) continue;
    const srv = net.createServer((s) => s.pipe(s));
    const bound = await new Promise<boolean>((ok) => {
      srv.once('error', () => ok(false));
      srv.listen(port, host, () => ok(true));
    });
    if (bound) return { port, close: () => srv.close() };
  }
}

const only6 = await echoOn('::1');
const only4 = await echoOn('127.0.0.1');
const neither = await freePort();
t.teardown(() => {
  only6.close();
  only4.close();
});

const k = await startKeyport([
  '--listener',
  `127.0.0.1:0=forward:${NAME}:${only6.port}`,
  '--listener',
  `127.0.0.1:0=forward:${NAME}:${only4.port}`,
  '--listener',
  `127.0.0.1:0=forward:${NAME}:${neither}`,
]);
t.teardown(() => k.stop());
const order = (await lookup(NAME, { all: true, order: 'verbatim' })).map((r) => r.address);
const listeners = (await request(k.api, 'GET', '/listeners')).body.items as Array<{
  id: string;
  address: string;
}>;
const [l6, l4, lNone] = listeners as [
  { id: string; address: string },
  { id: string; address: string },
  { id: string; address: string },
];

// Top-level assertions only after the last top-level await: tap ends a file's root test when
// it has seen an assertion and then waits on nothing of its own.
t.ok(readFileSync(HOSTS, 'utf8').startsWith(before), `${NAME} added to ${HOSTS}`);
t.comment(`the resolver lists ${NAME} as ${order.join(', ')}`);

for (const [what, l] of [
  ['an upstream on ::1 only', l6],
  ['an upstream on 127.0.0.1 only', l4],
] as const) {
  t.test(`${what}: reached through the name`, async (t) => {
    const s = await connect(portOf(l.address));
    s.on('error', () => {});
    const msg = Buffer.from(`through ${NAME} to ${what}`);
    s.write(msg);
    t.same(await readBytes(s, msg.length), msg, 'the upstream echoed the bytes through keyport');
    s.end();
    t.equal((await closed(s)).how, 'end', 'and the stream ended with a FIN');
    t.equal(
      await metric(k.api, 'keyport_upstream_connect_failures_total', { listener: l.id }),
      0,
      'no connect failure counted: trying the other address is not a failure',
    );
  });
}

t.test('nothing listens at either address: reset once both were tried', async (t) => {
  // Reset so soon that it may come before the connect is reported: no connect() helper here.
  const s = net.connect(portOf(lNone.address), '127.0.0.1');
  s.on('error', () => {});
  const end = await closed(s);
  t.not(end.how, 'end', `the client is reset, not given a FIN (${end.how} ${end.code ?? ''})`);
  t.equal(
    await metric(k.api, 'keyport_upstream_connect_failures_total', { listener: lNone.id }),
    1,
    'the failure is counted once, not once per address',
  );
  // The close line (debug) names the last error and how many addresses were tried.
  await until(
    async () => logRecords(k, 'addresses tried'),
    (r) => r.length > 0,
  );
  const reasons = logRecords(k, 'addresses tried').map((r) => String(r.reason));
  t.ok(
    reasons.some((r) => /^upstream connect failed: \w+ \(2 addresses tried\)$/.test(r)),
    `the close reason says both were tried: ${reasons.join(' | ')}`,
  );
});
