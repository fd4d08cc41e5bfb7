// GET /metrics from a real keyport (IOCP under Wine, or io_uring: npm test runs both): the
// exposition passes promtool, values move with real traffic, OpenMetrics is negotiated, and
// deploy/ uses only names the exposition has.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ERR, ROOT, startKeyport } from '../helpers/keyport.js';
import { closed, connect, freePort, readBytes, until } from '../helpers/tcp.js';

interface ListenerV {
  id: string;
  address: string;
  acceptDepth: number;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  text: string;
  samples: Sample[];
  /** Family names from # TYPE lines and every sample name. */
  names: Set<string>;
}

function parse(text: string): Scrape {
  const samples: Sample[] = [];
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type?.[1]) names.add(type[1]);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m?.[1] || !m[3]) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g))
      labels[k as string] = v as string;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
    names.add(m[1]);
  }
  return { text, samples, names };
}

/** The one sample with this name whose labels include `labels` (undefined when none). */
function value(s: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = s.samples.filter(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
  );
  return hits.length === 1 ? hits[0]?.value : undefined;
}

function promtool(args: string[], input?: string): { ok: boolean; out: string } {
  const r = spawnSync('promtool', args, { input, encoding: 'utf8' });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return { ok: false, out: `promtool unavailable (${code}): apt-get install -y prometheus` };
  }
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

const refused = await freePort();
const k = await startKeyport([
  '--listener',
  '127.0.0.1:0=echo',
  '--listener',
  `127.0.0.1:0=forward:127.0.0.1:${refused}`,
]);
t.teardown(() => k.stop());

const listeners = ((await k.get('/listeners')).body as { items: ListenerV[] }).items;
const [echoL, fwdL] = listeners as [ListenerV, ListenerV];
const portOf = (l: ListenerV) => Number(l.address.split(':').pop());

async function scrape(accept?: string): Promise<Scrape & { contentType: string }> {
  const r = await fetch(`${k.api}/metrics`, accept ? { headers: { accept } } : {});
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${await r.text()}`);
  return { ...parse(await r.text()), contentType: r.headers.get('content-type') ?? '' };
}

// Every connection this file makes to each listener, to compare with keyport_accepted_total.
const made = new Map<string, number>();
async function open(l: ListenerV) {
  made.set(l.id, (made.get(l.id) ?? 0) + 1);
  return connect(portOf(l));
}

t.test('the exposition passes promtool check metrics', async (t) => {
  const s = await scrape();
  t.match(s.contentType, /^text\/plain; version=0\.0\.4/);
  const r = promtool(['check', 'metrics'], s.text);
  t.ok(r.ok, 'promtool check metrics', { out: r.out });
  t.ok(s.names.has('process_cpu_seconds_total'), 'process metrics, unprefixed');
  t.ok(s.names.has('nodejs_eventloop_lag_p99_seconds'), 'Node.js metrics, unprefixed');
  t.notOk(
    [...s.names].some((n) => /^keyport_(process|nodejs)_/.test(n)),
    'no keyport_-prefixed process metrics left',
  );
  t.equal(value(s, 'keyport_connections', { listener: echoL.id }), 0);
});

t.test('after N echo round trips the recv and send histograms count at least N', async (t) => {
  const N = 100;
  const before = await scrape();
  const count = (s: Scrape, op: string) =>
    value(s, 'keyport_completion_latency_seconds_count', { op }) ?? Number.NaN;
  const bytes = (s: Scrape, direction: string) =>
    value(s, 'keyport_bytes_total', { listener: echoL.id, direction }) ?? Number.NaN;
  const s = await open(echoL);
  const msg = Buffer.alloc(64, 0x6b);
  for (let i = 0; i < N; i++) {
    s.write(msg);
    await readBytes(s, msg.length);
  }
  // The client saw its last echo when the kernel sent it; the engine may still have that send's
  // inline completion queued (it yields to the event loop every few ms): wait for it.
  const live = await until(
    scrape,
    (x) =>
      (value(x, 'keyport_ops_in_flight', { op: 'recv' }) ?? 0) >= 1 &&
      bytes(x, 'out') - bytes(before, 'out') === N * 64,
  );
  t.equal(value(live, 'keyport_connections', { listener: echoL.id }), 1, 'one open connection');
  t.ok((value(live, 'keyport_ops_in_flight', { op: 'recv' }) ?? 0) >= 1, 'its recv in flight');
  t.ok(count(live, 'recv') - count(before, 'recv') >= N, `recv count +${N} or more`);
  t.ok(count(live, 'send') - count(before, 'send') >= N, `send count +${N} or more`);
  t.equal(bytes(live, 'in') - bytes(before, 'in'), N * 64, 'bytes in, live connection');
  t.equal(bytes(live, 'out') - bytes(before, 'out'), N * 64, 'bytes out, live connection');
  const recvBuckets = live.samples.filter(
    (x) => x.name === 'keyport_completion_latency_seconds_bucket' && x.labels.op === 'recv',
  );
  t.equal(recvBuckets[0]?.labels.le, '0.00001', 'buckets start at 10 µs');
  t.equal(recvBuckets.at(-1)?.value, count(live, 'recv'), '+Inf bucket equals the count');
  s.end();
  await closed(s);
  const after = await until(
    scrape,
    (x) => value(x, 'keyport_connections', { listener: echoL.id }) === 0,
  );
  t.equal(bytes(after, 'in') - bytes(before, 'in'), N * 64, 'bytes kept once it closed');
  t.equal(bytes(after, 'out') - bytes(before, 'out'), N * 64);
});

t.test('a refused upstream counts the named error and the connect failure', async (t) => {
  // keyport resets the client when the upstream refuses, possibly before the client's own
  // connect() has reported success.
  const s = await open(fwdL).catch(() => null);
  if (s) {
    s.on('error', () => {});
    await closed(s);
  }
  const failures = (x: Scrape) =>
    value(x, 'keyport_upstream_connect_failures_total', { listener: fwdL.id }) ?? 0;
  const x = await until(scrape, (x) => failures(x) >= 1);
  t.equal(failures(x), 1, 'one connect failure on the forward listener');
  t.equal(value(x, 'keyport_upstream_connect_failures_total', { listener: echoL.id }), 0);
  const errs = x.samples.filter(
    (e) => e.name === 'keyport_completion_errors_total' && e.labels.op === 'connect',
  );
  t.equal(errs.length, 1, 'one connect error series');
  t.equal(errs[0]?.labels.error, ERR.refused, 'the error is named');
  t.equal(errs[0]?.value, 1);
  t.equal(
    value(x, 'keyport_connections_closed_total', {
      listener: fwdL.id,
      reason: 'upstream-connect-failed',
    }),
    1,
    'the reset client is counted as closed: upstream-connect-failed',
  );
});

t.test('build_info names the version, the backend and the Node.js version', async (t) => {
  const s = await scrape();
  const info = s.samples.filter((x) => x.name === 'keyport_build_info');
  t.equal(info.length, 1, 'one series');
  t.equal(info[0]?.value, 1);
  const health = (await k.get('/healthz')).body as { version?: string };
  t.match(info[0]?.labels, {
    backend: process.env.KEYPORT_TEST_BACKEND === 'uring' ? 'uring' : 'iocp',
    node: /^v\d+\.\d+\.\d+/,
  });
  t.match(info[0]?.labels.version, /^\d+\.\d+\.\d+/);
  if (health.version) t.equal(info[0]?.labels.version, health.version, 'as /healthz says');
});

t.test(
  'connections closed by their clients: closed_total{reason="eof"} and durations',
  async (t) => {
    const N = 3;
    const closedEof = (x: Scrape) =>
      value(x, 'keyport_connections_closed_total', { listener: echoL.id, reason: 'eof' }) ?? 0;
    const durations = (x: Scrape) =>
      value(x, 'keyport_connection_duration_seconds_count', { listener: echoL.id }) ?? Number.NaN;
    const before = await scrape();
    t.ok(Number.isFinite(durations(before)), 'the listener has a duration series from the start');
    const socks = await Promise.all(Array.from({ length: N }, () => open(echoL)));
    for (const s of socks) {
      s.write('x');
      await readBytes(s, 1);
    }
    const held = 150; // ms: every duration is at least this
    await new Promise((r) => setTimeout(r, held));
    for (const s of socks) s.end();
    await Promise.all(socks.map(closed));
    const after = await until(scrape, (x) => closedEof(x) - closedEof(before) >= N);
    t.equal(closedEof(after) - closedEof(before), N, `closed_total{reason="eof"} +${N}`);
    t.equal(durations(after) - durations(before), N, `duration count +${N}`);
    const bucket = (x: Scrape, le: string) =>
      value(x, 'keyport_connection_duration_seconds_bucket', { listener: echoL.id, le }) ?? 0;
    t.equal(bucket(after, '0.1') - bucket(before, '0.1'), 0, `none shorter than ${held} ms`);
    t.equal(bucket(after, '+Inf') - bucket(before, '+Inf'), N, '+Inf bucket +N');
    const sum = (x: Scrape) =>
      value(x, 'keyport_connection_duration_seconds_sum', { listener: echoL.id }) ?? 0;
    t.ok(sum(after) - sum(before) >= (N * held) / 1000, 'sum covers the time they were held');
    const buckets = after.samples.filter(
      (x) =>
        x.name === 'keyport_connection_duration_seconds_bucket' && x.labels.listener === echoL.id,
    );
    t.equal(buckets[0]?.labels.le, '0.001', 'buckets start at 1 ms');
    t.equal(buckets.at(-2)?.labels.le, '3600', 'and end at 1 h');
    t.equal(
      value(after, 'keyport_connections_closed_total', {
        listener: echoL.id,
        reason: 'client-error',
      }),
      undefined,
      'no client error',
    );
  },
);

t.test('accepted_total equals the connections made; accepts return to the depth', async (t) => {
  const socks = await Promise.all(Array.from({ length: 10 }, () => open(echoL)));
  await Promise.all(
    socks.map(async (s, i) => {
      s.write(`hello ${i}`);
      await readBytes(s, `hello ${i}`.length);
    }),
  );
  const busy = await scrape();
  t.equal(value(busy, 'keyport_connections', { listener: echoL.id }), 10);
  t.ok((value(busy, 'keyport_ops_in_flight', { op: 'recv' }) ?? 0) >= 10, 'a recv per client');
  for (const s of socks) s.end();
  await Promise.all(socks.map(closed));

  const depth = listeners.reduce((n, l) => n + l.acceptDepth, 0);
  t.same(
    listeners.map((l) => l.acceptDepth),
    [32, 32],
    'default accept depth per listener',
  );
  const idle = await until(
    scrape,
    (x) =>
      value(x, 'keyport_ops_in_flight', { op: 'accept' }) === depth &&
      value(x, 'keyport_ops_in_flight', { op: 'recv' }) === 0,
  );
  t.equal(value(idle, 'keyport_ops_in_flight', { op: 'accept' }), depth, 'accepts at the depth');
  t.equal(value(idle, 'keyport_ops_in_flight', { op: 'recv' }), 0, 'no recv left');
  t.equal(value(idle, 'keyport_ops_in_flight', { op: 'send' }), 0, 'no send left');
  for (const l of listeners) {
    t.equal(value(idle, 'keyport_connections', { listener: l.id }), 0, `${l.id}: none open`);
    t.equal(
      value(idle, 'keyport_accepted_total', { listener: l.id }),
      made.get(l.id) ?? 0,
      `${l.id}: accepted_total = ${made.get(l.id)} connections made`,
    );
  }
  t.equal(
    value(idle, 'keyport_completion_latency_seconds_count', { op: 'accept' }),
    [...made.values()].reduce((a, b) => a + b, 0),
    'one accept completion per connection',
  );
});

t.test('OpenMetrics when the scraper asks for it, text otherwise', async (t) => {
  // What Prometheus 2.x sends by default.
  const prom =
    'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
  for (const accept of [prom, 'application/openmetrics-text; version=1.0.0']) {
    const om = await scrape(accept);
    t.match(om.contentType, /^application\/openmetrics-text; version=1\.0\.0/, accept);
    t.ok(om.text.endsWith('# EOF\n'), 'ends with # EOF');
    t.match(om.text, /^# TYPE keyport_accepted counter$/m, 'counter family without _total');
    t.ok(value(om, 'keyport_accepted_total', { listener: echoL.id }) !== undefined);
  }
  for (const accept of ['text/plain', '*/*', 'application/json', '']) {
    const tx = await scrape(accept);
    t.match(tx.contentType, /^text\/plain; version=0\.0\.4/, `Accept: ${accept || '(none)'}`);
    t.notOk(tx.text.includes('# EOF'));
  }
  // prom-client renames counters in place when it renders OpenMetrics; text must not notice.
  const tx = await scrape();
  t.match(tx.text, /^# TYPE keyport_accepted_total counter$/m);
  t.match(tx.text, /^# TYPE process_cpu_seconds_total counter$/m);
  t.ok(promtool(['check', 'metrics'], tx.text).ok, 'still passes promtool after OpenMetrics');
});

t.test('deploy/: the dashboard and the scrape config use only real metric names', async (t) => {
  const s = await scrape();
  const dashboard = readFileSync(join(ROOT, 'deploy', 'grafana-dashboard.json'), 'utf8');
  const exprs: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object')
      for (const [key, x] of Object.entries(v)) {
        if ((key === 'expr' || key === 'definition') && typeof x === 'string') exprs.push(x);
        else walk(x);
      }
  };
  walk(JSON.parse(dashboard));
  t.ok(exprs.length >= 10, `${exprs.length} queries`);
  // Every query follows the instance picker (the variables' own label_values queries aside).
  for (const e of exprs.filter((e) => !e.startsWith('label_values(')))
    t.match(e, /instance=~"\$instance"/, `per instance: ${e.slice(0, 60)}`);
  const used = new Set(dashboard.match(/\b(?:keyport|process|nodejs)_[a-z0-9_]+/g) ?? []);
  for (const name of [
    'keyport_completion_latency_seconds_bucket',
    'keyport_connections',
    'keyport_bytes_total',
    'keyport_completion_errors_total',
    'keyport_connections_closed_total',
    'keyport_connection_duration_seconds_bucket',
    'keyport_build_info',
    'process_cpu_seconds_total',
  ])
    t.ok(used.has(name), `dashboard shows ${name}`);
  for (const name of used) t.ok(s.names.has(name), `${name} is in the exposition`);

  // The queries parse as PromQL (Grafana's variables replaced by plain values).
  const dir = mkdtempSync(join(tmpdir(), 'keyport-dash-'));
  const rules = join(dir, 'rules.yml');
  const queries = exprs
    .filter((e) => !e.startsWith('label_values('))
    .map((e) =>
      e
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$job', '.*')
        .replaceAll('$instance', '.*')
        .replaceAll('$op', 'recv'),
    );
  writeFileSync(
    rules,
    `groups:\n  - name: dashboard\n    rules:\n${queries
      .map((q, i) => `      - record: dashboard:q${i}\n        expr: ${JSON.stringify(q)}\n`)
      .join('')}`,
  );
  const r = promtool(['check', 'rules', rules]);
  t.ok(r.ok, 'promtool check rules on the dashboard queries', { out: r.out });

  const c = promtool(['check', 'config', join(ROOT, 'deploy', 'prometheus.yml')]);
  t.ok(c.ok, 'promtool check config deploy/prometheus.yml', { out: c.out });
  t.match(readFileSync(join(ROOT, 'deploy', 'prometheus.yml'), 'utf8'), /127\.0\.0\.1:9180/);
});
