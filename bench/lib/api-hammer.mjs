// Requests keyport's control-plane routes back to back (one in flight, keep-alive). Driven by
// lines on stdin: `go` starts (or resumes) the requests, `pause` stops them after the one in
// flight; end of stdin (or SIGTERM) ends the process, which then prints one JSON line:
// requests, rate over the active time, status codes per route, its own CPU. It prints
// {"event":"ready"} at start, {"event":"started"} at the first answer after each `go`, and
// {"event":"paused"} once a `pause` has taken effect. The control-plane workload runs it (two of
// them: the "two clients looping" condition). The result has every request's latency (lat_ms).
//   node api-hammer.mjs --port P [--paths /connections,/ops,/metrics] [--timeout-ms 5000]
import http from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { timedGet } from './timed-get.mjs';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    paths: { type: 'string', default: '/connections,/ops,/metrics' },
    'timeout-ms': { type: 'string', default: '5000' },
  },
});
const paths = values.paths.split(',');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const fresh = () => ({ n: 0, bytes: 0, status: {}, ms: 0, lat: [] });
const stats = Object.fromEntries(paths.map((p) => [p, fresh()]));
const t0 = Date.now();
const log = (what) => process.stderr.write(`${((Date.now() - t0) / 1000).toFixed(3)} ${what}\n`);
const emit = (obj) => {
  log(`emit ${JSON.stringify(obj).slice(0, 200)}`);
  process.stdout.write(`${JSON.stringify(obj)}\n`);
};
let errors = 0; // requests that failed (refused, reset, timed out); counted after the warm-up
let stopping = false;
let paused = true;
let wake = null;
let activeNs = 0n;
let activeSince = null;
let announce = false;

async function get(path, timeoutMs = Number(values['timeout-ms'])) {
  const r = await timedGet({ port: Number(values.port), path, agent, timeoutMs });
  if (typeof r.status !== 'number') {
    errors++;
    if (r.status !== 'error') await new Promise((res) => setTimeout(res, 50)); // no spin on a refusal
    return;
  }
  const s = stats[path];
  s.n++;
  s.bytes += r.bytes;
  s.status[r.status] = (s.status[r.status] ?? 0) + 1;
  s.ms += r.ms;
  s.lat.push(Math.round(r.ms * 100) / 100);
}

async function loop() {
  for (let i = 0; !stopping; i++) {
    if (paused) {
      if (activeSince !== null) {
        activeNs += process.hrtime.bigint() - activeSince;
        activeSince = null;
        emit({ event: 'paused' });
      }
      await new Promise((r) => {
        wake = r;
      });
      if (stopping) break;
      activeSince = process.hrtime.bigint();
      announce = true;
    }
    await get(paths[i % paths.length]);
    if (announce) {
      announce = false;
      emit({ event: 'started' });
    }
  }
}

function finish() {
  if (stopping) return;
  stopping = true;
  if (activeSince !== null) activeNs += process.hrtime.bigint() - activeSince;
  const active = Number(activeNs) / 1e9;
  const requests = Object.values(stats).reduce((a, s) => a + s.n, 0);
  const cpu = process.cpuUsage();
  const routes = Object.fromEntries(
    Object.entries(stats).map(([p, s]) => [
      p,
      {
        n: s.n,
        status: s.status,
        mean_ms: s.n ? s.ms / s.n : null,
        mean_bytes: s.n ? s.bytes / s.n : null,
        lat_ms: s.lat,
      },
    ]),
  );
  emit({
    requests,
    active_s: active,
    req_per_s: active > 0 ? requests / active : 0,
    errors,
    routes,
    cpu_pct_of_active: active > 0 ? (100 * (cpu.user + cpu.system)) / 1e6 / active : null,
  });
  process.exit(0);
}

process.on('SIGTERM', finish);
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = line.trim();
  log(`command ${cmd}`);
  if (cmd === 'go' && paused) {
    paused = false;
    wake?.();
  } else if (cmd === 'pause') {
    if (paused && activeSince === null) emit({ event: 'paused' }); // already idle
    paused = true;
  }
});
rl.on('close', finish);
// One request per route before anything is measured: a route's first answer may include
// loading its code (slow under Wine), which is start-up, not control-plane cost.
const warm = {};
for (const p of paths) {
  await get(p, 30000);
  warm[p] = Object.keys(stats[p].status).join(',') || 'no answer';
  stats[p] = fresh();
}
errors = 0;
emit({ event: 'ready', warm });
loop();
