// Unit tests of the engine's state machines — listener, connection, relay direction, key table, op
// table, completion checks, cancels, shutdown — driven through the real Engine against a fake
// backend (test/helpers/fake-backend.ts) in which the test plays the kernel: it decides when and
// how every op completes, with which key, and what the record's memory says. Assertions are on
// what the fake kernel saw (which socket was closed how and when, what was submitted, cancelled,
// shut down) and on what the engine reported (events, counters, observer calls).
// In-process, no sockets, no FFI.
import t, { type Test } from 'tap';
import type { CancelOutcome } from '../../src/engine/cancel-op.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { EngineConfig, ListenerConfig } from '../../src/engine/options.js';
import { ConnectFailureLog, formatTarget } from '../../src/engine/relay/connect-failures.js';
import type { Connection } from '../../src/engine/relay/connection.js';
import type { Listener } from '../../src/engine/relay/listener.js';
import { BufferPool } from '../../src/engine/tables/buffers.js';
import { type KeyEntry, KeyTable } from '../../src/engine/tables/keys.js';
import { OpPool } from '../../src/engine/tables/ops.js';
import {
  BYTES_OFFSET,
  CODES,
  type CompleteOptions,
  FakeBackend,
  type FakeBackendOptions,
  type FakeOp,
  STATUS_OFFSET,
  STATUS_PENDING,
} from '../helpers/fake-backend.js';

// ---- the rig -----------------------------------------------------------------------------------

const BUF = 64;

type EngineModule = typeof import('../../src/engine/engine.js');

interface Rig {
  fake: FakeBackend;
  engine: Engine;
  listener: Listener;
  /** The listening socket. */
  lsock: number;
  events: EngineEvent[];
  logs: Array<{ level: string; obj: Record<string, unknown>; msg: string }>;
  /** What the engine told its observer. */
  seen: {
    connectFailed: string[];
    opened: string[];
    closed: string[];
    rejected: string[];
    /** "op:ERROR_NAME" (completions) and "call:ERROR_NAME" (socket calls) → count. */
    errors: Map<string, number>;
    /** Completions applied from the inline queue. */
    inline: number;
  };
}

interface RigOptions {
  listener?: Partial<ListenerConfig>;
  engine?: EngineConfig;
  fake?: FakeBackendOptions;
  /** An Engine class from a mocked import (DNS tests). */
  Engine?: EngineModule['Engine'];
}

/** The engine's private sweep timer: tests run the sweep by hand (engine.sweep()). */
function sweepTimer(e: Engine): { stop(): void } {
  return (e as unknown as { sweeper: { stop(): void } }).sweeper;
}

async function rig(t: Test, o: RigOptions = {}): Promise<Rig> {
  const fake = new FakeBackend(o.fake);
  const logs: Rig['logs'] = [];
  const E = o.Engine ?? Engine;
  const engine = new E(
    fake,
    { bufferSize: BUF, parkAfterMs: 3_600_000, ...o.engine },
    (l, obj, msg) => logs.push({ level: l, obj, msg }),
  );
  const seen: Rig['seen'] = {
    connectFailed: [],
    opened: [],
    closed: [],
    rejected: [],
    errors: new Map(),
    inline: 0,
  };
  const countError = (k: string) => seen.errors.set(k, (seen.errors.get(k) ?? 0) + 1);
  engine.observer = {
    completion(op, _latency, _code, errorName, inline) {
      if (errorName !== null) countError(`${op}:${errorName}`);
      if (inline) seen.inline++;
    },
    batch() {},
    accepted() {},
    connectionOpened: (c) => seen.opened.push(c.id),
    connectionClosed: (c) => seen.closed.push(c.id),
    upstreamConnectFailed: (_l, name) => seen.connectFailed.push(name),
    rejected: (_l, reason) => seen.rejected.push(reason),
    socketCallFailed: (call, name) => countError(`${call}:${name}`),
  };
  const events: EngineEvent[] = [];
  engine.events.subscribe((e) => events.push(e));
  engine.start();
  // The sweep is run by hand where a test needs it; the interval would only add noise.
  sweepTimer(engine).stop();
  const listener = await engine.addListener({
    host: '127.0.0.1',
    port: 0,
    mode: 'echo',
    target: { host: '127.0.0.1', port: 9 },
    acceptDepth: 2,
    idleTimeoutMs: 0,
    ...o.listener,
  });
  const r = { fake, engine, listener, lsock: listener.sock, events, logs, seen };
  rigsOf.get(t)?.push(r);
  return r;
}

/** Rigs created in each test, checked when its function returns. */
const rigsOf = new WeakMap<Test, Rig[]>();

/**
 * A subtest whose fake kernels must have seen no breach of the completion model (an op on a
 * closed socket, a record resubmitted while held, a socket closed with ops in flight …).
 */
function test(parent: Test, name: string, fn: (t: Test) => Promise<void>): void {
  parent.test(name, async (t) => {
    rigsOf.set(t, []);
    await fn(t);
    for (const r of rigsOf.get(t) ?? [])
      t.same(r.fake.violations, [], 'the fake kernel saw no breach of the completion model');
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tick = () => new Promise((r) => setImmediate(r));
async function until(what: string, pred: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

/** Completes the first pending accept; returns the connection it opened. */
function accept(r: Rig, o: CompleteOptions = {}): { conn: Connection; sock: number; op: FakeOp } {
  const before = new Set(r.engine.connections.keys());
  const op = r.fake.pending('accept', r.lsock)[0];
  if (!op) throw new Error('no accept pending');
  r.fake.complete(op, o);
  const conn = [...r.engine.connections.values()].find((c) => !before.has(c.id));
  if (!conn) throw new Error('the accept opened no connection');
  return { conn, sock: conn.client.sock, op };
}

/** Forward: accepts and lets the upstream connect succeed. */
function openForward(r: Rig): { conn: Connection; client: number; up: number } {
  const { conn, sock } = accept(r);
  const up = (conn.upstream as NonNullable<Connection['upstream']>).sock;
  r.fake.complete(r.fake.one('connect', up));
  return { conn, client: sock, up };
}

/** Completes the pending wait on `sock` (if that is what is pending): data is there. */
function wake(r: Rig, sock: number): FakeOp {
  const rd = r.fake.one('recv', sock);
  if (rd.length > 0) return rd;
  r.fake.complete(rd);
  return r.fake.one('recv', sock);
}

/** `data` arrives on `from`: its read completes; returns the send it caused on `to`. */
function arrive(r: Rig, from: number, to: number, data: string): FakeOp {
  r.fake.complete(wake(r, from), { data });
  return r.fake.one('send', to);
}

/** The peer of `sock` sends its FIN: the pending read completes with 0 bytes. */
function eof(r: Rig, sock: number): void {
  r.fake.complete(wake(r, sock), { bytes: 0 });
}

function closedEvent(r: Rig, id: string) {
  return r.events.find(
    (e): e is Extract<EngineEvent, { type: 'connection-closed' }> =>
      e.type === 'connection-closed' && e.connection === id,
  );
}

/** closeSocket calls on `sock`, as [abortive] flags. */
function closes(r: Rig, sock: number): boolean[] {
  return r.fake.calls('closeSocket', sock).map((c) => c.abortive as boolean);
}

function seqOfClose(r: Rig, sock: number): number {
  return r.fake.seqOf((c) => c.call === 'closeSocket' && c.sock === sock);
}

function seqOfCompletion(r: Rig, op: FakeOp): number {
  return r.fake.seqOf(
    (c) => c.call === 'completion' && c.rec === op.addr && c.seq > opSubmitSeq(r, op),
  );
}

function opSubmitSeq(r: Rig, op: FakeOp): number {
  return r.fake.seqOf((c) => c.call === 'submit' && c.op === op);
}

function liveKeys(e: Engine): bigint[] {
  return [...e.keys.live()].map((k) => k.key);
}

// ---- the fake kernel itself ---------------------------------------------------------------------

test(t, 'fake kernel: pinned addresses are unique, stable and never reused', async (t) => {
  const fake = new FakeBackend();
  const a = fake.allocPinned(100);
  const b = fake.allocPinned(5000);
  t.ok(a.addr % 4096n === 0n && b.addr % 4096n === 0n, 'page-aligned');
  t.ok(b.addr >= a.addr + 4096n * 2n, 'with a guard page between blocks');
  a.bytes[3] = 42;
  t.equal(fake.mem(a.addr + 3n, 1)[0], 42, 'the address reads the same bytes');
  fake.freePinned(a);
  const c = fake.allocPinned(100);
  t.not(c.addr, a.addr, 'a freed address is not handed out again');
  t.throws(() => fake.mem(a.addr, 1), /no pinned memory/, 'freed memory is gone');
  t.ok(Number(c.addr) < Number.MAX_SAFE_INTEGER, 'addresses survive Number()');
});

// ---- key table -----------------------------------------------------------------------------------

test(
  t,
  'key table: generation<<32 | index; release refuses in-flight ops and double release',
  async (t) => {
    const kt = new KeyTable();
    const a = kt.assign(10, { kind: 'listener', id: 'l1' });
    t.equal(a.index, 1, 'index 0 is never given (key 0 wakes the loop)');
    t.equal(a.key, (1n << 32n) | 1n);
    t.equal(a.keyHex, '0x0000000100000001');
    const b = kt.assign(11, { kind: 'listener', id: 'l2' });
    t.equal(b.key, (1n << 32n) | 2n);
    a.ops.add({ addrNum: 0x1000 });
    t.throws(() => kt.release(a), /released with 1 ops in flight/);
    t.ok(a.live, 'a refused release leaves the key live');
    const c = kt.assign(12, { kind: 'listener', id: 'l3' });
    t.equal(c.index, 3, 'a key with ops in flight is not reused');
    a.ops.clear();
    const oldKey = a.key;
    kt.release(a);
    t.throws(() => kt.release(a), /released twice/);
    const d = kt.assign(13, { kind: 'listener', id: 'l4' });
    t.equal(d.index, 1, 'the freed slot is reused');
    t.equal(d.generation, 2);
    t.equal(d.key, (2n << 32n) | 1n, 'with a new generation: a stale packet cannot name it');
    t.not(d.key, oldKey);
    t.equal(kt.size, 3);
  },
);

test(
  t,
  'key table, through the engine: a key stays taken until its ops completed, then comes back with a new generation',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const k1 = conn.client.keyEntry.key;
    t.same(
      r.fake.calls('associate', sock).map((c) => c.key),
      [k1],
      'the kernel got the key',
    );
    t.equal(k1 >> 32n, 1n, 'generation 1');
    r.engine.closeConnection(conn.id, 'abort');
    t.same(closes(r, sock), [], 'not closed while its wait is in flight');
    t.ok(liveKeys(r.engine).includes(k1), 'key still taken');
    // Meanwhile another client: it must get another slot.
    const c2 = accept(r);
    t.not(
      c2.conn.client.keyEntry.index,
      conn.client.keyEntry.index,
      'the in-flight key slot is not reused',
    );
    // The cancelled wait completes; only now is the socket closed (RST) and the key released.
    let keyLiveAtClose: boolean | null = null;
    r.fake.onCall = (c) => {
      if (c.call === 'closeSocket' && c.sock === sock)
        keyLiveAtClose = liveKeys(r.engine).includes(k1);
    };
    r.fake.complete(r.fake.one('recv', sock), { status: CODES.operationAborted });
    t.same(closes(r, sock), [true], 'closed with RST after the completion');
    t.equal(keyLiveAtClose, true, 'the key was released only after closesocket');
    t.notOk(liveKeys(r.engine).includes(k1), 'then released');
    // The next connection takes that slot, with generation 2, and the kernel sees that key.
    const c3 = accept(r);
    t.equal(c3.conn.client.keyEntry.index, conn.client.keyEntry.index, 'slot reused once free');
    t.equal(
      r.fake.calls('associate', c3.sock)[0]?.key,
      (2n << 32n) | BigInt(conn.client.keyEntry.index),
    );
  },
);

// ---- op table ------------------------------------------------------------------------------------

test(
  t,
  'op table: release once, buffer back with the record once, quarantine keeps both out',
  async (t) => {
    const fake = new FakeBackend();
    const bufs = new BufferPool(fake, BUF);
    const pool = new OpPool(fake, fake.recordHeaderSize, bufs);
    const kt = new KeyTable();
    const key = kt.assign(7, { kind: 'listener', id: 'l' });
    const owner = { complete() {} };
    const r1 = pool.acquire('recv', key, owner);
    t.equal(pool.byAddress(r1.addrNum), r1, 'found by its address');
    t.equal(r1.storedOpId(), r1.slot, 'slot stamped into pinned memory');
    t.equal(r1.storedGeneration(), 1);
    t.equal(r1.sock, 7, 'the op carries its socket');
    r1.buffer = bufs.acquire();
    t.equal(bufs.inUse, 1);
    pool.release(r1);
    t.equal(bufs.inUse, 0, 'the buffer went back with the record');
    t.equal(r1.buffer, null);
    t.throws(() => pool.release(r1), /released twice/);
    t.equal(bufs.inUse, 0, 'a double release does not return the buffer twice');
    t.equal(pool.inFlightTotal, 0);
    const r2 = pool.acquire('send', key, owner);
    t.equal(r2, r1, 'LIFO: the released record is the next one used');
    t.equal(r2.storedGeneration(), 2, 'with a new generation');
    // takeBuffer hands the buffer on: the record lets go of it.
    r2.buffer = bufs.acquire();
    const handed = r2.takeBuffer();
    pool.release(r2);
    t.equal(bufs.inUse, 1, 'a buffer handed on is not returned by the record that gave it');
    if (handed) bufs.release(handed);
    // Quarantine: the record and its buffer never come back.
    const q = pool.acquire('recv', key, owner);
    q.buffer = bufs.acquire();
    pool.quarantine(q);
    t.equal(pool.quarantined, 1);
    t.equal(bufs.inUse, 1, 'the quarantined record keeps its buffer');
    t.throws(() => pool.release(q), /released twice/, 'a quarantined record cannot be released');
    const taken = [];
    for (let i = 0; i < 600; i++) taken.push(pool.acquire('recv', key, owner));
    t.notOk(taken.includes(q), 'never handed out again, even when the pool grows');
    t.throws(() => pool.destroy(), /600 ops still in flight/);
    for (const rec of taken) pool.release(rec);
    pool.destroy();
  },
);

test(
  t,
  'op table, through the engine: a record is reused only after its completion was handled',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const wait = r.fake.one('recv', sock);
    r.engine.closeConnection(conn.id, 'abort');
    // Churn: other connections come and go while the cancelled wait is still pending.
    for (let i = 0; i < 5; i++) {
      const c = accept(r);
      eof(r, c.sock);
    }
    const reused = r.fake.ops.filter((o) => o.addr === wait.addr && o !== wait);
    t.same(reused, [], 'its record was not given to any other op while pending');
    r.fake.complete(wait, { status: CODES.operationAborted });
    const c = accept(r);
    t.equal(
      r.fake.one('recv', c.sock).addr,
      wait.addr,
      'after its completion the record is reused (LIFO)',
    );
    t.equal(r.engine.buffers.inUse, 0, 'no buffer leaked');
  },
);

// ---- listener --------------------------------------------------------------------------------------

test(t, 'listener: binds, associates its key, keeps acceptDepth accepts posted', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 3 } });
  const { fake, lsock, listener } = r;
  const key = listener.keyEntry as KeyEntry;
  const first = fake.log.findIndex((c) => c.call === 'createSocket');
  t.same(
    fake.log.slice(first, first + 3).map((c) => [c.call, c.sock]),
    [
      ['createSocket', lsock],
      ['listen', lsock],
      ['associate', lsock],
    ],
    'socket, listen, associate, in that order',
  );
  t.equal(fake.calls('associate', lsock)[0]?.key, key.key);
  t.equal(key.key, (1n << 32n) | 2n, 'slot 1 is the heartbeat, 2 the listener');
  const accepts = fake.pending('accept', lsock);
  t.equal(accepts.length, 3);
  t.equal(new Set(accepts.map((a) => a.acceptSock)).size, 3, 'each accept has its own socket');
  for (const a of accepts)
    t.ok(fake.calls('createSocket', a.acceptSock).length === 1, 'created before the AcceptEx');
  t.equal(listener.acceptsInFlight, 3);
  t.equal(listener.state, 'listening');
  t.notOk(listener.degraded);
  t.equal(fake.calls('post').length, 1, 'the heartbeat was posted');
});

test(
  t,
  'listener: the accept completes on the listener key; the new socket gets its own key; the chain is re-posted',
  async (t) => {
    const r = await rig(t);
    const lkey = (r.listener.keyEntry as KeyEntry).key;
    const { conn, sock, op } = accept(r);
    const done = r.fake.calls('completion').at(-1);
    t.equal(done?.key, lkey, 'the accept packet carried the listener key');
    t.equal(sock, op.acceptSock, 'the connection runs on the pre-created socket');
    const assoc = r.fake.calls('associate', sock);
    t.equal(assoc.length, 1);
    t.equal(assoc[0]?.key, conn.client.keyEntry.key);
    t.not(conn.client.keyEntry.key, lkey, 'its own key');
    t.ok((assoc[0]?.seq ?? 0) > (done?.seq ?? 0), 'associated after the accept completed');
    t.equal(r.fake.calls('finishAccept', sock).length, 1, 'SO_UPDATE_ACCEPT_CONTEXT');
    t.equal(r.seen.errors.size, 0);
    t.equal(r.fake.pending('accept', r.lsock).length, 2, 'a new accept replaces it');
    const opened = r.events.find((e) => e.type === 'connection-opened');
    t.match(opened, {
      connection: conn.id,
      key: conn.client.keyEntry.keyHex,
      acceptKey: (r.listener.keyEntry as KeyEntry).keyHex,
    });
    t.same(r.seen.opened, [conn.id]);
    const wait = r.fake.one('recv', sock);
    t.equal(wait.length, 0, 'echo starts with a bufferless wait');
    t.equal(wait.bufAddr, 0n);
    r.fake.complete(wait);
    const trace = conn.trace.entries();
    t.match(trace[0], { op: 'accept', key: (r.listener.keyEntry as KeyEntry).keyHex });
    t.match(trace[1], { op: 'recv', key: conn.client.keyEntry.keyHex, keyMismatch: false });
    t.equal(
      r.fake.calls('completion').at(-1)?.key,
      conn.client.keyEntry.key,
      'its first packet: own key',
    );
  },
);

test(
  t,
  'listener: a failed accept closes its socket and re-posts after a backoff, not at once',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const op = r.fake.one('accept', r.lsock);
    const failedAt = performance.now();
    r.fake.complete(op, { status: CODES.netnameDeleted });
    t.same(closes(r, op.acceptSock), [true], 'its accept socket is reset');
    t.same(r.fake.pending('accept'), [], 'not re-posted at once');
    t.ok(r.listener.degraded, 'degraded while nothing is posted');
    t.equal(r.listener.acceptError?.error, 'ERROR_NETNAME_DELETED');
    t.equal(r.engine.connections.size, 0);
    await until('the re-post', () => r.fake.pending('accept').length === 1);
    t.ok(performance.now() - failedAt >= 5, 'after a backoff');
    t.notOk(r.listener.degraded);
    accept(r);
    t.equal(r.listener.acceptError, null, 'a successful accept clears the error');
  },
);

test(
  t,
  'listener: a persistent inline accept failure backs off (no spin) and recovers by itself',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 2 } });
    // The two posted accepts fail, and every re-post fails inline (EMFILE), no packet.
    r.fake.scriptInline({ kind: 'accept', code: CODES.tooManySockets, times: Infinity });
    for (const a of r.fake.pending('accept')) r.fake.complete(a, { status: CODES.tooManySockets });
    const posts0 = r.listener.acceptPostsTotal;
    await sleep(80);
    const posts = r.listener.acceptPostsTotal - posts0;
    t.ok(posts > 0, `retried (${posts} posts in 80 ms)`);
    t.ok(posts <= 12, `with backoff: ${posts} posts in 80 ms (10, 20, 40 ms … apart)`);
    t.ok(r.listener.degraded, 'degraded between retries');
    t.equal(r.listener.acceptError?.error, 'WSAEMFILE');
    for (const a of r.fake.ops.filter((o) => o.kind === 'accept' && o.state === 'inline'))
      t.equal(closes(r, a.acceptSock).length, 1, 'each failed accept socket closed');
    r.fake.clearInline();
    await until('recovery', () => r.fake.pending('accept').length === 2, 3000);
    t.notOk(r.listener.degraded, 'recovered without help');
  },
);

test(
  t,
  'listener: degraded when no accept socket can be created; recovers when sockets return',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 2 } });
    r.fake.failNext('createSocket', CODES.tooManySockets, Infinity);
    accept(r); // its re-post fails: EMFILE
    t.equal(r.fake.pending('accept').length, 1);
    t.notOk(r.listener.degraded, 'one accept still posted');
    r.fake.complete(r.fake.one('accept'), { status: CODES.netnameDeleted });
    t.equal(r.listener.acceptsInFlight, 0);
    t.ok(r.listener.degraded, 'no accept posted and none can be: degraded');
    t.ok(r.listener.acceptError, 'with the last error');
    await sleep(60);
    const tries = r.fake.failedCalls.get('createSocket') ?? 0;
    t.ok(tries >= 2 && tries <= 6, `retried with backoff (${tries} attempts in ~60 ms)`);
    t.equal(r.listener.acceptError?.error, 'WSAEMFILE');
    r.fake.clearFailures('createSocket');
    await until('recovery', () => r.fake.pending('accept').length === 2, 3000);
    t.notOk(r.listener.degraded);
  },
);

test(
  t,
  'listener: while degraded, the last error stays shown even after an earlier accept succeeded',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 2 } });
    r.fake.failNext('createSocket', CODES.tooManySockets, Infinity);
    r.fake.complete(r.fake.pending('accept')[0] as FakeOp, { status: CODES.netnameDeleted });
    // The accept chain now backs off; the other, already-posted accept succeeds.
    accept(r);
    t.ok(r.listener.degraded, 'nothing posted, retry armed: degraded');
    t.ok(r.listener.acceptError, '/listeners and /readyz show why (the last error)');
    r.fake.clearFailures();
  },
);

test(
  t,
  'listener: close cancels the accepts, closes the socket only after they completed, drains connections',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 2 } });
    const c1 = accept(r);
    const [a1, a2] = r.fake.pending('accept', r.lsock) as [FakeOp, FakeOp];
    const lkey = (r.listener.keyEntry as KeyEntry).key;
    const closeSeq = r.fake.log.length;
    r.engine.closeListener(r.listener.id, 'drain', 60_000);
    t.equal(r.listener.state, 'closing');
    t.same(
      r.fake.calls('cancel').map((c) => c.rec),
      [a1.addr, a2.addr],
      'each posted accept cancelled',
    );
    t.same(closes(r, r.lsock), [], 'the listening socket stays open while accepts are pending');
    r.fake.complete(a1, { status: CODES.operationAborted });
    t.same(closes(r, a1.acceptSock), [true], 'the cancelled accept socket is closed');
    t.same(closes(r, r.lsock), []);
    // The other accept had completed before the cancel took: a client got in; it is reset.
    r.fake.complete(a2);
    t.same(closes(r, a2.acceptSock), [true], 'a client accepted while closing is reset');
    t.equal(r.engine.connections.size, 1, 'no connection for it');
    t.same(closes(r, r.lsock), [false], 'now the listening socket is closed');
    t.ok(seqOfClose(r, r.lsock) > seqOfCompletion(r, a2), 'after the last accept completed');
    t.notOk(liveKeys(r.engine).includes(lkey), 'its key released');
    t.equal(
      r.fake.log.filter((c) => c.seq > closeSeq && c.call === 'submit' && c.kind === 'accept')
        .length,
      0,
      'nothing re-posted',
    );
    t.equal(r.listener.state, 'draining', 'draining while a connection lives');
    t.ok(r.engine.listeners.has(r.listener.id));
    t.match(
      r.events.find((e) => e.type === 'listener-draining'),
      { listener: r.listener.id, connections: 1 },
    );
    // The connection still relays, then ends by itself.
    const send = arrive(r, c1.sock, c1.sock, 'ping');
    t.equal(send.data?.toString(), 'ping', 'a draining listener’s connection still relays');
    r.fake.complete(send);
    eof(r, c1.sock);
    t.same(closes(r, c1.sock), [false]);
    t.equal(r.listener.state, 'closed');
    t.notOk(r.engine.listeners.has(r.listener.id));
    t.ok(r.events.some((e) => e.type === 'listener-down'));
  },
);

test(
  t,
  'listener: closing while the chain backs off closes at once, and nothing is posted later',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    r.fake.complete(r.fake.one('accept'), { status: CODES.netnameDeleted });
    t.ok(r.listener.degraded);
    r.listener.close();
    t.same(closes(r, r.lsock), [false], 'no accept pending: closed at once');
    t.equal(r.listener.state, 'closed');
    const n = r.fake.log.length;
    await sleep(40);
    t.same(
      r.fake.log.slice(n).filter((c) => c.call === 'submit' || c.call === 'createSocket'),
      [],
      'the pending retry was dropped',
    );
  },
);

test(
  t,
  'listener: per-source limit and allow/deny refuse at accept, before any read; counts never leak',
  async (t) => {
    test(t, 'per-source', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 2, maxConnectionsPerSource: 2 } });
      const a = accept(r);
      const b = accept(r);
      t.equal(r.listener.perSource.get('127.0.0.1'), 2);
      const surplus = r.fake.pending('accept')[0] as FakeOp;
      r.fake.complete(surplus);
      t.same(closes(r, surplus.acceptSock), [true], 'the third from 127.0.0.1 is reset');
      t.same(r.fake.calls('submit', surplus.acceptSock), [], 'and nothing was read from it');
      t.equal(r.listener.rejected['per-source'], 1);
      t.equal(r.engine.connections.size, 2);
      eof(r, a.sock);
      t.equal(r.listener.perSource.get('127.0.0.1'), 1, 'a closed connection frees its slot');
      accept(r);
      eof(r, b.sock);
      for (const c of [...r.engine.connections.values()]) eof(r, c.client.sock);
      t.equal(r.listener.perSource.size, 0, 'no source left counted once all closed');
    });
    test(t, 'deny', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 2, deny: ['127.0.0.0/8'] } });
      const op = r.fake.pending('accept')[0] as FakeOp;
      r.fake.complete(op);
      t.same(closes(r, op.acceptSock), [true], 'a denied client is reset');
      t.same(r.fake.calls('submit', op.acceptSock), [], 'before any read');
      t.equal(r.listener.rejected.denied, 1);
      t.equal(r.engine.connections.size, 0);
      t.equal(r.fake.pending('accept').length, 2, 'and accepting goes on');
    });
    test(t, 'an address that cannot be read is not allowed', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 1, allow: ['127.0.0.1'] } });
      const op = r.fake.pending('accept')[0] as FakeOp;
      r.fake.failNext('peerAddress', CODES.noBufs, 1);
      r.fake.complete(op);
      t.same(closes(r, op.acceptSock), [true]);
      t.equal(r.listener.rejected.denied, 1);
      accept(r);
      t.equal(r.engine.connections.size, 1, 'the next client, allowed, is served');
    });
    test(t, 'engine.maxConnections', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 2 }, engine: { maxConnections: 1 } });
      accept(r);
      const op = r.fake.pending('accept')[0] as FakeOp;
      r.fake.complete(op);
      t.same(closes(r, op.acceptSock), [true]);
      t.equal(r.listener.rejected['engine-max-connections'], 1);
      t.equal(r.listener.rejectedTotal, 1);
    });
  },
);

test(
  t,
  'listener: at the connection limit, "wait" posts no accept, "reset" resets the surplus',
  async (t) => {
    test(t, 'wait', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 4, maxConnections: 1, onLimit: 'wait' } });
      t.equal(
        r.fake.pending('accept').length,
        1,
        'only as many accepts as the limit leaves room for',
      );
      const c = accept(r);
      t.equal(r.fake.pending('accept').length, 0, 'at the limit: none');
      eof(r, c.sock);
      t.equal(r.fake.pending('accept').length, 1, 're-posted when the connection ended');
    });
    test(t, 'reset', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 2, maxConnections: 1, onLimit: 'reset' } });
      const c = accept(r);
      const surplus = r.fake.pending('accept')[0] as FakeOp;
      r.fake.complete(surplus);
      t.same(closes(r, surplus.acceptSock), [true], 'the surplus client is reset');
      t.equal(r.engine.connections.size, 1);
      t.equal(r.listener.rejectedTotal, 1);
      t.same(r.seen.rejected, ['max-connections'], 'counted by reason');
      t.equal(r.fake.pending('accept').length, 2, 'and accepting goes on');
      t.same(closes(r, c.sock), []);
    });
  },
);

test(
  t,
  'listener: a connection that fails during set-up is never announced, never "closed", and cleaned up',
  async (t) => {
    test(t, 'associate fails for the accepted socket', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 1 } });
      const op = r.fake.one('accept');
      r.fake.failNext('associate', CODES.noBufs, 1, op.acceptSock);
      r.fake.complete(op);
      t.same(closes(r, op.acceptSock), [true], 'its socket is reset');
      t.same(r.seen.opened, [], 'not announced');
      t.same(r.seen.closed, [], 'connectionClosed not fired');
      t.notOk(
        r.events.some((e) => e.type === 'connection-opened' || e.type === 'connection-closed'),
      );
      t.equal(r.engine.keys.size, 2, 'its key released (heartbeat and listener remain)');
      t.equal(r.listener.connections.size, 0);
      t.equal(r.fake.pending('accept').length, 1, 'the accept chain goes on');
      t.ok(r.logs.some((l) => l.msg === 'cannot set up accepted socket'));
    });
    test(
      t,
      'the peer address cannot be read: the connection goes on, its address unknown',
      async (t) => {
        const r = await rig(t, { listener: { acceptDepth: 1 } });
        const op = r.fake.one('accept');
        r.fake.failNext('peerAddress', CODES.noBufs, 1, op.acceptSock);
        r.fake.complete(op);
        t.equal(r.fake.calls('associate', op.acceptSock).length, 1);
        t.equal(r.seen.opened.length, 1, 'announced');
        const conn = [...r.engine.connections.values()][0];
        t.equal(conn?.client.remote, null, 'asked on first use: unreadable is null, not a failure');
        t.equal(conn?.state, 'open');
        t.same(closes(r, op.acceptSock), [], 'not closed');
        t.equal(r.fake.pending('accept').length, 1);
      },
    );
    test(
      t,
      'forward: the upstream socket cannot be created (the connection was opened)',
      async (t) => {
        const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
        r.fake.failNext('createSocket', CODES.tooManySockets, 1);
        // The accept itself needs no new socket until its re-post, which comes after the upstream's.
        const op = r.fake.one('accept');
        r.fake.complete(op);
        t.same(closes(r, op.acceptSock), [true], 'the client is reset');
        t.equal(r.seen.opened.length, 1, 'it was announced…');
        t.equal(r.seen.closed.length, 1, '…so its end is too');
        // No connect was attempted, but the upstream cannot be reached either: out of sockets
        // (or, at the bind, of ports) is counted and logged as a connect failure, by name.
        t.same(r.seen.connectFailed, ['WSAEMFILE'], 'a connect failure, by its error name');
        t.same(
          r.logs.filter((l) => l.msg === 'upstream connect failed').map((l) => l.obj.error),
          ['WSAEMFILE'],
          'and logged',
        );
        t.equal(r.engine.keys.size, 2);
      },
    );
  },
);

test(
  t,
  'listener: io_uring-style accept (no pre-created socket) takes the fd the kernel returned',
  async (t) => {
    const r = await rig(t, {
      fake: { preCreatesAcceptSocket: false },
      listener: { acceptDepth: 2 },
    });
    const accepts = r.fake.pending('accept');
    t.same(
      accepts.map((a) => a.acceptSock),
      [-1, -1],
    );
    t.equal(r.fake.calls('createSocket').length, 1, 'only the listening socket was created');
    const { sock } = accept(r);
    t.equal(r.fake.sockets.get(sock)?.acceptedFrom, r.lsock);
    t.equal(r.fake.calls('associate', sock).length, 1);
    r.listener.close();
    const [a] = r.fake.pending('accept') as [FakeOp];
    r.fake.complete(a); // a client got in as the listener closed
    const fd = [...r.fake.sockets.values()].at(-1)?.sock as number;
    t.same(closes(r, fd), [true], 'the fd the kernel returned is reset');
  },
);

// ---- connection: upstream connect ------------------------------------------------------------------

test(t, 'connection: forward connect success starts both directions', async (t) => {
  const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  t.equal(conn.state, 'connecting');
  const up = conn.upstream?.sock as number;
  t.same(
    r.fake.log.filter((c) => c.sock === up).map((c) => c.call),
    ['createSocket', 'bindAny', 'associate', 'submit'],
  );
  const connect = r.fake.one('connect', up);
  t.same(connect.peer, { host: '127.0.0.1', port: 9, family: 4 });
  t.equal(r.fake.calls('associate', up)[0]?.key, conn.upstream?.keyEntry.key);
  t.same(r.fake.pending('recv'), [], 'nothing read before the upstream is connected');
  r.fake.complete(connect);
  t.equal(conn.state, 'open');
  t.equal(r.fake.calls('finishConnect', up).length, 1);
  t.equal(r.fake.one('recv', sock).length, 0, 'a wait on the client');
  t.equal(r.fake.one('recv', up).length, 0, 'a wait on the upstream');
  t.same(r.seen.connectFailed, []);
});

test(
  t,
  'connection: no port for the upstream (its bind fails) is a connect failure, logged',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const op = r.fake.pending('accept', r.lsock)[0] as FakeOp;
    r.fake.failNext('bindAny', CODES.noBufs, 1);
    r.fake.complete(op);
    t.same(r.seen.connectFailed, ['WSAENOBUFS'], 'counted by the error name');
    t.same(
      r.logs.filter((l) => l.msg === 'upstream connect failed').map((l) => [l.level, l.obj]),
      [['warn', { listener: r.listener.id, target: '127.0.0.1:9', error: 'WSAENOBUFS' }]],
      'logged at warn with the listener, the target and the error',
    );
    t.same(closes(r, op.acceptSock), [true], 'the client is reset');
    const closed = r.events.find((e) => e.type === 'connection-closed');
    t.match(closed, { abortive: true, reason: /^upstream socket: .*WSAENOBUFS/ });
    t.equal(r.engine.keys.size, 2, 'only the listener and the heartbeat keep a key');
  },
);

t.test(
  'connect failure log: first at once, repeats summed up per window, quiet ends it',
  async (t) => {
    const log = new ConnectFailureLog(10_000);
    t.equal(log.note('l1', 'h:1', 'ECONNREFUSED', 0), true, 'the first is logged');
    t.equal(log.note('l1', 'h:1', 'ECONNREFUSED', 1), false, 'a repeat is not');
    t.equal(log.note('l1', 'h:1', 'ECONNREFUSED', 2), false);
    t.equal(log.note('l1', 'h:1', 'ETIMEDOUT', 3), true, 'another error is logged at once');
    t.equal(log.note('l2', 'h:2', 'ECONNREFUSED', 4), true, 'so is another listener');
    t.same(log.due(9_999), [], 'nothing before the window ends');
    t.same(
      log.due(10_000),
      [{ listener: 'l1', target: 'h:1', error: 'ECONNREFUSED', suppressed: 2, windowMs: 10_000 }],
      'one summary, for the kind with repeats',
    );
    t.equal(log.note('l1', 'h:1', 'ECONNREFUSED', 12_000), false, 'the episode goes on');
    t.same(log.due(15_000), [], 'at most one summary per window');
    t.same(log.due(20_000), [
      { listener: 'l1', target: 'h:1', error: 'ECONNREFUSED', suppressed: 1, windowMs: 10_000 },
    ]);
    t.same(log.due(30_000), [], 'a quiet window: no line, and the episode ends');
    t.equal(log.note('l1', 'h:1', 'ECONNREFUSED', 31_000), true, 'the next is logged at once');
    t.equal(log.note('l1', 'h:1', 'ECONNREFUSED', 31_001), false);
    t.same(
      log.flush(32_000),
      [{ listener: 'l1', target: 'h:1', error: 'ECONNREFUSED', suppressed: 1, windowMs: 1_000 }],
      'at shutdown, what was not logged yet is summed up',
    );
    t.equal(formatTarget({ host: '::1', port: 8080 }), '[::1]:8080');
  },
);

test(
  t,
  'connection: a refused connect is a connect failure; both sockets reset, keys released',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const up = conn.upstream?.sock as number;
    r.fake.complete(r.fake.one('connect', up), { status: CODES.connectionRefused });
    t.same(r.seen.connectFailed, ['ERROR_CONNECTION_REFUSED']);
    t.same(closes(r, sock), [true]);
    t.same(closes(r, up), [true]);
    t.match(closedEvent(r, conn.id), {
      abortive: true,
      reason: 'upstream connect failed: ERROR_CONNECTION_REFUSED',
    });
    t.equal(r.seen.errors.get('connect:ERROR_CONNECTION_REFUSED'), 1);
    t.equal(r.engine.keys.size, 2);
    t.same(r.seen.closed, [conn.id]);
  },
);

test(
  t,
  'connection: an upstream socket connected to itself (a local target nobody listens at) is refused, never relayed',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const up = conn.upstream?.sock as number;
    // The kernel picked the target's own port for the socket: simultaneous open succeeded.
    r.fake.localAddresses.set(up, { host: '127.0.0.1', port: 9, family: 4 });
    r.fake.complete(r.fake.one('connect', up));
    t.same(r.seen.connectFailed, ['SELF_CONNECT'], 'counted as a connect failure by name');
    t.same(r.fake.pending('recv', up), [], 'nothing is read from it');
    t.same(r.fake.pending('recv', sock), [], 'nor from the client');
    t.same(closes(r, sock), [true], 'the client is reset');
    t.same(closes(r, up), [true]);
    t.match(closedEvent(r, conn.id), { abortive: true, reason: /SELF_CONNECT/ });
    t.equal(r.engine.keys.size, 2, 'its keys are released');
  },
);

test(t, 'connection: connect timeout cancels the connect, then resets', async (t) => {
  const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1, connectTimeoutMs: 30 } });
  const { conn, sock } = accept(r);
  const up = conn.upstream?.sock as number;
  const connect = r.fake.one('connect', up);
  r.engine.sweep();
  t.same(r.fake.calls('cancel'), [], 'not before the deadline');
  await sleep(40);
  r.engine.sweep();
  r.engine.sweep();
  t.same(
    r.fake.calls('cancel').map((c) => c.rec),
    [connect.addr],
    'the connect is cancelled, once',
  );
  t.same(closes(r, up), [], 'not closed while the connect is pending');
  r.fake.complete(connect, { status: CODES.operationAborted });
  t.same(r.seen.connectFailed, ['CONNECT_TIMEOUT']);
  t.same(closes(r, sock), [true]);
  t.same(closes(r, up), [true]);
  t.match(closedEvent(r, conn.id), { reason: 'upstream connect failed: CONNECT_TIMEOUT' });
});

test(
  t,
  'connection: a connect that succeeds as its timeout cancel is asked still opens',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1, connectTimeoutMs: 30 } });
    const { conn, sock } = accept(r);
    const up = conn.upstream?.sock as number;
    await sleep(40);
    r.engine.sweep();
    r.fake.complete(r.fake.one('connect', up)); // the kernel's word: it connected
    t.equal(conn.state, 'open');
    t.same(r.seen.connectFailed, []);
    t.equal(r.fake.pending('recv', sock).length, 1);
  },
);

test(
  t,
  'connection: an upstream that resets right after connect is not a connect failure',
  async (t) => {
    test(t, 'the connect completes with a reset', async (t) => {
      const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
      const { conn, sock } = accept(r);
      const up = conn.upstream?.sock as number;
      r.fake.complete(r.fake.one('connect', up), { status: CODES.connReset });
      t.same(r.seen.connectFailed, [], 'not counted as a connect failure');
      t.match(closedEvent(r, conn.id), {
        abortive: true,
        reason: /upstream reset right after connect: WSAECONNRESET/,
      });
      t.same(closes(r, sock), [true]);
      t.same(closes(r, up), [true]);
    });
    test(t, 'the connect succeeds, the first read is reset', async (t) => {
      const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
      const { conn, client, up } = openForward(r);
      r.fake.complete(r.fake.one('recv', up), { status: CODES.connReset });
      t.same(r.seen.connectFailed, []);
      t.same(
        r.fake.calls('cancel').map((c) => c.sock),
        [client],
        "the client's wait is cancelled",
      );
      t.same(closes(r, client), [], 'and waited for');
      r.fake.complete(r.fake.one('recv', client), { status: CODES.operationAborted });
      t.same(closes(r, client), [true]);
      t.same(closes(r, up), [true]);
      t.match(closedEvent(r, conn.id), {
        abortive: true,
        reason: 'upstream recv failed: WSAECONNRESET',
      });
      t.same(r.seen.connectFailed, [], 'still not a connect failure');
    });
  },
);

test(t, 'connection: close during connect', async (t) => {
  test(
    t,
    'graceful: cancel the connect, then FIN to the client (nothing was relayed)',
    async (t) => {
      const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
      const { conn, sock } = accept(r);
      const up = conn.upstream?.sock as number;
      const connect = r.fake.one('connect', up);
      r.engine.closeConnection(conn.id, 'graceful');
      t.same(
        r.fake.calls('cancel').map((c) => c.rec),
        [connect.addr],
      );
      t.same(closes(r, sock), [], 'nothing closed while the connect is pending');
      t.same(closes(r, up), []);
      r.fake.complete(connect, { status: CODES.operationAborted });
      t.same(closes(r, sock), [false]);
      t.same(closes(r, up), [false]);
      t.same(r.seen.connectFailed, [], 'a connect given up by us is not a connect failure');
      t.same(
        r.fake.calls('submit').filter((c) => c.kind === 'recv'),
        [],
        'nothing was read',
      );
    },
  );
  test(t, 'graceful, but the connect succeeds anyway: closed without relaying', async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const up = conn.upstream?.sock as number;
    r.engine.closeConnection(conn.id, 'graceful');
    r.fake.complete(r.fake.one('connect', up));
    t.same(
      r.fake.calls('submit').filter((c) => c.kind === 'recv'),
      [],
      'no pipe started',
    );
    t.same(closes(r, sock), [false]);
    t.same(closes(r, up), [false]);
    t.equal(conn.state, 'closed');
  });
  test(t, 'abort: RST both, after the connect completed', async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const up = conn.upstream?.sock as number;
    r.engine.closeConnection(conn.id, 'abort');
    t.same(closes(r, up), []);
    r.fake.complete(r.fake.one('connect', up), { status: CODES.operationAborted });
    t.same(closes(r, sock), [true]);
    t.same(closes(r, up), [true]);
    t.same(r.seen.connectFailed, []);
  });
});

// ---- connection: close during name resolution (node:dns/promises mocked) ------------------------------

interface PendingLookup {
  host: string;
  resolve: (v: { address: string; family: number }) => void;
  reject: (e: Error) => void;
}

async function dnsRig(t: Test, listener: Partial<ListenerConfig> = {}) {
  const lookups: PendingLookup[] = [];
  // Each module that imports node:dns/promises (or one that does) is loaded with the mock.
  const dns = {
    'node:dns/promises': {
      // The engine asks for every address ({ all: true }): an answer given as one address
      // is the list of that one.
      lookup: (host: string, opts?: { all?: boolean }) =>
        new Promise((resolve, reject) =>
          lookups.push({
            host,
            resolve: (v: unknown) => resolve(opts?.all && !Array.isArray(v) ? [v] : v),
            reject,
          }),
        ),
    },
  };
  const addresses = await t.mockImport<typeof import('../../src/engine/net/upstream-addresses.js')>(
    '../../src/engine/net/upstream-addresses.js',
    dns,
  );
  const connection = await t.mockImport<typeof import('../../src/engine/relay/connection.js')>(
    '../../src/engine/relay/connection.js',
    { ...dns, '../../src/engine/net/upstream-addresses.js': addresses },
  );
  const listenerMod = await t.mockImport<typeof import('../../src/engine/relay/listener.js')>(
    '../../src/engine/relay/listener.js',
    { '../../src/engine/relay/connection.js': connection },
  );
  const mod = await t.mockImport<EngineModule>('../../src/engine/engine.js', {
    ...dns,
    '../../src/engine/relay/connection.js': connection,
    '../../src/engine/relay/listener.js': listenerMod,
  });
  const r = await rig(t, {
    Engine: mod.Engine,
    listener: {
      mode: 'forward',
      acceptDepth: 1,
      target: { host: 'upstream.invalid', port: 9 },
      ...listener,
    },
  });
  return { r, lookups };
}

function enotfound(): Error {
  return Object.assign(new Error('getaddrinfo ENOTFOUND upstream.invalid'), { code: 'ENOTFOUND' });
}

test(
  t,
  'connection: the target name is resolved per connection; a failure resets the client',
  async (t) => {
    const { r, lookups } = await dnsRig(t);
    const { conn, sock } = accept(r);
    t.equal(lookups.length, 1);
    t.equal(lookups[0]?.host, 'upstream.invalid');
    t.equal(r.fake.sockets.size, 3, 'no upstream socket while resolving');
    lookups[0]?.reject(enotfound());
    await tick();
    t.same(r.seen.connectFailed, ['ENOTFOUND']);
    t.same(closes(r, sock), [true]);
    t.match(closedEvent(r, conn.id), { reason: /not resolved: ENOTFOUND/, abortive: true });
  },
);

test(t, 'connection: resolved name → connect to the address it resolved to', async (t) => {
  const { r, lookups } = await dnsRig(t);
  const { conn } = accept(r);
  lookups[0]?.resolve({ address: '127.0.0.2', family: 4 });
  await tick();
  const connect = r.fake.one('connect', conn.upstream?.sock);
  t.same(connect.peer, { host: '127.0.0.2', port: 9, family: 4 });
});

test(t, 'connection: graceful close during name resolution', async (t) => {
  const { r, lookups } = await dnsRig(t);
  const { conn, sock } = accept(r);
  r.engine.closeConnection(conn.id, 'graceful');
  t.same(closes(r, sock), [false], 'no op in flight: FIN at once');
  t.equal(conn.state, 'closed');
  t.same(r.seen.closed, [conn.id]);
  const n = r.fake.log.length;
  lookups[0]?.resolve({ address: '127.0.0.1', family: 4 });
  await tick();
  t.same(
    r.fake.log.slice(n).map((c) => c.call),
    [],
    'the late answer creates, associates and connects nothing',
  );
});

test(
  t,
  'connection: abort during name resolution, then the lookup fails: not an upstream connect failure',
  async (t) => {
    const { r, lookups } = await dnsRig(t);
    const { conn, sock } = accept(r);
    r.engine.closeConnection(conn.id, 'abort');
    t.same(closes(r, sock), [true]);
    lookups[0]?.reject(enotfound());
    await tick();
    t.same(r.seen.connectFailed, [], 'the operator closed it; no connect was given up');
    t.same(r.seen.closed, [conn.id], 'closed once');
  },
);

test(t, 'connection: connectTimeoutMs bounds name resolution too', async (t) => {
  const { r } = await dnsRig(t, { connectTimeoutMs: 30 });
  const { conn, sock } = accept(r);
  await sleep(40);
  r.engine.sweep();
  t.not(conn.state, 'connecting', 'given up at the connect deadline');
  t.same(closes(r, sock), [true]);
});

// ---- connection: closing an open connection -----------------------------------------------------------

test(
  t,
  'connection: graceful close of an idle echo connection: stop reading, FIN, close',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const wait = r.fake.one('recv', sock);
    r.engine.closeConnection(conn.id, 'graceful');
    t.same(
      r.fake.calls('cancel').map((c) => c.rec),
      [wait.addr],
      'the read is cancelled',
    );
    t.same(closes(r, sock), []);
    r.fake.complete(wait, { status: CODES.operationAborted });
    const shut = r.fake.seqOf((c) => c.call === 'shutdownSend' && c.sock === sock);
    t.ok(shut > 0, 'shutdown(SD_SEND)');
    t.same(closes(r, sock), [false], 'then closesocket, not abortive');
    t.ok(seqOfClose(r, sock) > shut, 'after the shutdown');
    t.match(closedEvent(r, conn.id), { reason: 'closed by API', abortive: false });
    t.equal(r.seen.errors.get('recv:ERROR_OPERATION_ABORTED'), 1, 'the cancelled read is counted');
  },
);

/** Forward, open, with 'hello' read from the client and its send to the upstream pending. */
function forwardWithSendPending(r: Rig) {
  const f = openForward(r);
  const send = arrive(r, f.client, f.up, 'hello');
  return { ...f, send };
}

test(t, 'connection: graceful close delivers the pending send, then FIN, then close', async (t) => {
  const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
  const { conn, client, up, send } = forwardWithSendPending(r);
  t.equal(send.data?.toString(), 'hello');
  const upWait = r.fake.one('recv', up);
  const at = r.fake.log.length;
  r.engine.closeConnection(conn.id, 'graceful');
  t.same(
    r.fake.calls('cancel').map((c) => c.rec),
    [upWait.addr],
    'only the read is cancelled, never the send',
  );
  r.fake.complete(upWait, { status: CODES.operationAborted });
  t.ok(
    r.fake.calls('shutdownSend', client).length === 1,
    'upstream→client is done: FIN to the client',
  );
  t.same(closes(r, client), [], 'nothing closed while the send is pending');
  t.same(r.fake.calls('shutdownSend', up), [], 'no FIN to the upstream before its bytes');
  r.fake.complete(send);
  const shutUp = r.fake.seqOf((c) => c.call === 'shutdownSend' && c.sock === up);
  t.ok(shutUp > seqOfCompletion(r, send), 'FIN to the upstream after the send completed');
  t.same(closes(r, client), [false]);
  t.same(closes(r, up), [false]);
  t.ok(seqOfClose(r, up) > shutUp);
  t.same(
    r.fake.log.slice(at).filter((c) => c.call === 'submit'),
    [],
    'nothing more read or sent after the close began',
  );
  t.match(closedEvent(r, conn.id), {
    abortive: false,
    bytesIn: 5,
    upstreamBytesOut: 5,
    reason: 'closed by API',
  });
});

test(t, 'connection: graceful close: a partial send is finished before the FIN', async (t) => {
  const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
  const { conn, up, send } = forwardWithSendPending(r);
  r.engine.closeConnection(conn.id, 'graceful');
  r.fake.complete(r.fake.one('recv', up), { status: CODES.operationAborted });
  r.fake.complete(send, { bytes: 2 });
  const rest = r.fake.one('send', up);
  t.equal(rest.data?.toString(), 'llo', 'the rest goes out');
  t.same(r.fake.calls('shutdownSend', up), []);
  r.fake.complete(rest);
  t.equal(r.fake.calls('shutdownSend', up).length, 1);
  t.same(closes(r, up), [false]);
  t.match(closedEvent(r, conn.id), { abortive: false, upstreamBytesOut: 5 });
});

test(
  t,
  'connection: graceful close: a read that completes with data despite its cancel is still delivered',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, client, up } = openForward(r);
    const rd = wake(r, up); // buffered read pending on the upstream
    r.engine.closeConnection(conn.id, 'graceful');
    r.fake.complete(rd, { data: 'late' }); // the kernel had the data before the cancel
    const send = r.fake.one('send', client);
    t.equal(send.data?.toString(), 'late', 'bytes read are delivered');
    t.same(r.fake.calls('shutdownSend', client), []);
    r.fake.complete(r.fake.one('recv', client), { status: CODES.operationAborted });
    r.fake.complete(send);
    t.ok(r.fake.calls('shutdownSend', client).length === 1, 'FIN after them');
    t.same(closes(r, client), [false]);
    t.same(closes(r, up), [false]);
  },
);

test(t, 'connection: graceful close escalates to RST at closeTimeoutMs', async (t) => {
  test(t, 'the send is cancelled and completes aborted', async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1, closeTimeoutMs: 30 } });
    const { conn, client, up, send } = forwardWithSendPending(r);
    r.engine.closeConnection(conn.id, 'graceful');
    r.fake.complete(r.fake.one('recv', up), { status: CODES.operationAborted });
    r.engine.sweep();
    t.notOk(send.cancelRequested, 'not before the deadline');
    await sleep(40);
    r.engine.sweep();
    t.ok(send.cancelRequested, 'at the deadline the send is cancelled');
    t.same(closes(r, up), [], 'and waited for');
    r.fake.complete(send, { status: CODES.operationAborted });
    t.same(closes(r, client), [true], 'RST to the client');
    t.same(closes(r, up), [true], 'RST to the upstream');
    t.same(r.fake.calls('shutdownSend', up), [], 'never a FIN after missing bytes');
    t.match(closedEvent(r, conn.id), {
      abortive: true,
      reason: 'closed by API; then close deadline',
    });
  });
  test(
    t,
    'the cancelled send is delivered in full anyway: still RST (decided at the deadline)',
    async (t) => {
      const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1, closeTimeoutMs: 30 } });
      const { conn, client, up, send } = forwardWithSendPending(r);
      r.engine.closeConnection(conn.id, 'graceful');
      r.fake.complete(r.fake.one('recv', up), { status: CODES.operationAborted });
      await sleep(40);
      r.engine.sweep();
      r.fake.complete(send); // status 0, 5 of 5 bytes
      t.same(closes(r, client), [true]);
      t.same(closes(r, up), [true]);
      t.same(r.fake.calls('shutdownSend', up), []);
    },
  );
});

test(t, 'connection: a cancelled send (DELETE /ops) makes the close abortive', async (t) => {
  const cases: Array<[string, CompleteOptions, boolean]> = [
    ['aborted', { status: CODES.operationAborted }, true],
    ['partly sent, reported as success (io_uring)', { bytes: 2 }, true],
    ['failed with a reset', { status: CODES.connReset }, true],
    ['sent in full before the cancel took', {}, false],
  ];
  for (const [name, how, lost] of cases) {
    test(t, name, async (t) => {
      const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
      const { conn, client, up, send } = forwardWithSendPending(r);
      const outcome = r.engine.cancelOp(send.addrNum, 500);
      t.ok(send.cancelRequested, 'the kernel was asked to cancel the send');
      r.fake.complete(send, how);
      const o = (await outcome) as CancelOutcome;
      t.equal(o.completed, true);
      if (!lost) {
        t.equal(o.status, 'SUCCESS');
        t.equal(conn.state, 'open', 'nothing lost: the connection goes on');
        t.equal(
          r.fake.one('recv', client).length,
          0,
          'and reads again (a wait: the read was short)',
        );
        return;
      }
      t.equal(conn.abortive, true);
      t.same(r.fake.calls('shutdownSend', up), [], 'no FIN to the upstream after lost bytes');
      t.same(closes(r, up), [], 'not closed while the upstream read is pending');
      r.fake.complete(r.fake.one('recv', up), { status: CODES.operationAborted });
      t.same(closes(r, client), [true]);
      t.same(closes(r, up), [true]);
      t.match(closedEvent(r, conn.id), { abortive: true, reason: /upstream send failed/ });
    });
  }
});

test(
  t,
  'connection: abort cancels every op; RST only after all completed; keys after that',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, client, up } = openForward(r);
    const cw = r.fake.one('recv', client);
    const uw = wake(r, up); // a buffered read on the upstream
    const keys = [conn.client.keyEntry.key, conn.upstream?.keyEntry.key];
    r.engine.closeConnection(conn.id, 'abort');
    t.same(
      r.fake
        .calls('cancel')
        .map((c) => c.rec)
        .sort(),
      [cw.addr, uw.addr].sort(),
      'every op cancelled',
    );
    r.fake.complete(cw, { status: CODES.operationAborted });
    t.same(closes(r, client), [], 'one op still in flight: nothing closed');
    t.same(closes(r, up), []);
    let liveAtClose = 0;
    r.fake.onCall = (c) => {
      if (c.call === 'closeSocket')
        liveAtClose += keys.filter((k) => liveKeys(r.engine).includes(k as bigint)).length;
    };
    r.fake.complete(uw, { data: 'raced' }); // completed with data before the cancel: dropped
    t.same(closes(r, client), [true]);
    t.same(closes(r, up), [true]);
    t.ok(liveAtClose >= 2, 'keys were live while their sockets were being closed');
    t.same(
      keys.filter((k) => liveKeys(r.engine).includes(k as bigint)),
      [],
      'then released',
    );
    t.same(
      r.fake.calls('submit').filter((c) => c.kind === 'send'),
      [],
      'nothing relayed after abort',
    );
    t.same(r.fake.calls('shutdownSend'), []);
    t.equal(r.engine.buffers.inUse, 0, 'the raced read’s buffer went back with its record');
  },
);

test(t, 'connection: double close, and close after closed', async (t) => {
  const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1, closeTimeoutMs: 0 } });
  const { conn, client, up, send } = forwardWithSendPending(r);
  r.engine.closeConnection(conn.id, 'graceful');
  r.engine.closeConnection(conn.id, 'graceful');
  t.equal(r.fake.calls('cancel').length, 1, 'a second graceful close does nothing more');
  t.equal(conn.closeReason, 'closed by API');
  // Abort after graceful: escalates (the send is now cancelled), once.
  r.engine.closeConnection(conn.id, 'abort');
  r.engine.closeConnection(conn.id, 'abort');
  t.equal(
    r.fake.calls('cancel').filter((c) => c.rec === send.addr).length,
    1,
    'send cancelled once',
  );
  r.fake.complete(send, { status: CODES.operationAborted });
  r.fake.complete(r.fake.one('recv', up), { status: CODES.operationAborted });
  t.same(closes(r, client), [true], 'closed once, RST');
  t.same(closes(r, up), [true]);
  t.same(r.seen.closed, [conn.id], 'connectionClosed fired once');
  t.equal(r.engine.closeConnection(conn.id, 'abort'), null, 'a closed connection is gone');
  conn.abort('again');
  conn.closeGracefully('again');
  t.same(closes(r, client), [true], 'nothing more reaches the kernel');
  t.equal(r.events.filter((e) => e.type === 'connection-closed').length, 1);
});

test(
  t,
  'connection: completion after close: stale packets never reach the next owner',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const c1 = accept(r);
    const k1 = c1.conn.client.keyEntry.key;
    const w1 = r.fake.one('recv', c1.sock);
    r.fake.complete(w1);
    const rd1 = r.fake.one('recv', c1.sock);
    r.fake.complete(rd1, { bytes: 0 }); // EOF: c1 closes
    t.same(closes(r, c1.sock), [false]);
    // A stale copy of c1's last packet: its record is free.
    r.fake.packet(k1, rd1.addr, 0, 0);
    r.fake.endBatch(1);
    t.equal(r.engine.anomalies.counts.stray, 1, 'stray');
    // c2's ops reuse c1's records (LIFO), and c1's key slot with a new generation.
    const c2 = accept(r);
    const k2 = c2.conn.client.keyEntry.key;
    t.equal(k2 & 0xffffffffn, k1 & 0xffffffffn, 'same key slot');
    t.not(k2, k1, 'another generation');
    const w2 = r.fake.one('recv', c2.sock);
    t.ok([w1.addr, rd1.addr].includes(w2.addr), 'c2 runs on a record c1 used');
    r.fake.packet(k1, w2.addr, 0, 0); // the record still reads STATUS_PENDING
    r.fake.endBatch(1);
    t.equal(r.engine.anomalies.counts.duplicate, 1, 'duplicate: the kernel still holds the record');
    t.equal(c2.conn.client.keyEntry.inFlight, 1, 'c2’s op is still pending');
    // The kernel has finished c2's op (its result is in the record), but a stale packet with c1's
    // key is dequeued before c2's own.
    w2.rec.view.setInt32(STATUS_OFFSET, 0, true);
    w2.rec.view.setUint32(BYTES_OFFSET, 0, true);
    r.fake.packet(k1, w2.addr, 0, 0);
    r.fake.endBatch(1);
    const refused = r.engine.anomalies.counts.duplicate + r.engine.anomalies.counts['key-mismatch'];
    t.equal(refused, 2, 'refused (c1’s key is not the key of the op’s socket)');
    t.same(
      r.fake.calls('submit', c2.sock).length,
      1,
      'the stale packet did not complete c2’s wait (no buffered read followed)',
    );
    if (r.engine.anomalies.counts['key-mismatch'] === 0) {
      // A key keyport issued to another socket: dropped; the op's own packet completes it.
      t.equal(c2.conn.state, 'open');
      r.fake.complete(w2);
      t.equal(r.fake.one('recv', c2.sock).length, BUF, 'c2’s own packet completes its wait');
      eof(r, c2.sock);
    } else {
      // Taken as a key mismatch: c2 is reset and the record quarantined.
      t.same(closes(r, c2.sock), [true]);
      t.equal(r.engine.ops.quarantined, 1);
    }
    t.same(r.seen.closed, [c1.conn.id, c2.conn.id]);
  },
);

// ---- relay direction ---------------------------------------------------------------------------------------

test(
  t,
  'relay direction: wait → buffered read → send of exactly those bytes → wait (short) or read (full)',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const wait = r.fake.one('recv', sock);
    t.equal(wait.length, 0);
    t.equal(wait.bufAddr, 0n, 'an idle direction holds no buffer');
    t.equal(r.engine.buffers.inUse, 0);
    r.fake.complete(wait);
    const rd = r.fake.one('recv', sock);
    t.equal(rd.length, BUF, 'then a read into a whole buffer');
    t.not(rd.bufAddr, 0n);
    r.fake.complete(rd, { data: 'hello' });
    const send = r.fake.one('send', sock);
    t.equal(send.data?.toString(), 'hello');
    t.equal(send.length, 5);
    t.equal(send.bufAddr, rd.bufAddr, 'the same buffer, handed on (no copy)');
    t.same(r.fake.pending('recv', sock), [], 'no read while the bytes are being sent');
    t.equal(r.engine.buffers.inUse, 1);
    r.fake.complete(send);
    const next = r.fake.one('recv', sock);
    t.equal(next.length, 0, 'a short read drained the socket: wait again, holding no buffer');
    t.equal(r.engine.buffers.inUse, 0);
    t.equal(conn.client.bytesIn, 5);
    t.equal(conn.client.bytesOut, 5);
    t.same(
      conn.trace.entries().map((e) => [e.op, e.bytes, e.status]),
      [
        ['accept', 0, 'SUCCESS'],
        ['recv', 0, 'SUCCESS'],
        ['recv', 5, 'SUCCESS'],
        ['send', 5, 'SUCCESS'],
      ],
    );
    // Bulk: a read that fills its buffer is followed by a buffered read straight away.
    r.fake.complete(next);
    const full = r.fake.one('recv', sock);
    r.fake.complete(full, { data: 'x'.repeat(BUF) });
    r.fake.complete(r.fake.one('send', sock));
    const flowing = r.fake.one('recv', sock);
    t.equal(flowing.length, BUF, 'after a full read: reads into a buffer directly, no wait first');
    t.equal(r.engine.buffers.inUse, 1, 'one buffer per direction');
  },
);

test(
  t,
  'relay direction: a partial send continues from where it stopped before the next read',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const send = arrive(r, sock, sock, '0123456789');
    r.fake.complete(send, { bytes: 3 });
    const rest = r.fake.one('send', sock);
    t.equal(rest.length, 7);
    t.equal(rest.bufAddr, send.bufAddr + 3n);
    t.equal(rest.data?.toString(), '3456789');
    t.same(r.fake.pending('recv', sock), [], 'no read in between');
    r.fake.complete(rest, { bytes: 6 });
    t.equal(r.fake.one('send', sock).data?.toString(), '9');
    r.fake.complete(r.fake.one('send', sock));
    t.equal(r.fake.one('recv', sock).length, 0, 'then the next read (a wait: 10 bytes drained it)');
    t.equal(conn.client.bytesOut, 10);
  },
);

test(
  t,
  'relay direction: an idle buffered read is parked (its buffer returned) and becomes a wait',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 }, engine: { parkAfterMs: 0 } });
    const { conn, sock } = accept(r);
    r.engine.sweep();
    t.same(r.fake.calls('cancel'), [], 'a bufferless wait is never parked');
    const rd = wake(r, sock);
    t.equal(r.engine.buffers.inUse, 1);
    await sleep(2);
    r.engine.sweep();
    t.same(
      r.fake.calls('cancel').map((c) => c.rec),
      [rd.addr],
      'the buffered read is cancelled',
    );
    r.engine.sweep();
    t.equal(r.fake.calls('cancel').length, 1, 'once');
    r.fake.complete(rd, { status: CODES.operationAborted });
    const wait = r.fake.one('recv', sock);
    t.equal(wait.length, 0, 'replaced by a wait');
    t.equal(r.engine.buffers.inUse, 0, 'the buffer went back');
    t.equal(r.engine.stats.parkedReads, 1);
    t.equal(r.seen.errors.size, 0, 'not an error');
    t.equal(conn.state, 'open');
    t.same(closes(r, sock), []);
    // Data comes later: wait, then a buffered read again.
    const send = arrive(r, sock, sock, 'back');
    t.equal(send.data?.toString(), 'back');
  },
);

test(t, 'relay direction: a parked read that completes with data anyway relays it', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 }, engine: { parkAfterMs: 0 } });
  const { conn, sock } = accept(r);
  const rd = wake(r, sock);
  await sleep(2);
  r.engine.sweep();
  r.fake.complete(rd, { data: 'raced' });
  t.equal(r.fake.one('send', sock).data?.toString(), 'raced');
  t.equal(conn.state, 'open');
  t.equal(r.engine.stats.parkedReads, 0);
});

test(
  t,
  'relay direction: the trace shows a parked read as cancelled, as the kernel returned it',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 }, engine: { parkAfterMs: 0 } });
    const { conn, sock } = accept(r);
    const rd = wake(r, sock);
    await sleep(2);
    r.engine.sweep();
    r.fake.complete(rd, { status: CODES.operationAborted });
    t.equal(conn.trace.entries().at(-1)?.status, 'ERROR_OPERATION_ABORTED');
  },
);

test(
  t,
  'relay direction: EOF is passed on with shutdown(SD_SEND); both EOFs end the connection with FIN',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, client, up } = openForward(r);
    eof(r, client);
    t.equal(r.fake.calls('resetBehindEof', client).length, 1, 'the EOF is checked for a reset');
    t.equal(r.fake.calls('shutdownSend', up).length, 1, 'half-close carried to the upstream');
    t.same(r.fake.pending('recv', client), [], 'the client is not read any more');
    t.same(closes(r, client), []);
    t.equal(conn.state, 'open', 'the other direction goes on');
    const send = arrive(r, up, client, 'reply');
    t.equal(send.data?.toString(), 'reply');
    r.fake.complete(send);
    eof(r, up);
    t.equal(r.fake.calls('shutdownSend', client).length, 1);
    t.same(
      r.fake.calls('resetBehindEof').map((c) => [c.sock, c.sendShut]),
      [
        [client, false],
        [up, true],
      ],
      'the EOF check is told whether keyport had already sent its FIN on that socket',
    );
    t.same(closes(r, client), [false]);
    t.same(closes(r, up), [false]);
    t.match(closedEvent(r, conn.id), {
      reason: 'eof',
      abortive: false,
      bytesOut: 5,
      upstreamBytesIn: 5,
    });
  },
);

test(
  t,
  'relay direction: an EOF behind which the socket reports a reset ends the connection with RST',
  async (t) => {
    const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
    const { conn, client, up } = openForward(r);
    r.fake.resetBehindEofCodes.set(client, CODES.connReset);
    eof(r, client);
    t.same(r.fake.calls('shutdownSend'), [], 'no FIN passed on');
    t.equal(conn.abortive, true);
    r.fake.complete(r.fake.one('recv', up), { status: CODES.operationAborted });
    t.same(closes(r, client), [true]);
    t.same(closes(r, up), [true]);
    t.match(closedEvent(r, conn.id), { reason: 'client recv failed: WSAECONNRESET' });
  },
);

test(
  t,
  'relay direction: inline results are completed queued, not recursively, through the same path',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    r.fake.scriptInline({ kind: 'recv', sock, code: 0, data: Buffer.from('inline') });
    r.fake.complete(r.fake.one('recv', sock), {}, false); // the wait, batch not ended yet
    const rd = r.fake.ops.at(-1) as FakeOp;
    t.equal(rd.state, 'inline', 'the buffered read finished inline');
    t.same(r.fake.pending('send'), [], 'not completed inside submit');
    r.fake.endBatch(1); // end of the dequeue batch: the engine runs its queue
    t.equal(r.fake.one('send', sock).data?.toString(), 'inline');
    const e = conn.trace.entries().at(-1);
    t.match(e, { op: 'recv', bytes: 6, inline: true, key: null }, 'no packet: no dequeued key');
    t.equal(r.seen.inline, 1, 'counted as inline');
  },
);

test(
  t,
  'relay direction: an op that fails inline (no packet) ends the connection like any failure',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const send = arrive(r, sock, sock, 'x');
    r.fake.scriptInline({ kind: 'recv', sock, code: CODES.connReset });
    r.fake.complete(send);
    await tick();
    t.same(closes(r, sock), [true]);
    t.match(closedEvent(r, conn.id), { reason: 'client recv failed: WSAECONNRESET' });
  },
);

// ---- completion checks ---------------------------------------------------------------------------------

test(t, 'completion checks: a stray packet is counted and reaches no one', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  const before = r.fake.log.length;
  const completions = r.engine.stats.completions;
  r.fake.packet(conn.client.keyEntry.key, 0xdead_0000n, 0, 0); // no record there
  const free = [...r.fake.ops].find(
    (o) => o.state === 'completed' && !r.engine.ops.byAddress(o.addrNum)?.inFlight,
  );
  r.fake.packet(conn.client.keyEntry.key, (free as FakeOp).addr, 0, 0); // a record with no op
  r.fake.endBatch(2);
  t.equal(r.engine.anomalies.counts.stray, 2);
  t.equal(r.engine.stats.completions, completions, 'no op completed');
  t.same(
    r.fake.log.slice(before).filter((c) => c.call !== 'completion' && c.call !== 'batch'),
    [],
    'the engine did nothing in the kernel',
  );
  t.equal(r.fake.one('recv', sock).state, 'pending');
  t.match(
    r.events.filter((e) => e.type === 'anomaly'),
    [
      { kind: 'stray', key: conn.client.keyEntry.keyHex, record: '0x00000000dead0000', op: null },
      { kind: 'stray' },
    ],
  );
});

test(
  t,
  'completion checks: a packet with a key keyport never issued (a socket tied to the wrong key) never delivers its data; the connection is reset, the record quarantined',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 2 } });
    const { conn, sock } = accept(r);
    const rd = wake(r, sock);
    // As KEYPORT_TEST_FAULTS=wrong-key does: the top bit flipped, a key no socket was given.
    const wrong = conn.client.keyEntry.key ^ (1n << 63n);
    const wrongHex = `0x${wrong.toString(16).padStart(16, '0')}`;
    // The kernel writes data into the buffer and finishes the op; the packet carries that key.
    r.fake.complete(rd, { data: 'secret', key: wrong });
    t.equal(r.engine.anomalies.counts['key-mismatch'], 1);
    t.same(
      r.fake.calls('submit').filter((c) => c.kind === 'send'),
      [],
      'its data is not relayed',
    );
    t.same(closes(r, sock), [true], 'the connection is reset (its op is lost)');
    t.match(closedEvent(r, conn.id), {
      abortive: true,
      reason: 'client recv failed: KEY_MISMATCH',
    });
    t.match(conn.trace.entries().at(-1), {
      key: wrongHex,
      expectedKey: conn.client.keyEntry.keyHex,
      keyMismatch: true,
      status: 'KEY_MISMATCH',
      bytes: 0,
    });
    t.match(
      r.events.find((e) => e.type === 'anomaly'),
      {
        kind: 'key-mismatch',
        key: wrongHex,
        expectedKey: conn.client.keyEntry.keyHex,
        connection: conn.id,
      },
    );
    t.equal(r.engine.ops.quarantined, 1);
    t.equal(r.engine.buffers.inUse, 1, 'its buffer stays with it, out of the pool');
    t.equal(r.engine.connections.size, 0);
    t.equal(r.listener.acceptedTotal, 1, 'the listener was not disturbed');
    // The record is never used again.
    for (let i = 0; i < 3; i++) {
      const c = accept(r);
      r.fake.complete(arrive(r, c.sock, c.sock, 'ok'));
      eof(r, c.sock);
    }
    t.same(
      r.fake.ops.filter((o) => o.addr === rd.addr && o.id > rd.id),
      [],
      'its record was not reused',
    );
    // Another packet for it: nothing owns it.
    r.fake.packet(conn.client.keyEntry.key, rd.addr, 6, 0);
    r.fake.endBatch(1);
    t.equal(r.engine.anomalies.counts.stray, 1);
  },
);

test(
  t,
  'completion checks: a stale packet with another live socket’s key never reaches the op’s owner',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 2 } });
    const { conn, sock } = accept(r);
    const rd = wake(r, sock);
    const lkey = r.listener.keyEntry as KeyEntry;
    // The kernel finished the read (data in the buffer, result in the record), and a packet
    // naming the record with the listener's key is dequeued before the op's own.
    r.fake.complete(rd, { data: 'secret', key: lkey.key }, false);
    r.fake.endBatch(1);
    t.equal(r.engine.anomalies.total, 1, 'refused and counted');
    t.match(
      r.events.find((e) => e.type === 'anomaly'),
      {
        key: lkey.keyHex,
        expectedKey: conn.client.keyEntry.keyHex,
      },
    );
    t.same(
      r.fake.calls('submit').filter((c) => c.kind === 'send'),
      [],
      'its data did not reach the owner through that packet',
    );
    t.equal(r.listener.acceptsInFlight, 2, 'nor did it reach the listener whose key it carried');
    t.equal(r.engine.connections.size, 1);
    if (r.engine.anomalies.counts.duplicate === 1) {
      // Dropped as stale: the op's own packet (same record, its own key) completes it.
      r.fake.packet(conn.client.keyEntry.key, rd.addr, 6, 0);
      r.fake.endBatch(1);
      t.equal(
        r.fake.one('send', sock).data?.toString(),
        'secret',
        'delivered once, by its own packet',
      );
    } else {
      t.same(closes(r, sock), [true], 'or the connection is reset');
    }
  },
);

test(
  t,
  'completion checks: a packet for an op the kernel still holds (STATUS_PENDING) is a duplicate',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const wait = r.fake.one('recv', sock);
    t.equal(
      wait.rec.view.getInt32(STATUS_OFFSET, true),
      STATUS_PENDING,
      'the record reads pending',
    );
    r.fake.packet(conn.client.keyEntry.key, wait.addr, 0, 0);
    r.fake.endBatch(1);
    t.equal(r.engine.anomalies.counts.duplicate, 1);
    t.equal(conn.client.keyEntry.inFlight, 1, 'the op is still in flight');
    t.same(r.fake.pending('recv', sock), [wait], 'nothing new was submitted');
    r.fake.complete(wait);
    t.equal(r.fake.one('recv', sock).length, BUF, 'its real completion is applied');
  },
);

test(
  t,
  'completion checks: a packet for an op that finished inline is a duplicate, and the op completes once',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    r.fake.scriptInline({ kind: 'recv', sock, code: 0, data: Buffer.from('once') });
    r.fake.complete(r.fake.one('recv', sock), {}, false);
    const rd = r.fake.ops.at(-1) as FakeOp;
    // The record's memory matches the packet exactly: only "inline-queued" tells them apart.
    r.fake.packet(conn.client.keyEntry.key, rd.addr, 4, 0);
    r.fake.endBatch(2);
    t.equal(r.engine.anomalies.counts.duplicate, 1);
    t.equal(r.fake.calls('submit').filter((c) => c.kind === 'send').length, 1, 'relayed once');
    t.equal(conn.client.bytesIn, 4);
  },
);

test(t, 'completion checks: a byte count that is not the record’s is a duplicate', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  const rd = wake(r, sock);
  r.fake.mem(rd.bufAddr, 10).set(Buffer.from('0123456789'));
  rd.rec.view.setInt32(STATUS_OFFSET, 0, true);
  rd.rec.view.setUint32(BYTES_OFFSET, 10, true);
  r.fake.packet(conn.client.keyEntry.key, rd.addr, 7, 0);
  r.fake.endBatch(1);
  t.equal(r.engine.anomalies.counts.duplicate, 1);
  t.same(r.fake.pending('send'), []);
  r.fake.complete(rd, { data: '0123456789' });
  t.equal(r.fake.one('send', sock).length, 10, 'the true completion carries all 10 bytes');
});

test(t, 'completion checks: the same packet delivered twice completes the op once', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  const rd = wake(r, sock);
  r.fake.complete(rd, { data: 'abc' }, false);
  r.fake.packet(conn.client.keyEntry.key, rd.addr, 3, 0);
  r.fake.endBatch(2);
  t.equal(r.engine.anomalies.total, 1);
  t.equal(r.fake.calls('submit').filter((c) => c.kind === 'send').length, 1);
  t.equal(r.fake.one('send', sock).data?.toString(), 'abc');
});

test(t, 'heartbeat: the posted packet is seen; the API cannot cancel it', async (t) => {
  const r = await rig(t);
  const post = r.fake.posts[0];
  t.equal(post?.key, (1n << 32n) | 1n, 'on the heartbeat key (slot 1)');
  t.equal(await r.engine.cancelOp(Number(post?.rec.addr)), 'not-cancellable');
  t.equal(await r.engine.cancelOp(0xdead_0000), 'not-found');
  t.equal(r.engine.heartbeat.lastSeenAt, 0);
  r.fake.deliverPost();
  t.ok(r.engine.heartbeat.lastSeenAt > 0, 'seen');
  t.equal(r.engine.anomalies.total, 0);
});

test(
  t,
  'heartbeat: a stale packet naming the heartbeat record with another socket’s key is refused',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn } = accept(r);
    const post = r.fake.posts[0] as FakeBackend['posts'][number];
    r.fake.packet(conn.client.keyEntry.key, post.rec.addr, 0, 0);
    r.fake.endBatch(1);
    t.equal(r.engine.anomalies.total, 1, 'counted');
    t.equal(r.engine.heartbeat.lastSeenAt, 0, 'not taken for the heartbeat');
    t.equal(conn.state, 'open', 'the connection whose key it carried is untouched');
    r.fake.deliverPost();
    t.ok(r.engine.heartbeat.lastSeenAt > 0, 'the heartbeat’s own packet is');
  },
);

test(
  t,
  'heartbeat: a packet naming the heartbeat record with a key never issued is refused, not thrown',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn } = accept(r);
    const post = r.fake.posts[0] as FakeBackend['posts'][number];
    t.doesNotThrow(() => {
      r.fake.packet(conn.client.keyEntry.key ^ (1n << 63n), post.rec.addr, 0, 0);
      r.fake.endBatch(1);
    }, 'the completion path survives');
    t.equal(r.engine.anomalies.counts['key-mismatch'], 1);
    t.equal(conn.state, 'open', 'no connection is touched');
  },
);

// ---- cancel racing completion; the API's DELETE /ops ----------------------------------------------------------

test(
  t,
  'cancelOp: two concurrent cancels of one record both get the outcome; one kernel cancel',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    const wait = r.fake.one('recv', sock);
    const p1 = r.engine.cancelOp(wait.addrNum, 1000);
    const p2 = r.engine.cancelOp(wait.addrNum, 1000);
    t.equal(r.fake.calls('cancel').length, 1, 'the kernel is asked once');
    r.fake.complete(wait, { status: CODES.operationAborted });
    const [o1, o2] = (await Promise.all([p1, p2])) as [CancelOutcome, CancelOutcome];
    for (const o of [o1, o2]) {
      t.match(o, {
        record: `0x${wait.addr.toString(16).padStart(16, '0')}`,
        op: 'recv',
        key: conn.client.keyEntry.keyHex,
        connection: conn.id,
        cancelRequested: true,
        completed: true,
        status: 'ERROR_OPERATION_ABORTED',
      });
    }
    // A cancelled read ends the connection (gracefully: nothing was read).
    t.same(closes(r, sock), [false]);
    t.equal(r.fake.calls('shutdownSend', sock).length, 1);
    t.equal(r.events.filter((e) => e.type === 'op-cancelled').length, 2);
  },
);

test(t, 'cancelOp: the op completes with success after the cancel was asked', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { sock } = accept(r);
  const rd = wake(r, sock);
  const p = r.engine.cancelOp(rd.addrNum, 1000);
  r.fake.complete(rd, { data: 'won' });
  const o = (await p) as CancelOutcome;
  t.match(o, { cancelRequested: true, completed: true, status: 'SUCCESS', bytes: 3 });
  t.equal(r.fake.one('send', sock).data?.toString(), 'won', 'the data is relayed');
});

test(t, 'cancelOp: the kernel says it had already completed (not found)', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  const wait = r.fake.one('recv', sock);
  r.fake.cancelResult = () => CODES.notFound;
  const o = (await r.engine.cancelOp(wait.addrNum, 1000)) as CancelOutcome;
  t.match(o, { cancelRequested: false, cancelError: 'ERROR_NOT_FOUND', completed: false });
  r.fake.cancelResult = null;
  r.fake.complete(wait);
  t.equal(conn.state, 'open', 'its completion is applied normally');
  t.equal(r.fake.one('recv', sock).length, BUF);
});

test(
  t,
  'cancelOp: an API cancel racing the engine’s own parking ends the connection',
  async (t) => {
    test(t, 'parking first, then the API', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 1 }, engine: { parkAfterMs: 0 } });
      const { conn, sock } = accept(r);
      const rd = wake(r, sock);
      await sleep(2);
      r.engine.sweep(); // the engine parks the idle read
      t.equal(r.fake.calls('cancel').length, 1);
      const p = r.engine.cancelOp(rd.addrNum, 1000);
      t.equal(r.fake.calls('cancel').length, 1, 'no second kernel cancel');
      r.fake.complete(rd, { status: CODES.operationAborted });
      const o = (await p) as CancelOutcome;
      t.equal(o.status, 'ERROR_OPERATION_ABORTED');
      t.equal(r.engine.stats.parkedReads, 0, 'not taken for parking');
      t.same(r.fake.pending('recv', sock), [], 'no wait replaces it');
      t.same(closes(r, sock), [false], 'the connection ends');
      t.match(closedEvent(r, conn.id), { reason: 'client recv cancelled' });
    });
    test(t, 'the API first, then the sweep', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 1 }, engine: { parkAfterMs: 0 } });
      const { sock } = accept(r);
      const rd = wake(r, sock);
      const p = r.engine.cancelOp(rd.addrNum, 1000);
      await sleep(2);
      r.engine.sweep();
      t.equal(r.fake.calls('cancel').length, 1);
      r.fake.complete(rd, { status: CODES.operationAborted });
      await p;
      t.equal(r.engine.stats.parkedReads, 0);
      t.same(closes(r, sock), [false]);
    });
  },
);

test(
  t,
  'a read cancelled through the API: FIN (shutdown) first, then closesocket — never a call on a closed socket',
  async (t) => {
    test(t, 'echo', async (t) => {
      const r = await rig(t, { listener: { acceptDepth: 1 } });
      const { sock } = accept(r);
      const rd = wake(r, sock);
      const p = r.engine.cancelOp(rd.addrNum, 1000);
      r.fake.complete(rd, { status: CODES.operationAborted });
      await p;
      const shut = r.fake.seqOf((c) => c.call === 'shutdownSend' && c.sock === sock);
      t.ok(shut >= 0 && shut < seqOfClose(r, sock), 'shutdown(SD_SEND) before closesocket');
    });
    test(t, 'forward, after the upstream’s EOF was carried', async (t) => {
      const r = await rig(t, { listener: { mode: 'forward', acceptDepth: 1 } });
      const { client, up } = openForward(r);
      eof(r, up); // upstream → client done (FIN to the client)
      const rd = wake(r, client);
      const p = r.engine.cancelOp(rd.addrNum, 1000);
      r.fake.complete(rd, { status: CODES.operationAborted });
      await p;
      const shut = r.fake.seqOf((c) => c.call === 'shutdownSend' && c.sock === up);
      t.ok(
        shut >= 0 && shut < seqOfClose(r, up),
        'FIN to the upstream before its socket is closed',
      );
    });
  },
);

test(t, 'cancelOp on an accept: the chain re-posts (after a backoff)', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const a = r.fake.one('accept');
  const p = r.engine.cancelOp(a.addrNum, 1000);
  r.fake.complete(a, { status: CODES.operationAborted });
  t.match(await p, { op: 'accept', listener: r.listener.id, status: 'ERROR_OPERATION_ABORTED' });
  t.same(closes(r, a.acceptSock), [true]);
  await until('the re-post', () => r.fake.pending('accept').length === 1);
  t.equal(r.listener.state, 'listening');
});

// ---- shutdown -------------------------------------------------------------------------------------------------

test(t, 'shutdown: the drain lets connections end naturally, then stops the backend', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  const acc = r.fake.one('accept');
  let result: boolean | null = null;
  const p = r.engine.shutdown(5000).then((v) => {
    result = v;
  });
  t.same(
    r.fake.calls('cancel').map((c) => c.rec),
    [acc.addr],
    'only the accept is cancelled',
  );
  r.fake.complete(acc, { status: CODES.operationAborted });
  t.same(closes(r, r.lsock), [false], 'new clients refused');
  await sleep(20);
  t.equal(result, null, 'still draining');
  t.equal(conn.state, 'open');
  t.same(r.fake.calls('cancel', sock), [], 'the live connection is left alone');
  const send = arrive(r, sock, sock, 'still here');
  r.fake.complete(send);
  eof(r, sock);
  t.same(closes(r, sock), [false], 'it ended with a FIN');
  await p;
  t.equal(result, true, 'drained before the deadline');
  t.ok(
    r.fake.seqOf((c) => c.call === 'stop') > seqOfClose(r, sock),
    'the backend stops after the last close',
  );
  t.equal(r.fake.pending('accept').length, 0, 'nothing re-posted');
});

test(t, 'shutdown: at the deadline what is left is reset, and it says so', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { conn, sock } = accept(r);
  const send = arrive(r, sock, sock, 'slow reader'); // never completes by itself
  const started = Date.now();
  let result: boolean | null = null;
  const p = r.engine.shutdown(200).then((v) => {
    result = v;
  });
  r.fake.complete(r.fake.one('accept'), { status: CODES.operationAborted });
  await sleep(10);
  t.notOk(send.cancelRequested, 'the pending send is left to finish before the deadline');
  await until('the deadline cancel', () => send.cancelRequested);
  t.ok(Date.now() - started >= 195, 'cancelled at the deadline');
  t.same(closes(r, sock), [], 'not closed while the send is pending');
  r.fake.complete(send, { status: CODES.operationAborted });
  t.same(closes(r, sock), [true], 'RST, never a clean FIN after missing bytes');
  t.same(r.fake.calls('shutdownSend', sock), []);
  await p;
  t.equal(result, false, 'shutdown reports it did not drain');
  t.match(closedEvent(r, conn.id), { reason: 'shutdown deadline', abortive: true });
  t.equal(r.fake.calls('stop').length, 1);
});

test(t, 'listener drain deadline: connections left at the deadline are reset', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const { sock } = accept(r);
  r.engine.closeListener(r.listener.id, 'drain', 20);
  r.fake.complete(r.fake.one('accept'), { status: CODES.operationAborted });
  const wait = r.fake.one('recv', sock);
  await until('the drain deadline', () => wait.cancelRequested);
  r.fake.complete(wait, { status: CODES.operationAborted });
  t.same(closes(r, sock), [true]);
  t.equal(r.listener.state, 'closed');
});

test(t, 'listener: abort resets every connection now', async (t) => {
  const r = await rig(t, { listener: { acceptDepth: 1 } });
  const a = accept(r);
  const b = accept(r);
  r.engine.closeListener(r.listener.id, 'abort', 60_000);
  t.same(
    r.fake
      .calls('cancel')
      .map((c) => c.sock)
      .sort(),
    [r.lsock, a.sock, b.sock].sort(),
    'the accept and every connection’s op are cancelled',
  );
  for (const op of r.fake.pending()) r.fake.complete(op, { status: CODES.operationAborted });
  t.same(closes(r, a.sock), [true]);
  t.same(closes(r, b.sock), [true]);
  t.same(closes(r, r.lsock), [false]);
  t.equal(r.listener.state, 'closed');
});

test(
  t,
  'listener: SO_UPDATE_ACCEPT_CONTEXT failing (client already left) does not break the chain',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    r.fake.finishAcceptCode = CODES.connReset;
    const { conn, sock } = accept(r);
    t.equal(r.seen.errors.get('update-context:WSAECONNRESET'), 1, 'counted');
    t.equal(r.fake.pending('accept').length, 1, 'the chain goes on');
    // The connection's first read then fails and cleans up.
    r.fake.complete(r.fake.one('recv', sock), { status: CODES.connReset });
    t.same(closes(r, sock), [true]);
    t.match(closedEvent(r, conn.id), { abortive: true });
  },
);

test(
  t,
  'an op the backend refuses to start completes as a failure through the normal path',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1 } });
    const { conn, sock } = accept(r);
    r.fake.failNext('submit', CODES.noBufs, 1, sock);
    r.fake.complete(r.fake.one('recv', sock), {}, false); // the wait; the read then fails to start
    t.same(closes(r, sock), [], 'not handled inside submit');
    r.fake.endBatch(1);
    t.same(closes(r, sock), [true], 'completed from the queue: the connection is reset');
    t.equal(r.seen.errors.get('recv:ERROR_INVALID_PARAMETER'), 1);
    t.ok(r.logs.some((l) => l.msg === 'op failed to start'));
    t.match(closedEvent(r, conn.id), { abortive: true });
  },
);

test(
  t,
  'idle timeout: no bytes in a window closes gracefully; bytes read or written keep it open',
  async (t) => {
    const r = await rig(t, { listener: { acceptDepth: 1, idleTimeoutMs: 5 } });
    const { conn, sock } = accept(r);
    const send = arrive(r, sock, sock, 'abc'); // 3 bytes read: progress
    await sleep(8);
    r.engine.sweep();
    t.equal(conn.state, 'open', 'bytes read in the window');
    await sleep(8);
    r.fake.complete(send, { bytes: 1 }); // a slow reader: 1 byte written is progress too
    r.engine.sweep();
    t.equal(conn.state, 'open', 'bytes written in the window');
    r.fake.complete(r.fake.one('send', sock));
    const rd = r.fake.one('recv', sock);
    await sleep(8);
    r.engine.sweep(); // the window with the last 2 bytes written
    t.equal(conn.state, 'open');
    await sleep(8);
    r.engine.sweep();
    t.equal(conn.state, 'closing', 'a window with nothing: idle');
    t.same(
      r.fake.calls('cancel').map((c) => c.rec),
      [rd.addr],
      'stop reading',
    );
    r.fake.complete(rd, { status: CODES.operationAborted });
    t.same(closes(r, sock), [false], 'graceful: FIN');
    t.match(closedEvent(r, conn.id), { reason: 'idle-timeout', abortive: false });
  },
);
