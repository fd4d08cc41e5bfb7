// One GET against keyport's API, timed: what the control-plane clients of the benchmark
// (api-hammer, status-page, api-probe) each need. Never rejects: a failure is a status string.
import http from 'node:http';

/** → { ms, bytes, status } (status: the HTTP code, or 'error' / the request error's message). */
export function timedGet({ port, path, agent, timeoutMs = 30000 }) {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t) / 1e6;
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let bytes = 0;
      res.on('data', (d) => {
        bytes += d.length;
      });
      res.on('end', () => resolve({ ms: ms(), bytes, status: res.statusCode }));
      res.on('error', () => resolve({ ms: ms(), bytes, status: 'error' }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ ms: ms(), bytes: 0, status: err.message }));
  });
}
