// Churn (issue 14): keyport with a forward listener in front of an echo upstream, driven for
// KEYPORT_TEST_CHURN_S seconds of wall time (default 60: long enough for the first TIME_WAIT
// sockets to expire on Linux) at the highest rate this machine allows (under Wine, the highest its
// ports allow: see PACE). CONCURRENCY clients are in flight, each connecting, sending a small
// payload, reading its exact echo and then closing, so that keyport closes first toward the
// upstream and its upstream sockets hold the TIME_WAIT, as in issue 14. One connection in
// ECHO_EVERY goes to an echo listener of the same keyport instead, so the echo relay churns under
// the same load (this replaces the former 20 000-connection echo churn, at no extra cost), and
// during the first half one in REFUSED_EVERY goes to a forward listener whose upstream refuses:
// a churn of connect failures, which must be counted by name and logged once, then summed up
// every 10 s (its summaries are due while the churn goes on, so they cost no extra time).
// Afterwards: every connection got its bytes back and ended cleanly, /ops holds only the
// listeners' accepts, /keys only the listeners and the heartbeat, /connections is empty, no
// upstream connect of the churn failed and no error says a port ran out, and memory is back
// near its baseline.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { BACKEND, ERR, logRecords, startKeyport, WINE } from '../helpers/keyport.js';
import { metric, rssBytes } from '../helpers/metrics.js';
import { freePort, until, upstream } from '../helpers/tcp.js';

const SECONDS = Number(process.env.KEYPORT_TEST_CHURN_S ?? 60);
const CONCURRENCY = Number(process.env.KEYPORT_TEST_CHURN_CONCURRENCY ?? 64);
const ECHO_EVERY = 8;
const REFUSED_EVERY = 16;

/** A sysctl of this (Linux) host, or null where there is none. */
function sysctl(name: string): string | null {
  try {
    return readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim();
  } catch {
    return null;
  }
}

/**
 * New connections per second that this host's ports allow, when none of the upstream sockets
 * keyport closes first can reuse a port in TIME_WAIT; null when they can (no limit here).
 * Under Wine keyport's ConnectEx path binds port 0 first, and that bind happens on Linux (Wine
 * does not defer it as SO_REUSE_UNICASTPORT asks: one TIME_WAIT socket per forwarded connection
 * was counted), where bind(0) wants a port no socket holds, TIME_WAIT included, whatever the
 * destination. So each forwarded connection holds a port of ip_local_port_range for the 60 s of
 * TIME_WAIT, and the clients' own TIME_WAIT sockets take from the same range. Natively, io_uring's connect() picks a
 * port per destination and reuses loopback TIME_WAIT ports (tcp_tw_reuse 2, the default; 0 turns
 * that off). Past this budget connections fail by design (docs/forwarding.md), not by a defect.
 */
function portBudget(): number | null {
  const [first, last] = (sysctl('ip_local_port_range') ?? '').split(/\s+/).map(Number);
  if (first === undefined || last === undefined || Number.isNaN(first + last)) return null;
  const reusesTimeWait = BACKEND === 'uring' && sysctl('tcp_tw_reuse') !== '0';
  return reusesTimeWait ? null : (last - first + 1) / 60;
}
/** Pace below the budget: 40 % of it leaves room for the clients' ports and other sockets. */
const PACE = (() => {
  const budget = portBudget();
  return budget === null ? null : Math.floor(budget * 0.4);
})();

const echoUp = await upstream((s) => s.pipe(s));
const closedPort = await freePort();
// gc() every 500 ms, so resident memory after the churn shows what is kept, not what is merely
// not collected yet.
const k = await startKeyport(
  [
    '--listener',
    `127.0.0.1:0=forward:127.0.0.1:${echoUp.port}`,
    '--listener',
    '127.0.0.1:0=echo',
    '--listener',
    `127.0.0.1:0=forward:127.0.0.1:${closedPort}`,
  ],
  {
    env: {
      KEYPORT_WINDOWS_NODE_OPTIONS: '--expose-gc',
      NODE_OPTIONS: '--expose-gc',
      KEYPORT_DEBUG_GC_MS: '500',
      // As operators run it: no log line per connection (debug would write one per close).
      KEYPORT_LOG_LEVEL: 'info',
    },
  },
);
t.teardown(async () => {
  await k.stop();
  await echoUp.close();
});
const listeners = (await request(k.api, 'GET', '/listeners')).body.items as Array<{
  id: string;
  address: string;
}>;
const fwd = { id: listeners[0]?.id as string, port: portOf(listeners[0]?.address as string) };
const echo = { id: listeners[1]?.id as string, port: portOf(listeners[1]?.address as string) };
const refused = { id: listeners[2]?.id as string, port: portOf(listeners[2]?.address as string) };

/**
 * One client: connect, send `data`, read exactly its echo, FIN, then wait for keyport's FIN.
 * Resolves with null when all of that happened, else with the kind of failure.
 */
function roundTrip(port: number, data: Buffer): Promise<string | null> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    let echoed = false;
    let settled = false;
    const done = (kind: string | null) => {
      if (settled) return;
      settled = true;
      s.destroy();
      resolve(kind);
    };
    const s = net.connect({ port, host: '127.0.0.1' }, () => s.write(data));
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length > data.length) done('more bytes than sent');
      else if (got.length === data.length) {
        if (!got.equals(data)) return done('echo differs');
        echoed = true;
        s.end();
      }
    });
    s.on('end', () => {
      if (!echoed) done(`FIN after ${got.length} of ${data.length} B`);
    });
    s.on('close', () => done(echoed ? null : `closed after ${got.length} of ${data.length} B`));
    s.on('error', (e: NodeJS.ErrnoException) =>
      done(`${echoed ? 'after the echo' : got.length ? 'mid-echo' : 'before any byte'}: ${e.code}`),
    );
    // A guard against a hang, not a timing assertion: such a client is counted as failed.
    s.setTimeout(30_000, () => done(`no progress for 30 s (${got.length} of ${data.length} B)`));
  });
}

interface Tally {
  forward: number;
  echo: number;
  /** Clients of the refused listener, closed by keyport without a byte, as they must be. */
  refused: number;
  failures: Map<string, number>;
}

/**
 * CONCURRENCY clients back to back, until `seconds` have passed or `count` were started; no more
 * than PACE a second where the ports set a budget. One in REFUSED_EVERY goes to the refused
 * listener while fewer than `refuseForMs` have passed.
 */
async function churn(limit: { seconds?: number; count?: number; refuseForMs?: number }) {
  const tally: Tally = { forward: 0, echo: 0, refused: 0, failures: new Map() };
  const t0 = Date.now();
  const end = t0 + (limit.seconds ?? Number.POSITIVE_INFINITY) * 1000;
  const fail = (kind: string) => tally.failures.set(kind, (tally.failures.get(kind) ?? 0) + 1);
  let started = 0;
  const worker = async () => {
    while (Date.now() < end && started < (limit.count ?? Number.POSITIVE_INFINITY)) {
      const n = started++;
      const due = PACE === null ? 0 : t0 + (n * 1000) / PACE;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const data = Buffer.from(`#${n} churn`);
      if (n % REFUSED_EVERY === REFUSED_EVERY - 1 && Date.now() - t0 < (limit.refuseForMs ?? 0)) {
        // Accepted, then reset when the upstream refuses: no byte may come back.
        const failure = await roundTrip(refused.port, data);
        if (failure !== null && / 0 of |before any byte/.test(failure)) tally.refused++;
        else fail(`refused: ${failure ?? 'echoed'}`);
        continue;
      }
      const to = n % ECHO_EVERY === ECHO_EVERY - 1 ? 'echo' : 'forward';
      const failure = await roundTrip(to === 'echo' ? echo.port : fwd.port, data);
      if (failure === null) tally[to]++;
      else fail(`${to}: ${failure}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return tally;
}

/** Sockets in TIME_WAIT on this machine: all, and those whose peer port is one of `ports`. */
function timeWait(ports: Record<string, number>): string {
  const byPort = new Map(Object.values(ports).map((p) => [p, 0]));
  let all = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '06') continue; // TIME_WAIT
      all++;
      const port = Number.parseInt(f[2]?.split(':').pop() ?? '', 16);
      if (byPort.has(port)) byPort.set(port, (byPort.get(port) ?? 0) + 1);
    }
  }
  const parts = Object.entries(ports).map(([what, p]) => `${byPort.get(p)} toward ${what}`);
  return `TIME_WAIT: ${parts.join(', ')}; ${all} on the machine`;
}

const quiet = () =>
  until(
    () => request(k.api, 'GET', '/connections'),
    (r) => r.body.total === 0,
    30_000,
  );

/** Waits until keyport has run two more full GCs (KEYPORT_DEBUG_GC_MS) than when called. */
async function twoMoreGcs(): Promise<void> {
  const gcs = () =>
    metric(k.api, 'nodejs_gc_duration_seconds_count', { kind: 'major' }).catch(() => 0);
  const before = await gcs();
  await until(gcs, (n) => n >= before + 2, 30_000);
}

let tally: Tally | null = null;
let churnStartedAt = 0;

t.test(`${SECONDS} s of forward churn at full rate leaves nothing behind`, async (t) => {
  const warm = await churn({ count: 10 * CONCURRENCY }); // pools and JIT reach their working size
  t.same([...warm.failures], [], 'warm-up: no failure');
  await quiet();
  await twoMoreGcs();
  const baseline = await rssBytes(k.api);
  const heapBefore = await metric(k.api, 'nodejs_heap_size_used_bytes');
  const failures = () =>
    metric(k.api, 'keyport_upstream_connect_failures_total', { listener: fwd.id });
  const failuresBefore = await failures();
  const cpu = () => metric(k.api, 'process_cpu_seconds_total');
  const cpuBefore = await cpu();

  churnStartedAt = performance.now();
  const started = Date.now();
  const result = await churn({ seconds: SECONDS, refuseForMs: (SECONDS * 1000) / 2 });
  tally = result;
  const seconds = (Date.now() - started) / 1000;
  const cpuUsed = (await cpu()) - cpuBefore;
  const total = result.forward + result.echo;
  const where = BACKEND === 'uring' ? 'uring' : `iocp on Wine ${WINE}`;
  const line =
    `[churn ${where}] ${seconds.toFixed(1)} s, ${CONCURRENCY} in flight: ${result.forward} forwarded ` +
    `(${Math.round(result.forward / seconds)}/s) + ${result.echo} echoed ` +
    `(${Math.round(result.echo / seconds)}/s), ${total} in all (${Math.round(total / seconds)}/s), ` +
    `and ${result.refused} refused upstream connects in the first half; ` +
    `keyport used ${cpuUsed.toFixed(1)} s of CPU` +
    (PACE === null ? '' : `; paced at ≤ ${PACE}/s (the ports' budget)`);
  const tw = timeWait({
    'the upstream (keyport closed first)': echoUp.port,
    'the forward listener (clients closed first)': fwd.port,
  });
  t.comment(line);
  t.comment(tw);
  // The failures by kind go to stderr too: a CI log keeps stderr, not every tap comment.
  const failed = [...result.failures].map(([kind, n]) => `failed: ${n} × ${kind}`);
  process.stderr.write(`${[line, tw, ...failed].join('\n')}\n`);
  for (const f of failed) t.comment(f);
  t.same(Object.fromEntries(result.failures), {}, 'no connection failed (failures by kind)');
  t.ok(result.forward > 0 && result.echo > 0, 'both listeners served connections');

  const conns = await quiet();
  t.equal(conns.body.total, 0, '/connections is empty');
  const ops = (await request(k.api, 'GET', '/ops')).body.items as Array<{
    op: string;
    owner: { kind: string; id: string };
  }>;
  const busy = ops.filter((o) => o.op !== 'nop');
  t.same(
    [...new Set(busy.map((o) => `${o.op} on ${o.owner.kind}`))],
    ['accept on listener'],
    '/ops holds only the listeners’ accepts',
  );
  t.equal(busy.length, 96, 'exactly the accept depth of each listener (3 × 32)');
  const keys = (await request(k.api, 'GET', '/keys')).body.items as Array<{
    owner: { kind: string };
  }>;
  t.same(
    keys.map((x) => x.owner.kind).sort(),
    ['engine', 'listener', 'listener', 'listener'],
    '/keys holds only the listeners and the heartbeat',
  );
  t.equal(
    await failures(),
    failuresBefore,
    'keyport_upstream_connect_failures_total unchanged: no upstream connect of the churn failed',
  );
  const exposition = await (await fetch(`${k.api}/metrics`)).text();
  const portErrors = exposition
    .split('\n')
    .filter((l) => /^keyport_\w+\{[^}]*(ADDRINUSE|ADDRNOTAVAIL|NOBUFS)/.test(l));
  t.same(portErrors, [], 'no error of a port run out (ADDRINUSE, ADDRNOTAVAIL, NOBUFS)');

  await twoMoreGcs();
  const after = await rssBytes(k.api);
  const heapAfter = await metric(k.api, 'nodejs_heap_size_used_bytes');
  const mib = (b: number) => (b / 1048576).toFixed(1);
  t.comment(
    `RSS ${mib(baseline)} → ${mib(after)} MiB; JS heap used ${mib(heapBefore)} → ${mib(heapAfter)} MiB`,
  );
  t.ok(
    heapAfter - heapBefore < 4 * 1048576,
    `the JS heap is back near its baseline (${mib(heapAfter - heapBefore)} MiB)`,
  );
  t.ok(
    after - baseline < 16 * 1048576,
    `resident memory back near its baseline (${mib(after - baseline)} MiB growth)`,
  );
});

t.test(
  'a churn of refused upstream connects: counted by name, logged once, then summed up',
  async (t) => {
    const r = tally as Tally | null;
    if (!r) return t.fail('the churn did not run');
    t.ok(r.refused > 1, `${r.refused} clients were refused`);
    const counted = await metric(k.api, 'keyport_upstream_connect_failures_total', {
      listener: refused.id,
      error: ERR.refused,
    });
    t.equal(counted, r.refused, `each counted as ${ERR.refused}`);
    const lines = (msg: string) =>
      logRecords(k, msg).filter((x) => x.msg === msg && x.listener === refused.id);
    // The last summary is due 10 s after the refusals' last window began: normally long past.
    const again = await until(
      async () => lines('upstream connect failed again'),
      (l) => l.reduce((n, x) => n + Number(x.suppressed), 0) >= r.refused - 1,
      30_000,
    );
    const first = lines('upstream connect failed');
    t.same(
      first.map(({ level, target, error }) => ({ level, target, error })),
      [{ level: 40, target: `127.0.0.1:${closedPort}`, error: ERR.refused }],
      'the first refusal is logged at once, by name, with the listener and the target',
    );
    t.equal(
      again.reduce((n, x) => n + Number(x.suppressed), 0),
      r.refused - 1,
      'the summaries count every other refusal',
    );
    t.ok(
      again.every((x) => Number(x.windowMs) >= 10_000 && x.error === ERR.refused),
      `at most one summary per 10 s (windows: ${again.map((x) => x.windowMs).join(', ')} ms)`,
    );
    const spanMs = performance.now() - churnStartedAt;
    t.ok(
      again.length <= Math.ceil(spanMs / 10_000),
      `${again.length} summaries in ${Math.round(spanMs / 1000)} s`,
    );
    const summary = `[churn] ${r.refused} refused upstream connects → ${first.length + again.length} warnings in keyport's log`;
    t.comment(summary);
    process.stderr.write(`${summary}\n`);
  },
);
