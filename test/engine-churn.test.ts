// Churn: 20 000 connections opened, echoed and closed in parallel batches. Afterwards /ops holds
// only the listener's accepts, /keys only the listener (and the engine heartbeat), and resident
// memory is back near where it was after a warm-up.
import t from 'tap';
import { portOf, request } from './helpers/http.js';
import { BACKEND, startKeyport } from './helpers/keyport.js';
import { metric, rssBytes } from './helpers/metrics.js';
import { sendAndCollect, until } from './helpers/tcp.js';

const TOTAL = 20_000;
const BATCH = 200;

// gc() every 500 ms, so resident memory after the churn shows what is kept, not what is merely
// not collected yet.
const k = await startKeyport(['--listener', '127.0.0.1:0=echo'], {
  env: {
    KEYPORT_WINDOWS_NODE_OPTIONS: '--expose-gc',
    NODE_OPTIONS: '--expose-gc',
    KEYPORT_DEBUG_GC_MS: '500',
  },
});
t.teardown(() => k.stop());
const port = portOf((await request(k.api, 'GET', '/listeners')).body.items[0].address);

async function churn(n: number): Promise<number> {
  let exact = 0;
  for (let done = 0; done < n; done += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, n - done) }, async (_, i) => {
      const data = Buffer.from(`#${done + i}`);
      if ((await sendAndCollect(port, data)).equals(data)) exact++;
    });
    await Promise.all(batch);
  }
  return exact;
}

t.test(`${TOTAL} connections opened and closed leave nothing behind`, async (t) => {
  await churn(2000); // warm-up: pools and JIT reach their working size
  await until(
    () => request(k.api, 'GET', '/connections'),
    (r) => r.body.total === 0,
  );
  await new Promise((r) => setTimeout(r, 1200));
  const baseline = await rssBytes(k.api);
  const heapBefore = await metric(k.api, 'keyport_nodejs_heap_size_used_bytes');
  const started = Date.now();
  const exact = await churn(TOTAL);
  const seconds = (Date.now() - started) / 1000;
  t.equal(exact, TOTAL, 'every connection echoed byte-exact');
  await until(
    () => request(k.api, 'GET', '/connections'),
    (r) => r.body.total === 0,
    30_000,
  );

  const ops = (await request(k.api, 'GET', '/ops')).body.items as Array<{ op: string }>;
  t.same(
    [...new Set(ops.map((o) => o.op))].filter((o) => o !== 'nop'),
    ['accept'],
    '/ops holds only accepts',
  );
  t.equal(ops.filter((o) => o.op === 'accept').length, 32, 'exactly the accept depth');
  const keys = (await request(k.api, 'GET', '/keys')).body.items as Array<{
    owner: { kind: string };
  }>;
  t.same(
    keys.map((x) => x.owner.kind).sort(),
    ['engine', 'listener'],
    '/keys holds only the listener and the heartbeat',
  );

  await new Promise((r) => setTimeout(r, 1200));
  const after = await rssBytes(k.api);
  const heapAfter = await metric(k.api, 'keyport_nodejs_heap_size_used_bytes');
  const mib = (b: number) => (b / 1048576).toFixed(1);
  process.stderr.write(
    `[churn ${BACKEND}] ${TOTAL} connections in ${seconds.toFixed(1)} s (${Math.round(TOTAL / seconds)}/s); ` +
      `RSS ${mib(baseline)} → ${mib(after)} MiB; JS heap used ${mib(heapBefore)} → ${mib(heapAfter)} MiB\n`,
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
