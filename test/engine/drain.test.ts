// Draining never truncates a stream and then ends it cleanly (DESIGN §1.5): on SIGTERM and on a
// listener drain, live connections run to their natural end; at the deadline what is left is
// reset. A graceful DELETE /connections delivers every byte keyport had read before the FIN; a
// cancelled send resets. Asserted on what the client received and how its stream ended.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from '../helpers/http.js';
import { BACKEND, logRecords, OUT_DIR, ROOT, startKeyport } from '../helpers/keyport.js';
import { openEvents } from '../helpers/sse.js';
import { until, upstream } from '../helpers/tcp.js';

const READER = join(ROOT, 'test', 'helpers', 'reader.py');

const TOTAL = 24 * 1024 * 1024;
/** Deterministic bytes: what the upstream sends, so a prefix can be checked. */
const DATA = Buffer.alloc(TOTAL);
for (let i = 0; i < TOTAL; i += 4) DATA.writeUInt32LE(Math.imul(i, 0x9e3779b1) >>> 0, i);

// The upstream sends TOTAL bytes then FIN, and records how its own stream ended.
const upstreamEnds: string[] = [];
const up = await upstream((s) => {
  s.on('error', (e: NodeJS.ErrnoException) => upstreamEnds.push(e.code ?? 'error'));
  s.on('end', () => upstreamEnds.push('EOF'));
  s.resume();
  s.end(DATA);
});
t.teardown(() => up.close());

interface Seen {
  bytes: number;
  /** The bytes received are exactly the start of what the upstream sent. */
  prefixOk: boolean;
  /** 'EOF' (clean FIN) or the error code (ECONNRESET …). */
  end: string;
}

/**
 * A client that reads at `rate` bytes/s (test/helpers/reader.py: it reports what the kernel
 * returned, where Node would misreport a reset arriving with unread data as a clean end).
 */
function slowReader(port: number, rate: number) {
  const child = spawn('python3', [READER, '127.0.0.1', String(port), String(rate)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let got = 0;
  let out = '';
  const done = new Promise<Seen>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      let i = out.indexOf('\n');
      while (i >= 0) {
        const line = out.slice(0, i);
        out = out.slice(i + 1);
        if (line.startsWith('progress ')) got = Number(line.slice(9));
        else if (line.startsWith('{')) {
          const r = JSON.parse(line) as { bytes: number; sha256: string; end: string };
          got = r.bytes;
          const expect = createHash('sha256').update(DATA.subarray(0, r.bytes)).digest('hex');
          resolve({ bytes: r.bytes, prefixOk: r.sha256 === expect, end: r.end });
        }
        i = out.indexOf('\n');
      }
    });
    child.on('exit', (code) => reject(new Error(`reader exited (${code}) without a result`)));
  });
  return {
    done,
    get bytes() {
      return got;
    },
    stall() {
      child.stdin.write('stall\n');
    },
    drain() {
      child.stdin.write('drain\n');
    },
    kill() {
      child.kill();
    },
  };
}

let configs = 0;
async function relay(extra: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const config = join(OUT_DIR, `drain-${process.pid}-${++configs}.json`);
  writeFileSync(config, JSON.stringify({ shutdownDeadlineMs: 10_000, ...extra }));
  const k = await startKeyport(
    ['--config', config, '--listener', `127.0.0.1:0=forward:127.0.0.1:${up.port}`],
    { env },
  );
  const l = ((await k.get('/listeners')).body as { items: Array<{ id: string; address: string }> })
    .items[0] as { id: string; address: string };
  return { k, listener: l.id, port: Number(l.address.split(':').pop()) };
}

async function startTransfer(port: number, rate: number) {
  const r = slowReader(port, rate);
  const s = { destroy: () => r.kill() };
  // Well under way, with megabytes still to come: the drain starts mid-stream.
  await until(
    async () => r.bytes,
    (n) => n > 2 * 1024 * 1024,
  );
  return { s, r };
}

/**
 * SIGTERM to the launcher mid-transfer (under Wine: a Ctrl+C; `env` may turn it into another
 * console event), with a deadline that leaves time: every byte, then a clean EOF, exit 0.
 */
async function stopWithTime(t: Test, env: Record<string, string> = {}) {
  const { k, port } = await relay({ shutdownDeadlineMs: 30_000 }, env);
  const { s, r } = await startTransfer(port, 12 * 1024 * 1024);
  k.proc.kill('SIGTERM');
  const seen = await r.done;
  t.equal(seen.end, 'EOF', 'the stream ended with a clean FIN');
  t.equal(seen.bytes, TOTAL, `every byte arrived (${seen.bytes} of ${TOTAL})`);
  t.ok(seen.prefixOk, 'byte-exact');
  t.equal(await k.exited, 0, 'exit code 0: drained before the deadline');
  s.destroy();
  return k;
}

/** The same stop with a 500 ms deadline: cut short with RST, never a clean EOF; exit 3. */
async function stopPastDeadline(t: Test, env: Record<string, string> = {}) {
  const { k, port } = await relay({ shutdownDeadlineMs: 500 }, env);
  const { s, r } = await startTransfer(port, 3 * 1024 * 1024);
  k.proc.kill('SIGTERM');
  const seen = await r.done;
  t.ok(seen.bytes < TOTAL, `the transfer was cut short (${seen.bytes} of ${TOTAL})`);
  t.not(seen.end, 'EOF', 'no clean FIN after missing bytes');
  t.equal(seen.end, 'ECONNRESET', 'the client saw a reset');
  t.ok(seen.prefixOk, 'what arrived is byte-exact');
  t.equal(await k.exited, 3, 'exit code 3: the drain had to reset');
  s.destroy();
}

t.test(
  'SIGTERM: a transfer that can finish before the deadline gets every byte, then EOF',
  async (t) => {
    await stopWithTime(t);
  },
);

// Windows console events that end the process once their handler returns: `docker stop` and
// a system shutdown (CTRL_SHUTDOWN_EVENT), the console closed (CTRL_CLOSE_EVENT). Wine turns the
// launcher's SIGINT into Ctrl+C but cannot send these; the ctrl-c-as fault re-delivers that
// Ctrl+C as the event, the way Windows delivers it (a thread running kernelbase's CtrlRoutine,
// which calls the handlers and, if none takes it, the system's: it ends the process at once).
const consoleEvents = [
  { type: 6, name: 'CTRL_SHUTDOWN_EVENT', what: '`docker stop`' },
  { type: 2, name: 'CTRL_CLOSE_EVENT', what: 'the console closed' },
];
const noConsole =
  BACKEND === 'uring'
    ? 'SKIPPED ON URING: console control events are Windows-only (Linux has SIGTERM, tested above)'
    : false;
for (const ev of consoleEvents) {
  t.test(
    `${ev.name} (${ev.what}): drained before the handler returns; every byte, then EOF`,
    { skip: noConsole },
    async (t) => {
      const k = await stopWithTime(t, { KEYPORT_TEST_FAULTS: `ctrl-c-as:${ev.type}` });
      t.equal(
        logRecords(k, `${ev.name}: shutting down`).length,
        1,
        `keyport logged the ${ev.name} drain`,
      );
    },
  );
}

t.test(
  'CTRL_SHUTDOWN_EVENT: the deadline cuts a transfer short with RST, never a clean EOF',
  { skip: noConsole },
  async (t) => {
    await stopPastDeadline(t, { KEYPORT_TEST_FAULTS: 'ctrl-c-as:6' });
  },
);

t.test('SIGTERM: the deadline cuts a transfer short with RST, never a clean EOF', async (t) => {
  await stopPastDeadline(t);
});

t.test(
  'listener drain: connections run to their end; at the deadline they are reset',
  async (t) => {
    const { k, listener, port } = await relay();
    t.teardown(() => k.stop());
    // One transfer finishes inside the drain; a second, slower one is cut at the deadline.
    const fast = await startTransfer(port, 16 * 1024 * 1024);
    const slow = await startTransfer(port, 2 * 1024 * 1024);
    const res = await fetch(`${k.api}/listeners/${listener}?mode=drain&deadlineMs=4000`, {
      method: 'DELETE',
    });
    t.equal(res.status, 202, 'drain accepted');
    const a = await fast.r.done;
    t.equal(a.end, 'EOF');
    t.equal(a.bytes, TOTAL, 'the transfer that could finish got every byte');
    t.ok(a.prefixOk);
    const b = await slow.r.done;
    t.ok(b.bytes < TOTAL, `the slow one was cut short (${b.bytes} of ${TOTAL})`);
    t.equal(b.end, 'ECONNRESET', `and reset, not ended with a FIN (${b.end}, ${b.bytes} B)`);
    t.ok(b.prefixOk);
    fast.s.destroy();
    slow.s.destroy();
  },
);

t.test(
  'DELETE /connections graceful: every byte keyport read is delivered before the FIN',
  async (t) => {
    const { k, port } = await relay();
    t.teardown(() => k.stop());
    const events = await openEvents(k.api);
    t.teardown(() => events.close());
    const { s, r } = await startTransfer(port, 8 * 1024 * 1024);
    const conn = ((await k.get('/connections')).body as { items: Array<{ id: string }> })
      .items[0] as { id: string };
    const res = await fetch(`${k.api}/connections/${conn.id}?mode=graceful`, { method: 'DELETE' });
    t.equal(res.status, 202);
    r.drain();
    const seen = await r.done;
    t.equal(seen.end, 'EOF', 'a clean FIN');
    t.ok(seen.bytes < TOTAL, `reading stopped mid-stream (${seen.bytes} of ${TOTAL})`);
    t.ok(seen.prefixOk, 'byte-exact');
    const [closedEv] = await events
      .until((m) => m.some((e) => e.event === 'connection-closed' && e.data.connection === conn.id))
      .then((m) => m.filter((e) => e.event === 'connection-closed'));
    t.equal(closedEv?.data.abortive, false, 'closed without RST');
    t.equal(closedEv?.data.upstreamBytesIn, seen.bytes, 'the client got every byte read upstream');
    t.equal(closedEv?.data.bytesOut, seen.bytes, 'and every byte keyport sent it');
    s.destroy();
  },
);

t.test(
  'DELETE /connections graceful: a reader that stalls past closeTimeoutMs is reset',
  async (t) => {
    const { k } = await relay();
    t.teardown(() => k.stop());
    const res = await request(k.api, 'POST', '/listeners', {
      address: '127.0.0.1:0',
      mode: 'forward',
      target: `127.0.0.1:${up.port}`,
      closeTimeoutMs: 500,
    });
    const l = res.body as { id: string; address: string };
    const { s, r } = await startTransfer(Number(l.address.split(':').pop()), 8 * 1024 * 1024);
    r.stall(); // the send keyport has pending can no longer complete
    await new Promise((ok) => setTimeout(ok, 300));
    const conn = (
      (await k.get(`/connections?listener=${l.id}`)).body as { items: Array<{ id: string }> }
    ).items[0] as { id: string };
    await fetch(`${k.api}/connections/${conn.id}?mode=graceful`, { method: 'DELETE' });
    await new Promise((ok) => setTimeout(ok, 1200));
    r.drain();
    const seen = await r.done;
    t.equal(
      seen.end,
      'ECONNRESET',
      `undeliverable bytes end in a reset (${seen.end}, ${seen.bytes} B)`,
    );
    t.ok(seen.prefixOk);
    s.destroy();
  },
);

t.test('DELETE /ops on a pending send resets the client: its bytes are lost', async (t) => {
  const { k, port } = await relay();
  t.teardown(() => k.stop());
  const { s, r } = await startTransfer(port, 8 * 1024 * 1024);
  r.stall();
  const conn = ((await k.get('/connections')).body as { items: Array<{ id: string }> })
    .items[0] as { id: string };
  const sends = await until(
    async () =>
      (
        (await k.get(`/ops?kind=send&connection=${conn.id}`)).body as {
          items: Array<{ record: string; ageMs: number }>;
        }
      ).items,
    (i) => i.length === 1 && (i[0]?.ageMs ?? 0) > 200,
  );
  t.equal(sends.length, 1, 'a send is pending toward the stalled client');
  const res = await fetch(`${k.api}/ops/${sends[0]?.record}`, { method: 'DELETE' });
  t.equal(res.status, 200);
  r.drain();
  const seen = await r.done;
  t.equal(
    seen.end,
    'ECONNRESET',
    `a cancelled send ends in a reset (${seen.end}, ${seen.bytes} B)`,
  );
  t.ok(seen.prefixOk);
  s.destroy();
});
