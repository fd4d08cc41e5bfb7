// Parking (DESIGN §1.4): a relay direction whose last read filled its whole buffer reads into a
// buffer at once; if that read then waits longer than engine.parkAfterMs, the engine cancels it
// to give the buffer back and waits without one. Over real TCP: the read is parked (counted in
// keyport_idle_reads_parked_total, not as an error), and the connection carries data on after.
// IOCP parks buffered WSARecvs; io_uring 5.19+ never holds a buffer while waiting (the kernel
// picks one on arrival), so on io_uring this runs the pre-5.19 path (KEYPORT_URING_COMPAT=1),
// which waits and reads as IOCP does.
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { portOf, request } from '../helpers/http.js';
import { BACKEND, OUT_DIR, startKeyport } from '../helpers/keyport.js';
import { metric } from '../helpers/metrics.js';
import { readBytes, until } from '../helpers/tcp.js';

const BUFFER = 4096;
const cfg = join(OUT_DIR, `parking-${process.pid}.json`);
writeFileSync(
  cfg,
  JSON.stringify({
    engine: { bufferSize: BUFFER, parkAfterMs: 100 },
    listeners: [{ address: '127.0.0.1:0', mode: 'echo' }],
  }),
);
const k = await startKeyport(['--config', cfg], {
  env: BACKEND === 'uring' ? { KEYPORT_URING_COMPAT: '1' } : {},
});
t.teardown(() => k.stop());
const port = portOf((await request(k.api, 'GET', '/listeners')).body.items[0].address);

t.test('an idle buffered read is parked, and the connection carries data after', async (t) => {
  const before = await metric(k.api, 'keyport_idle_reads_parked_total');
  const s = net.connect({ port, host: '127.0.0.1' });
  t.teardown(() => s.destroy());
  await new Promise((r) => s.once('connect', r));
  // A whole buffer's worth, so the direction's next read takes a buffer at once (bulk).
  const full = Buffer.alloc(BUFFER, 0x61);
  s.write(full);
  t.same(await readBytes(s, BUFFER), full, 'a full buffer echoed');
  // Quiet, past parkAfterMs (the sweep runs every 250 ms).
  const parked = await until(
    () => metric(k.api, 'keyport_idle_reads_parked_total'),
    (n) => n > before,
    5000,
  );
  t.ok(
    parked > before,
    `keyport_idle_reads_parked_total rose while the client was quiet (${parked})`,
  );
  const errors = (await (await fetch(`${k.api}/metrics`)).text())
    .split('\n')
    .filter((l) => l.startsWith('keyport_completion_errors_total{op="recv"'));
  t.same(errors, [], 'the engine’s own cancel is not counted as a recv error');
  const conns = (await request(k.api, 'GET', '/connections')).body.items;
  t.equal(conns.length, 1, 'the connection stays open');
  s.write('after parking');
  t.equal((await readBytes(s, 13)).toString(), 'after parking', 'and echoes what comes next');
});
