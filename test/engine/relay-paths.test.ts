// Every data path of the relay carries bytes exactly, in both directions at once, with the
// half-close passed across: sizes from 0 to 64 MiB through a forward listener to a real
// upstream, each side checking every byte it received and how its stream ended.
//  - io_uring: recvs whose buffer the kernel picks from the provided ring, and bulk directions
//    switching to splice through kernel pipes (the default); the same with splicing off
//    (engine.splicePipes 0: every byte through buffers); the
//    same with a ring of 2 buffers, so reads keep finding it empty and fall back to buffers of
//    their own (KEYPORT_TEST_FAULTS=provided-buffers:2); and a kernel before 5.19
//    (KEYPORT_URING_COMPAT=1: zero-length waits, then reads into the engine's own buffers).
//  - IOCP: zero-byte WSARecv waits, then reads into the engine's own buffers.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { BACKEND, OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { until } from '../helpers/tcp.js';

const MiB = 1024 * 1024;
/** A prime length, so a shifted, repeated or dropped chunk never lines up with the pattern. */
const PATTERN = randomBytes(MiB + 7);

/** Compares a received stream, chunk by chunk, with PATTERN repeated from offset `seed`. */
class Checker {
  received = 0;
  firstBad = -1;
  constructor(private readonly seed: number) {}
  feed(chunk: Buffer): void {
    for (let i = 0; i < chunk.length && this.firstBad < 0; ) {
      const at = (this.seed + this.received + i) % PATTERN.length;
      const n = Math.min(chunk.length - i, PATTERN.length - at);
      if (Buffer.compare(chunk.subarray(i, i + n), PATTERN.subarray(at, at + n)) !== 0) {
        this.firstBad = this.received + i;
      }
      i += n;
    }
    this.received += chunk.length;
  }
}

/** Writes `size` bytes of PATTERN from offset `seed`, honouring backpressure, then FIN. */
async function sendPattern(s: net.Socket, seed: number, size: number): Promise<void> {
  for (let sent = 0; sent < size; ) {
    const at = (seed + sent) % PATTERN.length;
    const n = Math.min(size - sent, PATTERN.length - at, MiB);
    sent += n;
    if (!s.write(PATTERN.subarray(at, at + n))) {
      await new Promise<void>((resolve, reject) => {
        s.once('drain', resolve);
        s.once('close', () => reject(new Error('closed while sending')));
      });
    }
  }
  s.end();
}

interface Side {
  checker: Checker;
  ended: Promise<'end' | string>;
}

/** Reads until the stream ends; 'end' for a clean FIN, else the error code. */
function receive(s: net.Socket, seed: number): Side {
  const checker = new Checker(seed);
  s.on('data', (d: Buffer) => checker.feed(d));
  const ended = new Promise<string>((resolve) => {
    s.once('end', () => resolve('end'));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  return { checker, ended };
}

interface Case {
  up: number;
  down: number;
}

// Each case: the client sends `up` bytes then FIN while the upstream sends `down` then FIN.
const CASES: Case[] = [
  { up: 0, down: 0 },
  { up: 1, down: 64 * MiB },
  { up: 64 * MiB, down: 1 },
  { up: 65_535, down: 65_537 },
  { up: 65_536, down: 0 },
  { up: 0, down: 65_536 },
  { up: 1 + Math.floor(Math.random() * 16 * MiB), down: 1 + Math.floor(Math.random() * 16 * MiB) },
  { up: 3 * MiB + 5, down: 7 * MiB + 3 },
];
t.comment(`sizes (up/down): ${CASES.map((c) => `${c.up}/${c.down}`).join(', ')}`);

/** The upstream: reads the client's 4-byte case number, then plays the upstream's side. */
async function upstreamServer(results: Map<number, Promise<[Side, Case]>>): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let header = Buffer.alloc(0);
    const onHeader = (d: Buffer) => {
      header = Buffer.concat([header, d]);
      if (header.length < 4) return;
      s.off('data', onHeader);
      s.pause();
      const index = header.readUInt32BE(0);
      const c = CASES[index] as Case;
      const side = receive(s, 1000 + index);
      const rest = header.subarray(4);
      if (rest.length > 0) side.checker.feed(rest);
      s.resume();
      const resolve = pending.get(index);
      pending.delete(index);
      resolve?.([side, c]);
      void sendPattern(s, 2000 + index, c.down).catch(() => {});
    };
    s.on('data', onHeader);
    s.on('error', () => {});
  });
  const pending = new Map<number, (v: [Side, Case]) => void>();
  for (let i = 0; i < CASES.length; i++) {
    results.set(i, new Promise((resolve) => pending.set(i, resolve)));
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

interface Variant {
  name: string;
  env: Record<string, string>;
  /** engine settings (a config file). */
  engine?: Record<string, number>;
  /** Bulk directions splice through kernel pipes. */
  splices: boolean;
  /** Provided-ring size expected at rest, or null where there is none. */
  provided: number | null;
  exhausts: boolean;
}

const VARIANTS: Variant[] =
  BACKEND === 'uring'
    ? [
        {
          name: 'provided buffers, bulk directions spliced through kernel pipes (the default)',
          env: {},
          splices: true,
          provided: 256,
          exhausts: false,
        },
        {
          name: 'provided buffers, splicing off (engine.splicePipes 0)',
          env: {},
          engine: { splicePipes: 0 },
          splices: false,
          provided: 256,
          exhausts: false,
        },
        {
          name: 'a provided ring of 2: reads find it empty and use buffers of their own',
          env: { KEYPORT_TEST_FAULTS: 'provided-buffers:2' },
          engine: { splicePipes: 0 },
          splices: false,
          provided: 2,
          exhausts: true,
        },
        {
          name: 'a kernel before 5.19 (KEYPORT_URING_COMPAT=1): waits, own buffers, then splice',
          env: { KEYPORT_URING_COMPAT: '1' },
          splices: true,
          provided: null,
          exhausts: false,
        },
      ]
    : [
        {
          name: 'zero-byte waits, then own buffers',
          env: {},
          splices: false,
          provided: null,
          exhausts: false,
        },
      ];

for (const v of VARIANTS) {
  t.test(v.name, async (t) => {
    const upstream = new Map<number, Promise<[Side, Case]>>();
    const server = await upstreamServer(upstream);
    t.teardown(() => server.close());
    const target = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const args = ['--listener', `127.0.0.1:0=forward:${target}`];
    if (v.engine) {
      const cfg = join(OUT_DIR, `relay-paths-${process.pid}-${VARIANTS.indexOf(v)}.json`);
      mkdirSync(OUT_DIR, { recursive: true });
      writeFileSync(cfg, JSON.stringify({ engine: v.engine }));
      args.push('--config', cfg);
    }
    const k = await startKeyport(args, { env: v.env });
    t.teardown(() => k.stop());
    const port = portOf((await request(k.api, 'GET', '/listeners')).body.items[0].address);

    await Promise.all(
      CASES.map(async (c, index) => {
        const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        const client = receive(s, 2000 + index);
        const header = Buffer.alloc(4);
        header.writeUInt32BE(index);
        s.write(header);
        const sending = sendPattern(s, 1000 + index, c.up);
        const [up] = await (upstream.get(index) as Promise<[Side, Case]>);
        const [clientEnd, upEnd] = await Promise.all([client.ended, up.ended, sending]);
        const what = `${c.up} up / ${c.down} down`;
        t.equal(client.checker.received, c.down, `${what}: the client received every byte`);
        t.equal(client.checker.firstBad, -1, `${what}: the client's bytes are exact`);
        t.equal(clientEnd, 'end', `${what}: the client's stream ended with a FIN`);
        t.equal(up.checker.received, c.up, `${what}: the upstream received every byte`);
        t.equal(up.checker.firstBad, -1, `${what}: the upstream's bytes are exact`);
        t.equal(upEnd, 'end', `${what}: the upstream's stream ended with a FIN`);
        s.destroy();
      }),
    );

    await until(
      () => request(k.api, 'GET', '/connections'),
      (r) => r.body.total === 0,
      20_000,
    );
    const buffers = (state: string) =>
      metric(k.api, 'keyport_data_buffers', { state }).catch(() => null);
    t.equal(
      await until(
        () => buffers('in_use'),
        (n) => n === 0,
      ),
      0,
      'every buffer came back',
    );
    if (v.provided === null) {
      t.equal(await buffers('provided_free'), null, 'no provided ring on this path');
    } else {
      t.equal(
        await until(
          () => buffers('provided_free'),
          (n) => n === v.provided,
        ),
        v.provided,
        `all ${v.provided} provided buffers are back in the kernel's ring`,
      );
    }
    const exhausted = await metric(k.api, 'keyport_provided_buffers_exhausted_total');
    if (v.exhausts) t.ok(exhausted > 0, `reads fell back to own buffers ${exhausted} times`);
    else t.equal(exhausted, 0, 'no read found the provided ring empty');
    const spliced = await metric(k.api, 'keyport_spliced_bytes_total');
    if (v.splices) t.ok(spliced > 64 * MiB, `bulk went through kernel pipes: ${spliced} B spliced`);
    else t.equal(spliced, 0, 'nothing spliced on this path');
    t.equal(
      await metric(k.api, 'keyport_splice_pipes'),
      0,
      'every pipe closed with its connection',
    );
    const text = await (await fetch(`${k.api}/metrics`)).text();
    t.notMatch(text, /keyport_completion_errors_total\{op="(recv|send)"/, 'no recv or send failed');
  });
}
