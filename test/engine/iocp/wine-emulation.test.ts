// What the emulation itself does, measured: raw IOCP experiments (test/fixtures/wine-probe.mjs,
// keyport's own koffi declarations, no engine) run by the Windows Node of this pass. npm test
// runs this file under Wine 8 + Node 22 and under Wine 10 + Node 24. Where both releases agree
// (and agree with Windows' documentation), it is asserted the same for both; where they differ,
// the test asserts each release's own answer and says so, naming the release and why
// (wineDiffers: on stderr and in npm test's summary). docs/emulation.md is the table of it.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT, WINE, wineDiffers } from '../../helpers/keyport.js';

const probe = join(ROOT, 'test', 'fixtures', 'wine-probe.mjs');
const OUT = join(ROOT, 'test-output');

async function runWindows(
  script: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string }> {
  mkdirSync(OUT, { recursive: true });
  const log = join(OUT, `wine-emulation-${process.pid}-${Date.now()}.log`);
  rmSync(log, { force: true });
  let child: ReturnType<typeof spawn>;
  if (process.platform === 'win32') {
    child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    child.stdout?.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    return { code, out };
  }
  const { runWindowsNode } = await import('../../../dist/launcher/wine.js');
  child = runWindowsNode(script, [], { logFile: log, env });
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  return { code, out: readFileSync(log, 'utf8') };
}

// biome-ignore lint/suspicious/noExplicitAny: the probe's JSON, read field by field below
let r: any;
t.before(async () => {
  const { code, out } = await runWindows(probe);
  if (code !== 0) throw new Error(`wine-probe exited ${code}:\n${out}`);
  r = JSON.parse(out.trim().split('\n').pop() ?? '{}');
});

t.test('completion keys: AcceptEx on the listener key, WSARecv on the socket own', async (t) => {
  t.same(
    r.acceptKeys,
    { acceptKey: '0x1111', updateContext: true, recvStarted: 997, recvKey: '0x2222', recvBytes: 5 },
    'AcceptEx completes with the listener key; after SO_UPDATE_ACCEPT_CONTEXT the accepted socket, associated under its own key, completes its WSARecv with that key',
  );
  t.same(
    r.connectRefused,
    { started: 997, status: '0xc0000236', key: '0x8888' },
    'ConnectEx to a closed port: pending, then STATUS_CONNECTION_REFUSED on the connecting socket key',
  );
});

t.test('statuses in OVERLAPPED.Internal: cancel, close, reset', async (t) => {
  t.equal(r.cancelAndClose.cancelStatus, '0xc0000120', 'CancelIoEx: STATUS_CANCELLED (→ 995)');
  // Wine's answer; Windows documents only that the I/O fails: see docs/emulation.md.
  t.equal(
    r.cancelAndClose.closeStatus,
    '0x8000000a',
    'closesocket with a recv pending: STATUS_HANDLES_CLOSED (→ 676)',
  );
  t.same(
    r.resetPendingRecv,
    { started: 997, status: '0xc000020d', bytes: 0 },
    'a pending WSARecv hit by a RST: STATUS_CONNECTION_RESET (→ ERROR_NETNAME_DELETED)',
  );
});

t.test(
  'FILE_SKIP_COMPLETION_PORT_ON_SUCCESS decides whether an inline success queues a packet',
  async (t) => {
    t.same(r.inlineCompletion.skip, {
      modeSet: true,
      started: 'inline',
      inlineStatus: '0x00000000',
      inlineBytes: 100,
      packetQueued: false,
    });
    t.same(r.inlineCompletion.noSkip, {
      modeSet: null,
      started: 'inline',
      inlineStatus: '0x00000000',
      inlineBytes: 100,
      packetQueued: true,
    });
  },
);

t.test('DisconnectEx(TF_REUSE_SOCKET): why keyport uses shutdown(SD_SEND) instead', async (t) => {
  t.match(r.disconnectExReuse, { started: 997, completed: true, peerSaw: 'fin' });
  t.match(
    r.disconnectExReuseSkipMode,
    { started: 997, completed: false, peerSaw: 'fin' },
    'with skip mode on it reports PENDING and its completion never comes (a record would leak)',
  );
});

// ---- where the two Wine releases differ -------------------------------------------------------

const EXPECTED = {
  '8': { node: /^v22\./, windows: '10.0.18362', allocAbove4G: false, fetch: false },
  '10': { node: /^v24\./, windows: '10.0.19043', allocAbove4G: true, fetch: true },
} as const;

t.test('the Windows Node and the Windows build this emulation reports', async (t) => {
  if (!WINE) {
    t.pass(`not under Wine: ${r.windows}, Node ${r.node}`);
    return;
  }
  const want = EXPECTED[WINE];
  t.match(r.node, want.node, `Node ${r.node}`);
  t.equal(r.windows, want.windows, `Windows ${r.windows}`);
  wineDiffers(
    t,
    WINE === '8'
      ? 'runs Windows Node 22 and reports Windows 10.0.18362; Node 24 is tested on Wine 10 only (its node.exe crashes at start under Wine 8: unhandled exception 0x80000003)'
      : 'runs Windows Node 24 and reports Windows 10.0.19043 (Wine 8: Node 22, 10.0.18362)',
  );
});

t.test('pinned memory addresses: above 4 GB under Wine 10 only', async (t) => {
  if (!WINE) {
    t.pass(`koffi.alloc above 4 GB: ${r.allocAbove4G}`);
    return;
  }
  t.equal(r.allocAbove4G, EXPECTED[WINE].allocAbove4G);
  wineDiffers(
    t,
    WINE === '8'
      ? 'koffi.alloc returns addresses below 4 GB, so OVERLAPPED/record addresses fit in 32 bits here; the full 64-bit routing by record address is exercised by the Wine 10 pass'
      : 'koffi.alloc returns addresses above 4 GB (as 64-bit Windows usually does): completions are routed by record addresses that do not fit in 32 bits (Wine 8: below 4 GB)',
  );
});

t.test('fetch() from the Windows Node (TCP keep-alive set before connect)', async (t) => {
  if (!WINE) {
    t.equal(r.fetch.ok, true, 'fetch() works on Windows');
    return;
  }
  t.equal(r.fetch.ok, EXPECTED[WINE].fetch, JSON.stringify(r.fetch));
  wineDiffers(
    t,
    WINE === '8'
      ? "fetch() fails (connect UNKNOWN): Wine 8 refuses TCP keep-alive on a socket not yet connected, which undici sets; Wine 10 works (with Node 22 too). keyport's HEALTHCHECK and drain tool use node:http"
      : "fetch() works (Wine 8 fails with connect UNKNOWN: it refuses TCP keep-alive before connect); keyport's own tools keep node:http so that both do",
  );
});

t.test('TMPDIR in the environment does not stop the Windows Node', async (t) => {
  // Wine 10 aborts every Windows program at start (free(): invalid pointer, exit 134) when
  // TMPDIR is set, even empty; the launcher and the provisioned wrappers drop it.
  const script = join(ROOT, 'test', 'fixtures', 'hello.mjs');
  for (const value of ['', '/tmp']) {
    const { code, out } = await runWindows(script, { TMPDIR: value });
    t.equal(code, 0, `TMPDIR=${JSON.stringify(value)}: exit 0`);
    t.match(out, /hello from win32/);
  }
  if (WINE === '10')
    wineDiffers(
      t,
      'Wine 10 aborts every Windows program at start when TMPDIR is set, even empty (Wine 8 does not): the wrappers run it with env -u TMPDIR',
    );
});
