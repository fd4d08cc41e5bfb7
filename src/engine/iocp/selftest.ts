// The first question every IOCP user asks: "I passed key 100 and got something else back".
// Run with the Windows Node: creates a completion port, posts a completion with key 100 and an
// extended OVERLAPPED record from the op pool (OVERLAPPED at offset 0, keyport's op id after it),
// dequeues it with GetQueuedCompletionStatusEx, and prints what was posted and what came back.
import { KeyTable } from '../tables/keys.js';
import { OpPool } from '../tables/ops.js';
import { IocpBackend } from './backend.js';

const KEY = 100n;
const BYTES = 4242;

async function main(): Promise<void> {
  const backend = new IocpBackend();
  const pool = new OpPool(backend, backend.recordHeaderSize);
  const keys = new KeyTable();
  const entry = keys.assign(-1, { kind: 'listener', id: 'selftest' });
  entry.key = KEY; // a hand-chosen key, as in the classic question
  // Take a few records first so the posted one is not simply the pool's first slot.
  const warm = [pool.acquire('recv', entry, null), pool.acquire('send', entry, null)];
  const rec = pool.acquire('recv', entry, null);
  for (const r of warm) pool.release(r);

  const got = await new Promise<{ key: bigint; addr: number; bytes: number; batch: number }>(
    (resolve) => {
      let seen: { key: bigint; addr: number; bytes: number } | null = null;
      backend.start(
        {
          completion: (key, addr, bytes) => {
            seen = { key, addr, bytes };
          },
          batch: (n) => {
            if (seen) resolve({ ...seen, batch: n });
          },
        },
        () => undefined,
      );
      backend.post(KEY, rec, BYTES);
    },
  );

  const back = pool.byAddress(got.addr);
  const result = {
    platform: `${process.platform} ${process.arch}`,
    posted: {
      key: KEY.toString(),
      record: rec.addressHex,
      opId: rec.slot,
      generation: rec.generation,
      bytes: BYTES,
    },
    dequeued: {
      key: got.key.toString(),
      record: `0x${got.addr.toString(16).padStart(16, '0')}`,
      opId: back ? back.storedOpId() : null,
      generation: back ? back.storedGeneration() : null,
      bytes: got.bytes,
      batch: got.batch,
    },
  };
  pool.release(rec);
  await backend.stop();
  pool.destroy();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  process.stderr.write(`selftest failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
