// The latency of one request with nothing else looping: N sequential requests per path (one
// keep-alive connection, each path requested once unmeasured first), then one JSON line with,
// per path, the median and the maximum in ms, the answer's size in bytes and the status codes.
//   node api-probe.mjs --port P --paths /connections?limit=1000,/metrics [--n 20]
import http from 'node:http';
import { parseArgs } from 'node:util';
import { timedGet } from './timed-get.mjs';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    paths: { type: 'string' },
    n: { type: 'string', default: '20' },
  },
});
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

const get = (path) => timedGet({ port: Number(values.port), path, agent });

const out = {};
for (const path of values.paths.split(',')) {
  await get(path);
  const ms = [];
  const status = {};
  let bytes = null;
  for (let i = 0; i < Number(values.n); i++) {
    const r = await get(path);
    status[r.status] = (status[r.status] ?? 0) + 1;
    if (r.ms === undefined) continue;
    ms.push(r.ms);
    bytes = r.bytes;
  }
  ms.sort((a, b) => a - b);
  out[path] = {
    median_ms: ms.length ? ms[ms.length >> 1] : null,
    max_ms: ms.length ? ms[ms.length - 1] : null,
    bytes,
    status,
  };
}
process.stdout.write(`${JSON.stringify({ paths: out })}\n`);
agent.destroy();
