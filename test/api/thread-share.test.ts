// The API's share of the engine's thread (src/api/thread-share.ts) over real HTTP: with the meter
// deep in debt, a view request waits for its turn, while the probes, marked `unmetered` on their
// routes, are answered at once, whatever query string a prober adds. The meter's own count of
// waits tells which requests waited: no clock is read.
import t from 'tap';
import { buildApi } from '../../src/api/app.js';
import { ThreadShare } from '../../src/api/thread-share.js';
import { publicReadsControl } from '../helpers/stub-control.js';
import { until } from '../helpers/tcp.js';

t.test('probes are answered at once while the meter makes view requests wait', async (t) => {
  // 0.1% of the thread and a 1 ms burst; 1 s of work charged: a metered request would wait
  // about 1 000 s.
  const share = new ThreadShare({ share: 0.001, burstMs: 1 });
  const app = buildApi({ control: publicReadsControl, threadShare: share });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  share.charge(1000);
  t.ok(share.debtMs() > 100_000, 'the meter is in debt');

  for (const path of ['/healthz', '/readyz', '/healthz?from=kubelet', '/readyz?x=1&y=2']) {
    // A probe made to wait would wait ~1 000 s: give up long before, and say so.
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(20_000) }).catch(
      (err: Error) => err,
    );
    t.equal(res instanceof Response ? res.status : res.message, 200, `${path}: answered`);
    if (res instanceof Response) await res.arrayBuffer();
    t.equal(share.waits, 0, `${path}: did not wait for the API's turn`);
  }

  // A view request (the API's own description) waits; once the debt is forgiven it is answered.
  const pending = fetch(`${url}/openapi.json`);
  await until(
    async () => share.waits,
    (n) => n === 1,
  );
  t.equal(share.waits, 1, 'the view request waits for its turn');
  share.charge(-1e9); // the refill caps the bucket at its burst: out of debt
  const res = await pending;
  t.equal(res.status, 200, 'then it is answered');
  await res.arrayBuffer();
});
