// The io_uring backend on its own, without the engine: the same completion model as IOCP.
// A NOP posted with key 100 comes back with key 100 and its own record; accepts complete with
// the listener's key; recv/send echo byte-exact; refused connects and cancels have errno names;
// stop() leaves nothing in flight. Runs natively on Linux; skipped (loudly) without io_uring.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import t, { type Test } from 'tap';
import {
  BackendError,
  type CompletionSink,
  PENDING,
  type Sock,
  type SocketAddress,
} from '../../../src/engine/backend.js';
import { KeyEntry } from '../../../src/engine/tables/keys.js';
import { OpPool, type OpRecord } from '../../../src/engine/tables/ops.js';
import type { PinnedBlock } from '../../../src/engine/tables/pinned.js';
import type { UringBackend as UringBackendT } from '../../../src/engine/uring/backend.js';

type Uring = typeof UringBackendT;
let UringBackend: Uring | null = null;
let skip: string | false = false;

if (process.platform !== 'linux') {
  skip = `io_uring is Linux-only (this is ${process.platform})`;
} else {
  ({ UringBackend } = await import('../../../src/engine/uring/backend.js'));
  try {
    await new UringBackend().stop();
  } catch (err) {
    if (!(err instanceof BackendError && /io_uring is unavailable/.test(err.message))) throw err;
    skip = err.message;
  }
}
if (skip) {
  process.stderr.write(`\n*** SKIPPING the io_uring backend tests: ${skip}\n\n`);
  t.comment(`SKIPPED: ${skip}`);
}

interface Done {
  key: bigint;
  addr: number;
  bytes: number;
  code: number;
  name: string;
  raw: number;
  /** For accepts: the new connection's fd. */
  accepted: Sock;
  rec: OpRecord;
}

/** Fills in an op's arguments (the record carries them) and submits it. */
function io(
  b: UringBackendT,
  rec: OpRecord,
  sock: Sock,
  buf: PinnedBlock | null = null,
  offset = 0,
  length = 0,
  peer: SocketAddress | null = null,
): number {
  rec.sock = sock;
  rec.buffer = buf;
  rec.offset = offset;
  rec.length = length;
  rec.peer = peer;
  return b.submit(rec);
}

let keyIndex = 1;
function keyEntry(key: bigint): KeyEntry {
  const e = new KeyEntry(keyIndex++);
  e.key = key;
  return e;
}

/** Backend + op pool + a sink that routes each completion to whoever waits for its record. */
class Harness implements CompletionSink {
  readonly backend: UringBackendT;
  readonly pool: OpPool;
  readonly errors: unknown[] = [];
  readonly batches: number[] = [];
  readonly stray: Done[] = [];
  private readonly waiters = new Map<number, (d: Done) => void>();
  private readonly blocks: PinnedBlock[] = [];

  constructor(compat = false) {
    this.backend = new (UringBackend as Uring)({ onError: (e) => this.errors.push(e), compat });
    this.pool = new OpPool(this.backend, this.backend.recordHeaderSize);
    this.backend.start(this, (addr) => this.pool.byAddress(addr));
  }

  completion(key: bigint, addr: number, bytes: number, code: number): void {
    const rec = this.pool.byAddress(addr);
    if (!rec) throw new Error(`completion for unknown record 0x${addr.toString(16)}`);
    const b = this.backend;
    const d: Done = {
      key,
      addr,
      bytes,
      code,
      name: b.errorName(code),
      raw: rec.view.getInt32(b.statusWord.offset, true),
      accepted: rec.kind === 'accept' ? b.acceptedSocket(rec, -1) : -1,
      rec,
    };
    this.pool.release(rec);
    const w = this.waiters.get(addr);
    if (w) {
      this.waiters.delete(addr);
      w(d);
    } else this.stray.push(d);
  }

  batch(size: number): void {
    this.batches.push(size);
  }

  /** Starts an op with a fresh record and resolves with its completion. */
  op(kind: OpRecord['kind'], key: KeyEntry, start: (rec: OpRecord) => number): Promise<Done> {
    const rec = this.pool.acquire(kind, key, null);
    const done = new Promise<Done>((resolve) => this.waiters.set(rec.addrNum, resolve));
    const r = start(rec);
    if (r !== PENDING) throw new Error(`${kind} did not go pending: ${r}`);
    return done;
  }

  pinned(size: number): PinnedBlock {
    const b = this.backend.allocPinned(size);
    this.blocks.push(b);
    return b;
  }

  /** A listener on `host`:0 associated under `key`. */
  listen(host: string, family: 4 | 6, key: KeyEntry): { sock: Sock; port: number } {
    const b = this.backend;
    const sock = b.createSocket(family);
    const bound = b.listen(sock, { host, port: 0, family }, 16);
    b.associate(sock, key.key);
    return { sock, port: bound.port };
  }

  /**
   * A listener under `lk`, one client accepted (the accept on the listener key), its socket
   * associated under `ck`, and a recv of up to 1 KiB left pending on it.
   */
  async acceptedWithRecv(t: Test, lk: KeyEntry, ck: KeyEntry) {
    const b = this.backend;
    const { sock: ls, port } = this.listen('127.0.0.1', 4, lk);
    const accepted = this.op('accept', lk, (rec) => io(b, rec, ls));
    const client = await connectClient(port, '127.0.0.1');
    t.teardown(() => client.destroy());
    const fd = (await accepted).accepted;
    b.associate(fd, ck.key);
    const buf = this.pinned(1024);
    let recRef = null as unknown as OpRecord;
    const recv = this.op('recv', ck, (rec) => {
      recRef = rec;
      return io(b, rec, fd, buf, 0, 1024);
    });
    return { ls, fd, client, recv, recRef: () => recRef };
  }

  async close(): Promise<void> {
    await this.backend.stop();
    for (const b of this.blocks) this.backend.freePinned(b);
    this.pool.destroy();
  }
}

function connectClient(port: number, host: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function readExactly(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      chunks.push(d);
      got += d.length;
      if (got < n) return;
      s.off('data', onData);
      s.off('error', reject);
      const all = Buffer.concat(chunks);
      if (all.length > n) s.unshift(all.subarray(n));
      resolve(all.subarray(0, n));
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

/** Server side of the echo, through the backend only: recv, send it back, until EOF. */
async function echo(
  h: Harness,
  fd: Sock,
  key: KeyEntry,
): Promise<{ bytes: number; rounds: number }> {
  const b = h.backend;
  const buf = h.pinned(64 * 1024);
  let bytes = 0;
  let rounds = 0;
  for (;;) {
    const r = await h.op('recv', key, (rec) => io(b, rec, fd, buf, 0, buf.bytes.length));
    if (r.code !== 0) throw new Error(`recv failed: ${r.name}`);
    if (r.key !== key.key) throw new Error(`recv came back with key ${r.key}`);
    if (r.bytes === 0) break;
    const s = await h.op('send', key, (rec) => io(b, rec, fd, buf, 0, r.bytes));
    if (s.code !== 0 || s.bytes !== r.bytes)
      throw new Error(`send: ${s.name}, ${s.bytes}/${r.bytes}`);
    bytes += r.bytes;
    rounds++;
  }
  return { bytes, rounds };
}

const SIZES = [1, 2, 100, 1460, 4096, 65_536, 65_537, 300_000, 1024 * 1024];

async function acceptAndEcho(t: Test, host: string, family: 4 | 6): Promise<void> {
  const h = new Harness();
  t.teardown(() => h.close());
  const b = h.backend;
  const listenKey = keyEntry(0x1_0000_0007n);
  const { sock: ls, port } = h.listen(host, family, listenKey);
  t.ok(port > 0, `listening on ${host} port ${port}`);
  t.same(b.localAddress(ls), { host, port, family }, 'getsockname gives the bound address');
  t.equal(b.preCreatesAcceptSocket, false, 'io_uring creates the accepted socket itself');

  const accepted = h.op('accept', listenKey, (rec) => io(b, rec, ls));
  const client = await connectClient(port, host);
  const a = await accepted;
  t.equal(a.code, 0, 'accept succeeded');
  t.equal(a.key, listenKey.key, 'the accept completes with the LISTENER key (as AcceptEx does)');
  t.equal(a.bytes, 0);
  t.ok(a.accepted > 0, `acceptedSocket() gives the new fd (${a.accepted})`);
  t.equal(a.raw, a.accepted, 'the CQE result (the fd) is in the record header');
  t.equal(b.finishAccept(ls, a.accepted), 0);
  const fd = a.accepted;
  t.same(
    b.peerAddress(fd),
    { host, port: client.localPort, family },
    'getpeername on the new socket is the client',
  );

  const connKey = keyEntry(0x2_0000_0008n);
  b.associate(fd, connKey.key);
  const server = echo(h, fd, connKey);
  for (const size of SIZES) {
    const data = randomBytes(size);
    const back = readExactly(client, size);
    client.write(data);
    t.ok((await back).equals(data), `${size} B echoed byte-exact`);
  }
  const ended = new Promise<void>((resolve) => client.once('end', resolve));
  client.end();
  const { bytes, rounds } = await server;
  const total = SIZES.reduce((a, b) => a + b, 0);
  t.equal(bytes, total, `server echoed ${total} B`);
  t.ok(rounds >= SIZES.length + 16, `over ${rounds} recv/send rounds`);
  t.equal(b.shutdownSend(fd), 0, 'shutdown(SHUT_WR)');
  await ended;
  t.pass('the client saw the FIN of shutdownSend');
  b.closeSocket(fd, false);
  b.closeSocket(ls, false);
  client.destroy();
  t.equal(b.inFlight, 0, 'nothing left in flight');
  t.same(h.stray, [], 'no stray completions');
  t.same(h.errors, []);
}

t.test(
  'a NOP posted with key 100 comes back with key 100 and its own record',
  { skip },
  async (t) => {
    const h = new Harness();
    t.teardown(() => h.close());
    const k = keyEntry(100n);
    // Take a few records first so the posted one is not simply the pool's first slot.
    const warm = [
      h.pool.acquire('recv', keyEntry(1n), null),
      h.pool.acquire('send', keyEntry(2n), null),
    ];
    const got = h.op('nop', k, (rec) => {
      h.backend.post(100n, rec, 4242);
      return PENDING;
    });
    for (const r of warm) h.pool.release(r);
    const d = await got;
    t.equal(d.key, 100n, 'the completion key is the one posted');
    t.equal(d.addr, d.rec.addrNum, 'user_data is the record address');
    t.not(d.addr, 0);
    t.equal(d.rec.storedOpId(), d.rec.slot, 'the op id read back from the pinned record matches');
    t.equal(d.rec.slot, 2, 'a record that was not the first slot');
    t.equal(d.bytes, 4242, 'the byte count travels with the NOP');
    t.equal(d.code, 0);
    t.same(h.batches, [1], 'one NOP, one batch of one');
    t.equal(h.backend.inFlight, 0);
  },
);

t.test('accept on 127.0.0.1 with the listener key, echo 1 B .. 1 MiB', { skip }, (t) =>
  acceptAndEcho(t, '127.0.0.1', 4),
);

t.test('accept on [::1] with the listener key, echo 1 B .. 1 MiB', { skip }, async (t) => {
  const probe = net.createServer();
  const v6 = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => resolve(true));
  });
  probe.close();
  if (!v6) {
    t.plan(0, 'SKIP: no IPv6 loopback on this machine');
    return;
  }
  await acceptAndEcho(t, '::1', 6);
});

t.test('connect to a node:net server (the ConnectEx twin)', { skip }, async (t) => {
  const h = new Harness();
  t.teardown(() => h.close());
  const b = h.backend;
  const srv = net.createServer();
  t.teardown(() => srv.close());
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  const peer = new Promise<net.Socket>((resolve) => srv.once('connection', resolve));

  const sock = b.createSocket(4);
  b.bindAny(sock, 4);
  const key = keyEntry(0x3_0000_0009n);
  b.associate(sock, key.key);
  const c = await h.op('connect', key, (rec) =>
    io(b, rec, sock, null, 0, 0, { host: '127.0.0.1', port, family: 4 }),
  );
  t.equal(c.code, 0, 'connected');
  t.equal(c.key, key.key, "the connect completes with the socket's own key");
  t.equal(b.finishConnect(sock), 0);
  const s = await peer;
  t.same(b.peerAddress(sock), { host: '127.0.0.1', port, family: 4 });
  t.equal(b.localAddress(sock)?.port, s.remotePort, 'both ends agree on the address');

  const buf = h.pinned(64);
  buf.bytes.set(Buffer.from('hello'));
  const got = readExactly(s, 5);
  const sent = await h.op('send', key, (rec) => io(b, rec, sock, buf, 0, 5));
  t.equal(sent.bytes, 5);
  t.equal((await got).toString(), 'hello', 'the server got what the backend sent');
  s.write('world!');
  const r = await h.op('recv', key, (rec) => io(b, rec, sock, buf, 8, 56));
  t.equal(Buffer.from(buf.bytes.subarray(8, 8 + r.bytes)).toString(), 'world!');

  // Abortive close: linger 0 → the peer sees a reset, not a FIN.
  const reset = new Promise<string>((resolve) => {
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    s.once('end', () => resolve('FIN'));
  });
  b.closeSocket(sock, true);
  t.equal(await reset, 'ECONNRESET', 'abortive close resets the connection');
  t.same(h.errors, []);
});

t.test('a refused connect is ECONNREFUSED', { skip }, async (t) => {
  const h = new Harness();
  t.teardown(() => h.close());
  const b = h.backend;
  // A port that was just free: bind, read the port, close.
  const tmp = net.createServer();
  await new Promise<void>((resolve) => tmp.listen(0, '127.0.0.1', resolve));
  const port = (tmp.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => tmp.close(() => resolve()));

  const sock = b.createSocket(4);
  const key = keyEntry(0x4_0000_000an);
  b.associate(sock, key.key);
  const c = await h.op('connect', key, (rec) =>
    io(b, rec, sock, null, 0, 0, { host: '127.0.0.1', port, family: 4 }),
  );
  t.equal(c.code, b.codes.connectionRefused, 'codes.connectionRefused');
  t.equal(c.code, 111);
  t.equal(c.name, 'ECONNREFUSED');
  t.equal(c.raw, -111, 'the raw CQE result is -errno');
  t.equal(c.key, key.key);
  b.closeSocket(sock, false);
  t.equal(b.errorName(b.codes.timedOut), 'ETIMEDOUT');
  t.equal(b.errorName(104), 'ECONNRESET');
  t.equal(b.errorName(32), 'EPIPE');
});

t.test('cancel: a pending recv and a pending accept end with ECANCELED', { skip }, async (t) => {
  const h = new Harness();
  t.teardown(() => h.close());
  const b = h.backend;
  const lk = keyEntry(0x5_0000_000bn);
  const ck = keyEntry(0x6_0000_000cn);
  const { ls, fd, recv, recRef } = await h.acceptedWithRecv(t, lk, ck);
  await new Promise((resolve) => setTimeout(resolve, 20)); // let it wait in the kernel
  t.equal(b.inFlight, 1);
  t.equal(b.cancel(fd, recRef()), 0, 'cancel by record (user_data)');
  const r = await recv;
  t.equal(r.code, b.codes.operationAborted, 'codes.operationAborted');
  t.equal(r.name, 'ECANCELED');
  t.equal(r.key, ck.key, 'the cancelled op still carries its key');

  let acceptRec: OpRecord | null = null;
  const pendingAccept = h.op('accept', lk, (rec) => {
    acceptRec = rec;
    return io(b, rec, ls);
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(b.cancel(ls, acceptRec as unknown as OpRecord), 0, 'cancel the accept by its record');
  const a = await pendingAccept;
  t.equal(a.name, 'ECANCELED');
  t.equal(a.key, lk.key);
  t.equal(a.accepted, -1, 'a failed accept yields no socket');
  b.closeSocket(fd, false);
  b.closeSocket(ls, false);
  t.equal(b.inFlight, 0);
  t.same(h.errors, []);
});

t.test('a full SQ and an overflowing CQ lose nothing', { skip }, async (t) => {
  // 8 SQ slots and 16 CQ slots for 2000 NOPs started in one turn: pushes must submit when the
  // SQ fills, and the kernel's overflow backlog (IORING_SQ_CQ_OVERFLOW) must be flushed.
  const b = new (UringBackend as Uring)({ sqEntries: 8, cqEntries: 16 });
  const pool = new OpPool(b, b.recordHeaderSize);
  t.equal(b.ringInfo.sqEntries, 8);
  t.equal(b.ringInfo.cqEntries, 16);
  const N = 2000;
  const k = keyEntry(42n);
  const seen = new Set<number>();
  let batches = 0;
  let bad = 0;
  await new Promise<void>((resolve) => {
    b.start(
      {
        completion(key, addr, bytes) {
          const rec = pool.byAddress(addr);
          if (!rec || key !== 42n || bytes !== rec.slot || seen.has(addr)) bad++;
          seen.add(addr);
          if (rec) pool.release(rec);
          if (seen.size === N) resolve();
        },
        batch(size) {
          batches++;
          if (size > 16) bad++;
        },
      },
      (addr) => pool.byAddress(addr),
    );
    for (let i = 0; i < N; i++) {
      const rec = pool.acquire('nop', k, null);
      b.post(42n, rec, rec.slot);
    }
  });
  t.equal(seen.size, N, `all ${N} NOPs came back once`);
  t.equal(bad, 0, 'each with its key, its record and its byte count');
  t.ok(batches >= N / 16, `in ${batches} batches of at most 16`);
  await b.stop();
  pool.destroy();
});

t.test('a throwing sink is reported, and the batch goes on', { skip }, async (t) => {
  const errors: unknown[] = [];
  const b = new (UringBackend as Uring)({ onError: (e) => errors.push(e) });
  const pool = new OpPool(b, b.recordHeaderSize);
  const k = keyEntry(7n);
  const got: number[] = [];
  await new Promise<void>((resolve) => {
    b.start(
      {
        completion(_key, addr, bytes) {
          pool.release(pool.byAddress(addr) as OpRecord);
          got.push(bytes);
          if (bytes === 1) throw new Error('sink bug');
          if (got.length === 3) resolve();
        },
        batch() {},
      },
      (addr) => pool.byAddress(addr),
    );
    for (const n of [1, 2, 3]) b.post(7n, pool.acquire('nop', k, null), n);
  });
  t.same(got, [1, 2, 3], 'the completions after the throw were delivered');
  t.equal(errors.length, 1);
  t.match(String(errors[0]), /sink bug/);
  await b.stop();
  pool.destroy();
});

for (const compat of [false, true]) {
  t.test(
    `close after a cancel by record ends a pending recv and sends the FIN${compat ? ' (as on a kernel < 5.19)' : ''}`,
    { skip },
    async (t) => {
      // close() alone does not cancel an io_uring request (Windows' closesocket does): the
      // engine cancels each op by its user_data — which every kernel has — then closes.
      const b0 = new (UringBackend as Uring)({ compat });
      t.equal(b0.canCancelAny, !compat, `CANCEL_ANY ${compat ? 'not used' : 'probed'}`);
      await b0.stop();
      const h = new Harness(compat);
      t.teardown(() => h.close());
      const b = h.backend;
      const lk = keyEntry(0x9_0000_000fn);
      const ck = keyEntry(0xa_0000_0010n);
      const { ls, fd, client, recv, recRef } = await h.acceptedWithRecv(t, lk, ck);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const fin = new Promise<void>((resolve) => client.once('end', resolve));
      t.equal(b.cancel(fd, recRef()), 0);
      const r = await recv;
      t.equal(r.name, 'ECANCELED', 'the pending recv came back cancelled');
      t.equal(r.key, ck.key);
      b.closeSocket(fd, false);
      await fin;
      t.pass('the peer saw the FIN: the socket really closed');
      b.closeSocket(ls, false);
      t.equal(b.inFlight, 0);
    },
  );
}

t.test(
  'any key comes back verbatim on a real socket: small, large, top bit set',
  { skip },
  async (t) => {
    const h = new Harness();
    t.teardown(() => h.close());
    const b = h.backend;
    const lk = keyEntry(0xffff_fffe_0000_0001n);
    const { sock: ls, port } = h.listen('127.0.0.1', 4, lk);
    for (const k of [
      1n,
      0xffff_ffffn,
      0x1_0000_0000n,
      0x8000_0000_0000_0001n,
      0xffff_ffff_ffff_fffen,
    ]) {
      const accepted = h.op('accept', lk, (rec) => io(b, rec, ls));
      const client = await connectClient(port, '127.0.0.1');
      const a = await accepted;
      t.equal(a.key, lk.key, 'the accept came back with the listener key');
      const key = keyEntry(k);
      b.associate(a.accepted, k);
      const buf = h.pinned(64);
      const recv = h.op('recv', key, (rec) => io(b, rec, a.accepted, buf, 0, 64));
      await new Promise((resolve) => setTimeout(resolve, 10)); // pending in the kernel first
      client.write('x');
      const r = await recv;
      t.equal(r.key, k, `key 0x${k.toString(16)} dequeued as associated`);
      t.equal(r.bytes, 1);
      b.closeSocket(a.accepted, true);
      client.destroy();
    }
    b.closeSocket(ls, false);
  },
);

t.test('stop() cancels what is left, drains it and ends cleanly', { skip }, async (t) => {
  const h = new Harness();
  const b = h.backend;
  const lk = keyEntry(0x7_0000_000dn);
  const { sock: ls, port } = h.listen('127.0.0.1', 4, lk);
  const accepted = h.op('accept', lk, (rec) => io(b, rec, ls));
  const client = await connectClient(port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const fd = (await accepted).accepted;
  const ck = keyEntry(0x8_0000_000en);
  b.associate(fd, ck.key);
  const buf = h.pinned(1024);
  const recv = h.op('recv', ck, (rec) => io(b, rec, fd, buf, 0, 1024));
  const accept2 = h.op('accept', lk, (rec) => io(b, rec, ls));
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(b.inFlight, 2, 'a recv and an accept waiting in the kernel');

  await b.stop();
  const [r, a] = await Promise.all([recv, accept2]);
  t.equal(r.name, 'ECANCELED', 'stop() cancelled the recv and the sink saw it');
  t.equal(a.name, 'ECANCELED', 'and the accept');
  t.equal(b.inFlight, 0, 'no op left in the backend');
  t.equal(h.pool.inFlightTotal, 0, 'every record went back to the pool');
  t.throws(() => b.post(1n, h.pool.acquire('nop', keyEntry(1n), null), 0), /ring closed/);
  t.throws(() => b.start(h, () => undefined), /already started or stopped/);
  await b.stop(); // idempotent
  b.closeSocket(fd, false);
  b.closeSocket(ls, false);
  t.same(h.errors, []);
  for (const rec of h.pool.inFlight()) h.pool.release(rec);
  await h.close();
});

const linuxOnly = process.platform === 'linux' ? false : 'Linux-only';
t.test('io_uring unavailable: the error names --backend iocp', { skip: linuxOnly }, async (t) => {
  const { uringUnavailable } = await import('../../../src/engine/uring/ring.js');
  const e = uringUnavailable('io_uring_setup', 38, 'the kernel or a seccomp profile refuses it');
  t.ok(e instanceof BackendError);
  t.equal(e.errorName, 'ENOSYS');
  t.match(e.message, /--backend iocp/);
  t.match(e.message, /Wine/);
});
