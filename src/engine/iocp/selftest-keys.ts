// "I passed key K and got something else back", on real sockets: run with the Windows Node.
// A listener associated with one key accepts (AcceptEx) a client; the accepted socket is
// associated with an arbitrary key — small, past 32 bits, top bit set — and a WSARecv is left
// pending on it; the client then writes one byte. Prints, per key, the keys the port returned
// for the accept and for the recv, with the records they named.
import net from 'node:net';
import type { OpKind } from '../backend.js';
import { KeyTable } from '../tables/keys.js';
import { OpPool, type OpRecord } from '../tables/ops.js';
import { IocpBackend } from './backend.js';

const LISTENER_KEY = 0xffff_fffe_0000_0001n;
const KEYS = [1n, 0xffff_ffffn, 0x1_0000_0000n, 0x8000_0000_0000_0001n, 0xffff_ffff_ffff_fffen];

interface Dequeued {
  key: bigint;
  addr: number;
  bytes: number;
  status: number;
}

async function main(): Promise<void> {
  const backend = new IocpBackend();
  const pool = new OpPool(backend, backend.recordHeaderSize);
  const keys = new KeyTable();
  const waiters = new Map<number, (d: Dequeued) => void>();
  backend.start(
    {
      completion: (key, addr, bytes, status) => waiters.get(addr)?.({ key, addr, bytes, status }),
      batch: () => {},
    },
    (addr) => pool.byAddress(addr),
  );
  const buf = backend.allocPinned(64);

  /** Submits an op and resolves with its completion packet (never an inline result). */
  const op = (rec: OpRecord): Promise<Dequeued> =>
    new Promise((resolve, reject) => {
      waiters.set(rec.addrNum, (d) => {
        waiters.delete(rec.addrNum);
        resolve(d);
      });
      const r = backend.submit(rec);
      if (r !== -1) reject(new Error(`${rec.kind} finished inline (${r}): no packet to check`));
    });
  const record = (kind: OpKind, sock: number, key: bigint): OpRecord => {
    const entry = keys.assign(sock, { kind: 'listener', id: 'selftest' });
    entry.key = key;
    return pool.acquire(kind, entry, null);
  };

  const ls = backend.createSocket(4);
  const { port } = backend.listen(ls, { host: '127.0.0.1', port: 0, family: 4 }, 16);
  backend.associate(ls, LISTENER_KEY);
  const results = [];
  for (const key of KEYS) {
    const s = backend.createSocket(4);
    const acc = record('accept', ls, LISTENER_KEY);
    acc.acceptSock = s;
    const accepted = op(acc);
    const client = net.connect(port, '127.0.0.1');
    const a = await accepted;
    backend.finishAccept(ls, s);
    backend.associate(s, key);
    const rec = record('recv', s, key);
    rec.buffer = { addr: buf.addr, bytes: buf.bytes };
    rec.length = 64;
    const recv = op(rec); // no data yet: it goes pending, so its completion is a packet
    await new Promise((r) => setTimeout(r, 20));
    client.write('k');
    const r = await recv;
    results.push({
      associated: key.toString(16),
      acceptDequeuedKey: a.key.toString(16),
      acceptRecordMatches: a.addr === acc.addrNum,
      recvDequeuedKey: r.key.toString(16),
      recvRecordMatches: r.addr === rec.addrNum,
      recvBytes: r.bytes,
      recvStatus: r.status,
    });
    rec.buffer = null;
    pool.release(acc);
    pool.release(rec);
    backend.closeSocket(s, true);
    client.destroy();
  }
  backend.closeSocket(ls, false);
  await backend.stop();
  process.stdout.write(
    `${JSON.stringify({ platform: `${process.platform} ${process.arch}`, listenerKey: LISTENER_KEY.toString(16), results })}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`selftest failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
