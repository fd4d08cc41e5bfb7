#!/usr/bin/env node
// Drains a running keyport through its API, for the places where a stop does not reach keyport's
// graceful path in time. A Windows container is stopped (docker stop, Kubernetes) with
// CTRL_SHUTDOWN_EVENT: keyport drains on it, but Windows ends the process after the container's
// shutdown timeout (5 s by default). Run this first (a Kubernetes preStop hook; `docker exec` before
// `docker stop`): it asks every listener to drain (DELETE /listeners/{id}?mode=drain&deadlineMs=N:
// no new clients, open connections go on) and waits until no connection is left or the deadline
// has passed (keyport then aborts what is left of that listener itself).
//
//   node keyport-drain.mjs [--api http://127.0.0.1:9180] [--deadline-ms 20000]
//
// The token comes from KEYPORT_TOKEN_FILE or KEYPORT_TOKEN, as keyport reads it; the commands
// need it whenever one is configured. Exit 0: no connection left; 3: some were still open at the
// deadline; 1: the API could not be used. Plain Node (>= 20), no dependencies: the image runs it
// with its own node.exe. node:http rather than fetch(), so that it also runs under Wine, where
// the tests run it (fetch() sets TCP keep-alive before connecting, which Wine 8 refuses).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    api: { type: 'string', default: 'http://127.0.0.1:9180' },
    'deadline-ms': { type: 'string', default: '20000' },
  },
});
const api = values.api.replace(/\/+$/, '');
const deadlineMs = Number(values['deadline-ms']);
if (!Number.isInteger(deadlineMs) || deadlineMs < 0 || deadlineMs > 3_600_000) {
  console.error('keyport-drain: --deadline-ms must be an integer from 0 to 3600000');
  process.exit(1);
}

let token = process.env.KEYPORT_TOKEN ?? null;
if (!token && process.env.KEYPORT_TOKEN_FILE) {
  token = readFileSync(process.env.KEYPORT_TOKEN_FILE, 'utf8').trim();
}
const headers = token ? { authorization: `Bearer ${token}` } : {};

function call(method, path) {
  return new Promise((resolve, reject) => {
    const req = http.request(api + path, { method, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body = null;
        try {
          body = JSON.parse(text);
        } catch {}
        if (res.statusCode >= 200 && res.statusCode < 300) resolve(body);
        else
          reject(new Error(`${method} ${path}: ${res.statusCode} ${body?.message ?? ''}`.trim()));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

try {
  const started = Date.now();
  const { items } = await call('GET', '/listeners');
  for (const l of items) {
    await call(
      'DELETE',
      `/listeners/${encodeURIComponent(l.id)}?mode=drain&deadlineMs=${deadlineMs}`,
    );
    console.log(`keyport-drain: ${l.id} (${l.address}) draining, ${l.connections} connection(s)`);
  }
  for (;;) {
    const { total } = await call('GET', '/connections?limit=1');
    if (total === 0) {
      console.log(`keyport-drain: drained in ${Date.now() - started} ms`);
      process.exit(0);
    }
    if (Date.now() - started > deadlineMs) {
      console.log(`keyport-drain: ${total} connection(s) still open at the deadline`);
      process.exit(3);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
} catch (err) {
  console.error(`keyport-drain: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}
