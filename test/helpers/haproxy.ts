// HAProxy (Debian package `haproxy`) as the reference relay: mode tcp, nbthread 1, loopback
// only, config in a temp dir. It has N frontend/backend slots; a scenario takes a slot and points
// its server at the scenario's own upstream port through the runtime API (`set server … addr`),
// so a late connection from an earlier scenario can never reach a later one's upstream.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Relay } from './diff-run.js';
import { reportIfSlow } from './slow-stop.js';
import { freePort } from './tcp.js';

export function findHaproxy(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (d && existsSync(join(d, 'haproxy'))) return join(d, 'haproxy');
  }
  return null;
}

export interface Haproxy {
  relay: Relay;
  version: string;
  stop(): Promise<void>;
}

function command(sock: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let out = '';
    c.on('connect', () => c.end(`${line}\n`));
    c.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out));
  });
}

async function startOnce(bin: string, slots: number): Promise<Haproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'keyport-haproxy-'));
  const sock = join(dir, 'admin.sock');
  const ports: number[] = [];
  for (let i = 0; i < slots; i++) ports.push(await freePort());
  const cfg = [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    `  stats socket ${sock} mode 600 level admin`,
    '  hard-stop-after 5s',
    'defaults',
    '  mode tcp',
    // Generous: the test's own deadline (not HAProxy's idle timeouts) decides what is a hang.
    '  timeout connect 10s',
    '  timeout client 120s',
    '  timeout server 120s',
    ...ports.flatMap((p, i) => [
      `frontend f${i}`,
      `  bind 127.0.0.1:${p}`,
      `  default_backend b${i}`,
      `backend b${i}`,
      // A placeholder address: each scenario sets its own upstream port first.
      `  server s 127.0.0.1:1`,
    ]),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  let out = '';
  const proc: ChildProcess = spawn(bin, ['-db', '-f', join(dir, 'haproxy.cfg')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  let alive = true;
  void exited.then(() => (alive = false));

  const end = Date.now() + 10_000;
  let version = '';
  for (;;) {
    if (!alive) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`haproxy exited at start-up:\n${out}`);
    }
    if (existsSync(sock)) {
      try {
        const info = await command(sock, 'show info');
        version = info.match(/^Version: (.*)$/m)?.[1] ?? '';
        if (version) break;
      } catch {}
    }
    if (Date.now() > end) {
      proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`haproxy did not come up in 10 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  // Slots are handed out one scenario at a time.
  const free = ports.map((_, i) => i);
  const waiters: Array<(slot: number) => void> = [];
  const acquire = (): Promise<number> => {
    const s = free.pop();
    if (s !== undefined) return Promise.resolve(s);
    return new Promise((r) => waiters.push(r));
  };
  const release = (slot: number): void => {
    const w = waiters.shift();
    if (w) w(slot);
    else free.push(slot);
  };

  const relay: Relay = {
    name: 'haproxy',
    async open(targetPort) {
      const slot = await acquire();
      const reply = await command(sock, `set server b${slot}/s addr 127.0.0.1 port ${targetPort}`);
      if (!/changed|no need to change/i.test(reply)) {
        release(slot);
        throw new Error(`haproxy set server: ${reply}`);
      }
      return {
        port: ports[slot] as number,
        async close() {
          release(slot);
        },
      };
    },
  };
  return {
    relay,
    version,
    async stop() {
      if (alive) proc.kill('SIGTERM');
      await reportIfSlow('HAProxy', proc, exited, () => '');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts HAProxy with `slots` relay slots (a bound port can be taken meanwhile: 3 tries). */
export async function startHaproxy(bin: string, slots: number): Promise<Haproxy> {
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    try {
      return await startOnce(bin, slots);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}
