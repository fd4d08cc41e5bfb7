// What an open status page and a Prometheus server do to keyport's API: every 1.5 s the page's
// poll (in parallel: /listeners, /connections?limit=100, /keys?limit=100, /ops?limit=100,
// /ops/summary?oldest=20&olderThanMs=5000, /readyz, /healthz, /metrics, as src/api/ui/page/poll.js
// does), and every 5 s a scrape of /metrics. The ticks run on one clock from the start; while
// paused they are skipped, so that slices of a measurement see them in proportion to their
// length. Driven like api-hammer.mjs: `go`, `pause` on stdin; end of stdin ends it, printing
// one JSON line (polls, scrapes, every request's latency per route). Events: ready (each route
// requested once, unmeasured), started, paused (once the polls in flight have answered).
//   node status-page.mjs --port P [--poll-ms 1500] [--scrape-ms 5000]
import http from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { timedGet } from './timed-get.mjs';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'poll-ms': { type: 'string', default: '1500' },
    'scrape-ms': { type: 'string', default: '5000' },
  },
});
const PAGE = [
  '/listeners',
  '/connections?limit=100',
  '/keys?limit=100',
  '/ops?limit=100',
  '/ops/summary?oldest=20&olderThanMs=5000',
  '/readyz',
  '/healthz',
  '/metrics',
];
const page = new http.Agent({ keepAlive: true, maxSockets: PAGE.length });
const prometheus = new http.Agent({ keepAlive: true, maxSockets: 1 });
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const routes = {}; // 'page /ops?limit=100' / 'scrape /metrics' → {lat: [ms], status: {}, bytes}
let errors = 0;
let polls = 0;
let scrapes = 0;
let paused = true;
let stopping = false;
const inFlight = new Set();

async function get(path, agent, who) {
  const r = await timedGet({ port: Number(values.port), path, agent });
  if (typeof r.status !== 'number') {
    errors++;
    return;
  }
  const key = `${who} ${path}`;
  routes[key] = routes[key] ?? { lat: [], status: {}, bytes: 0 };
  const route = routes[key];
  route.lat.push(Math.round(r.ms * 100) / 100);
  route.status[r.status] = (route.status[r.status] ?? 0) + 1;
  route.bytes = r.bytes;
}

/** Runs fn unless the previous one of its kind still waits (a page does not poll over itself). */
const busy = new Set();
function tick(kind, fn) {
  if (paused || stopping || busy.has(kind)) return;
  busy.add(kind);
  const p = fn().finally(() => {
    busy.delete(kind);
    inFlight.delete(p);
  });
  inFlight.add(p);
}
const every = (ms, kind, fn) => setInterval(() => tick(kind, fn), ms);

function finish() {
  if (stopping) return;
  stopping = true;
  emit({
    polls,
    scrapes,
    errors,
    routes: Object.fromEntries(
      Object.entries(routes).map(([k, r]) => [
        k,
        { status: r.status, bytes: r.bytes, lat_ms: r.lat },
      ]),
    ),
  });
  process.exit(0);
}

// one request per route, unmeasured (a route's first answer may load its code)
for (const p of PAGE) await get(p, page, 'warm');
for (const k of Object.keys(routes)) delete routes[k];
errors = 0;
emit({ event: 'ready' });

every(Number(values['poll-ms']), 'page', async () => {
  polls++;
  await Promise.all(PAGE.map((p) => get(p, page, 'page')));
});
every(Number(values['scrape-ms']), 'scrape', async () => {
  scrapes++;
  await get('/metrics', prometheus, 'scrape');
});

process.on('SIGTERM', finish);
const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const cmd = line.trim();
  if (cmd === 'go') {
    paused = false;
    emit({ event: 'started' });
  } else if (cmd === 'pause') {
    paused = true;
    await Promise.all([...inFlight]);
    emit({ event: 'paused' });
  }
});
rl.on('close', finish);
