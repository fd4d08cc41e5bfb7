// The kernel's word over keyport's tables (DESIGN §1.8, §1.9), with faults injected for tests
// only (KEYPORT_TEST_FAULTS): a socket tied to the wrong key, duplicate packets, a throw in the
// completion path, and running out of sockets. Asserted on what the peers received, what the
// port returned (anomaly events with the dequeued key), and whether the process held.
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { BACKEND, logRecords, OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { openEvents } from '../helpers/sse.js';
import {
  closed,
  connect,
  payload,
  readBytes,
  sendAndCollect,
  until,
  upstream,
} from '../helpers/tcp.js';

interface Readiness {
  ready: boolean;
  reasons: string[];
  degradedListeners: string[];
  anomalies: { stray: number; keyMismatch: number; duplicate: number; quarantinedRecords: number };
}
interface ListenerV {
  id: string;
  address: string;
  state: string;
  key: string;
  acceptsPending: number;
  acceptPostsTotal: number;
  acceptError: string | null;
}

const portOf = (l: ListenerV) => Number(l.address.split(':').pop());

/** Rounds of 20 concurrent echoes of growing sizes: every one must come back byte-exact. */
async function echoRounds(t: Test, port: number, step: number): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const jobs = Array.from({ length: 20 }, (_, i) => payload(1 + i * step));
    const got = await Promise.all(jobs.map((p) => sendAndCollect(port, p)));
    t.equal(
      got.filter((g, i) => g.equals(jobs[i] as Buffer)).length,
      20,
      `round ${round}: all 20 echoes byte-exact`,
    );
  }
}

t.test('a socket tied to the wrong key: its packets never reach a connection', async (t) => {
  // Every 2nd association is wrong: the listener (1st) is right, the first client (2nd) wrong,
  // the second client (3rd) right.
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
    env: { KEYPORT_TEST_FAULTS: 'wrong-key:2' },
  });
  t.teardown(() => k.stop());
  const events = await openEvents(k.api);
  t.teardown(() => events.close());
  const l = ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
  const a = await connect(l.address.includes(':') ? portOf(l) : 0);
  const aEnd = closed(a); // resumes: whatever A receives is counted below
  let aGot = 0;
  a.on('data', (d: Buffer) => (aGot += d.length));
  const aConn = (
    await until(
      async () =>
        (
          await k.get('/connections')
        ).body as { items: Array<{ id: string; key: string }> },
      (c) => c.items.length === 1,
    )
  ).items[0] as { id: string; key: string };
  // A's first read is pending in the kernel: its completion will be a packet (with A's wrong key).
  await until(
    async () => ((await k.get(`/ops?connection=${aConn.id}`)).body as { total: number }).total,
    (n) => n === 1,
  );
  const b = await connect(portOf(l));
  const data = payload(200_000);
  const bEcho = readBytes(b, data.length);
  b.write(data);
  t.ok((await bEcho).equals(data), 'the correctly keyed connection echoes byte-exact');
  a.write('A'.repeat(1000));
  const anomaly = await events.until((m) => m.some((e) => e.event === 'anomaly'));
  const ev = anomaly.find((e) => e.event === 'anomaly')?.data;
  t.equal(ev.kind, 'key-mismatch');
  t.equal(ev.expectedKey, aConn.key, "the record belonged to A's socket");
  t.equal(
    BigInt(ev.key),
    BigInt(aConn.key) ^ (1n << 63n),
    'the event shows the key AS DEQUEUED (the wrong one), not the one keyport expected',
  );
  t.equal(ev.connection, aConn.id);
  const end = await aEnd;
  t.equal(aGot, 0, 'A received nothing: no data went through a mis-keyed completion');
  t.not(end.how, 'end', `A was not given a clean end (${end.how} ${end.code ?? ''})`);
  const r = (await k.get('/readyz')).body as Readiness;
  t.ok(r.anomalies.keyMismatch >= 1, `/readyz counts it (${r.anomalies.keyMismatch})`);
  t.ok(r.anomalies.quarantinedRecords >= 1, 'the record was taken out of use');
  const metrics = (await k.get('/metrics')).body as string;
  t.match(metrics, /keyport_completion_anomalies_total\{kind="key-mismatch"\} [1-9]/);
  // B (correctly keyed) is still served: the engine held.
  const again = readBytes(b, 10);
  b.write('still here');
  t.equal((await again).toString(), 'still here', 'the other connection goes on');
  t.equal((await k.get('/healthz')).status, 200);
  b.destroy();
});

t.test('duplicate packets: counted and refused, every stream byte-exact', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
    env: { KEYPORT_TEST_FAULTS: 'duplicate:3' },
  });
  t.teardown(() => k.stop());
  const l = ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
  await echoRounds(t, portOf(l), 7000);
  const r = (await k.get('/readyz')).body as Readiness;
  t.ok(
    r.anomalies.duplicate + r.anomalies.stray > 0,
    `duplicates were refused (duplicate ${r.anomalies.duplicate}, stray ${r.anomalies.stray})`,
  );
  t.equal(r.anomalies.keyMismatch, 0);
  const ops = await until(
    async () => ((await k.get('/ops')).body as { items: Array<{ op: string }> }).items,
    (o) => o.every((x) => x.op === 'accept' || x.op === 'nop'),
  );
  t.ok(
    ops.every((x) => x.op === 'accept' || x.op === 'nop'),
    'nothing left in flight but the accepts',
  );
  t.equal((await k.get('/healthz')).status, 200);
});

t.test(
  'a provider without skip-on-success: inline successes still queue a packet, and are not completed twice',
  {
    skip:
      BACKEND === 'uring'
        ? 'io_uring has no skip-on-success mode: every op completes through the CQ'
        : false,
  },
  async (t) => {
    const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
      env: { KEYPORT_TEST_FAULTS: 'non-ifs:1' },
    });
    t.teardown(() => k.stop());
    const l = ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
    await echoRounds(t, portOf(l), 9000);
    const r = (await k.get('/readyz')).body as Readiness;
    t.same(
      r.anomalies,
      { stray: 0, keyMismatch: 0, duplicate: 0, quarantinedRecords: 0 },
      'no packet was left over: each inline success was completed once, by its packet',
    );
    const metrics = (await k.get('/metrics')).body as string;
    t.notMatch(
      metrics,
      /keyport_inline_completions_total\{op="(recv|send)"\} [1-9]/,
      'no recv or send was completed inline (they all came through the port)',
    );
  },
);

t.test('a throw in the completion path: logged, exit 70 promptly (no hang)', async (t) => {
  const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
    env: { KEYPORT_TEST_FAULTS: 'throw-after:40' },
  });
  const l = ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
  const started = Date.now();
  const clients = Array.from({ length: 10 }, () =>
    sendAndCollect(portOf(l), payload(100_000)).catch(() => null),
  );
  const code = await Promise.race([
    k.exited,
    new Promise<string>((r) => setTimeout(() => r('hung'), 20_000)),
  ]);
  t.equal(code, 70, 'exit code 70');
  t.ok(Date.now() - started < 20_000, `exited in ${Date.now() - started} ms`);
  t.match(k.output(), /injected throw/, 'the error was logged');
  await Promise.all(clients);
  if (code === 'hung') k.proc.kill('SIGKILL');
});

t.test('out of sockets: the accept chain backs off, says so, and heals', async (t) => {
  // IOCP: the backend refuses sockets past a limit (as WSAEMFILE); io_uring: a real descriptor
  // limit (ulimit -n), so IORING_OP_ACCEPT itself fails with EMFILE and clients wait.
  const config = join(OUT_DIR, `faults-${process.pid}.json`);
  writeFileSync(
    config,
    JSON.stringify({ listeners: [{ address: '127.0.0.1:0', mode: 'echo', acceptDepth: 4 }] }),
  );
  const k = await startKeyport(['--config', config], {
    env: BACKEND === 'uring' ? {} : { KEYPORT_TEST_FAULTS: 'socket-limit:10' },
  });
  t.teardown(() => k.stop());
  // One HTTP connection, opened before descriptors run out, carries every request below: a new
  // one might not be accepted while the process is out of descriptors.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const api = (path: string) =>
    new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      http
        .get(`${k.api}${path}`, { agent }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        })
        .on('error', reject);
    });
  await api('/healthz');
  if (BACKEND === 'uring') {
    // A real descriptor limit, set on the running process: room for 8 more descriptors.
    const pid = k.enginePid();
    const open = readdirSync(`/proc/${pid}/fd`).length;
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${open + 8}:${open + 8}`]);
  }
  const listener = async () =>
    ((await api('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
  const l = await listener();
  const clients = [];
  for (let i = 0; i < 20; i++) {
    const c = await connect(portOf(l));
    c.on('error', () => {});
    clients.push(c);
  }
  const degraded = await until(listener, (x) => x.state === 'degraded');
  t.equal(degraded.state, 'degraded', `the listener says degraded (${degraded.acceptError})`);
  t.match(degraded.acceptError ?? '', /EMFILE/, 'with the error that stopped it');
  t.equal(degraded.acceptsPending, 0, 'no accept is posted');
  const ready = await api('/readyz');
  t.equal(ready.status, 503, '/readyz fails');
  t.same((ready.body as Readiness).degradedListeners, [l.id]);
  // No spin: few accept posts while it waits.
  const before = (await listener()).acceptPostsTotal;
  await new Promise((r) => setTimeout(r, 2000));
  const posts = (await listener()).acceptPostsTotal - before;
  t.ok(posts < 60, `${posts} accept posts in 2 s (backing off, not spinning)`);
  const accepted = ((await api('/connections')).body as { total: number }).total;
  t.ok(accepted < 20, `${accepted} of 20 clients accepted; the rest wait in the backlog`);
  // Free all but the last client, which waits in the backlog: the chain heals by itself (with
  // room to spare, so it stays healed) and the waiting client is served.
  for (const c of clients.slice(0, 19)) c.destroy();
  const last = clients[19] as import('node:net').Socket;
  const back = readBytes(last, 5);
  last.write('hello');
  t.equal((await back).toString(), 'hello', 'the last client, which waited, is served');
  const healed = await until(
    listener,
    (x) => x.state === 'listening' && x.acceptsPending > 0 && x.acceptError === null,
  );
  t.equal(healed.state, 'listening', 'back to listening, accepts posted');
  t.equal(healed.acceptError, null, 'the error cleared once an accept succeeded');
  t.equal((await api('/readyz')).status, 200, '/readyz is ready again');
  for (const c of clients) c.destroy();
});

t.test(
  'no socket for the upstream: counted and logged by name, the listener keeps serving',
  async (t) => {
    // Room for the listener and one more socket (IOCP: the one accept's pre-created socket, which
    // becomes the client's): every forwarded client is accepted, and its upstream socket is not.
    const up = await upstream((s) => s.pipe(s));
    t.teardown(() => up.close());
    const config = join(OUT_DIR, `faults-upstream-socket-${process.pid}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        listeners: [
          {
            address: '127.0.0.1:0',
            mode: 'forward',
            target: `127.0.0.1:${up.port}`,
            acceptDepth: 1,
          },
        ],
      }),
    );
    const k = await startKeyport(['--config', config], {
      env: { KEYPORT_TEST_FAULTS: 'socket-limit:2' },
    });
    t.teardown(() => k.stop());
    const l = ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV;
    const CLIENTS = 3;
    for (let i = 0; i < CLIENTS; i++) {
      const how = await connect(portOf(l)).then(
        (s) => closed(s),
        (e: NodeJS.ErrnoException) => ({ how: 'error', code: e.code }),
      );
      t.ok(['end', 'error', 'close'].includes(how.how), `client ${i} closed (${how.how})`);
    }
    const emfile = BACKEND === 'uring' ? 'EMFILE' : 'WSAEMFILE';
    const failures = () =>
      metric(k.api, 'keyport_upstream_connect_failures_total', {
        listener: l.id,
        error: emfile,
      }).catch(() => 0);
    t.equal(await until(failures, (n) => n >= CLIENTS), CLIENTS, `each counted as ${emfile}`);
    const warned = await until(
      async () =>
        logRecords(k, 'upstream connect failed').filter((r) => r.msg === 'upstream connect failed'),
      (w) => w.length > 0,
    );
    t.same(
      warned.map(({ listener, target, error }) => ({ listener, target, error })),
      [{ listener: l.id, target: `127.0.0.1:${up.port}`, error: emfile }],
      'logged once, by name',
    );
    const why = await until(
      async () => k.output(),
      (o) => o.includes('"reason":"upstream socket: '),
    );
    t.match(why, `"reason":"upstream socket: `, 'each close says why');
    const after = await until(
      async () =>
        ((await k.get('/listeners')).body as { items: ListenerV[] }).items[0] as ListenerV,
      (x) => x.state === 'listening' && x.acceptsPending === 1,
    );
    t.equal(after.acceptsPending, 1, 'the accept chain goes on');
    t.equal(
      ((await k.get('/connections')).body as { total: number }).total,
      0,
      'no connection is left behind',
    );
  },
);
