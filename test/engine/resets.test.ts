// A peer's reset is relayed as a reset, never as a clean FIN after lost data (issue 13, defect 8).
// Under Wine 8 a RST can reach keyport as a 0-byte read (a clean EOF): the wineserver took the
// socket's error first. On Linux the same happens when another call (a failing send) took it.
// keyport asks the socket at every EOF (WSAPoll's POLLERR under Wine, the TCP state on Linux).
// The peers are small Python programs, which report exactly what recv() returned: a Node client
// would itself misreport a reset arriving with unread data as a clean end (libuv, on EPOLLHUP).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { ROOT, startKeyport } from '../helpers/keyport.js';

const HELPERS = join(ROOT, 'test', 'helpers');
const ROUNDS = 10;
const N = 187_666;

interface Ended {
  bytes: number;
  end: string;
}

const k = await startKeyport(['--listener', '127.0.0.1:0=echo']);
t.teardown(() => k.stop());

/** A forward listener to `target` (one per round), through the API; returns its port. */
async function forward(target: number): Promise<number> {
  const l = await request(k.api, 'POST', '/listeners', {
    address: '127.0.0.1:0',
    mode: 'forward',
    target: `127.0.0.1:${target}`,
  });
  return portOf(l.body.address);
}

/** Runs a helper script; resolves with its "port N" line (listeners) and its final JSON. */
function py(script: string, args: string[]) {
  const child = spawn('python3', [join(HELPERS, script), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  let onPort: (p: number) => void = () => {};
  const port = new Promise<number>((r) => (onPort = r));
  const result = new Promise<Ended | null>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = out.match(/^port (\d+)$/m);
      if (m) onPort(Number(m[1]));
    });
    child.on('exit', () => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      resolve(line ? (JSON.parse(line) as Ended) : null);
    });
  });
  return { port, result, kill: () => child.kill() };
}

t.test('an upstream that sends then resets: the client sees the reset', async (t) => {
  const seen: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const up = py('sender.py', ['listen', String(N), 'rst']);
    const port = String(await forward(await up.port));
    // The client reads slowly at first, so the reset arrives while data is still unread.
    const client = py('reader.py', ['127.0.0.1', port, '200000']);
    const r = (await client.result) as Ended;
    seen.push(`${r.end}/${r.bytes}`);
  }
  t.ok(
    seen.every((s) => s.startsWith('ECONNRESET/')),
    `every client saw a reset, never a clean EOF (${seen.join(' ')})`,
  );
});

t.test('a client that sends then resets: the upstream sees the reset', async (t) => {
  const seen: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const up = py('reader.py', ['listen', '200000']);
    const port = String(await forward(await up.port));
    const client = py('sender.py', ['connect', '127.0.0.1', port, String(N), 'rst']);
    await client.result;
    const r = (await up.result) as Ended;
    seen.push(`${r.end}/${r.bytes}`);
  }
  t.ok(
    seen.every((s) => s.startsWith('ECONNRESET/')),
    `every upstream saw a reset, never a clean EOF (${seen.join(' ')})`,
  );
});

t.test('a FIN stays a FIN: every byte, then a clean EOF', async (t) => {
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    const up = py('sender.py', ['listen', String(N), 'fin']);
    const port = String(await forward(await up.port));
    const client = py('reader.py', ['127.0.0.1', port, '200000']);
    const r = (await client.result) as Ended;
    seen.push(`${r.end}/${r.bytes}`);
  }
  t.ok(
    seen.every((s) => s === `EOF/${N}`),
    `every client got all ${N} B and a clean EOF (${seen.join(' ')})`,
  );
});
