// The README's run command, as a user types it: keyport with its built-in default answers
// /healthz; bad flags are refused before anything starts, naming the flag.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { BACKEND, OUT_DIR, ROOT, startKeyport } from '../helpers/keyport.js';
import { until } from '../helpers/tcp.js';

const bin = join(ROOT, 'bin', 'keyport.js');

t.test('unknown flags and malformed addresses are refused, naming the flag', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /--bogus/],
    [['--api', '127.0.0.1'], /--api/],
    [['--listener', '127.0.0.1:7007=blah'], /--listener/],
    [['--listener', '::1:7007=echo'], /bracket/],
    [['--backend', 'epoll'], /--backend/],
    [['--api', '127.0.0.1:70000'], /70000/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    t.equal(r.status, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr, pattern, `${args.join(' ')}: ${r.stderr.trim()}`);
  }
});

t.test('--help and --version answer without starting anything', async (t) => {
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  t.match(help.stdout, /--listener ADDR=echo/);
  const version = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8' });
  t.match(version.stdout, /^keyport \d+\.\d+\.\d+/);
});

t.test('keyport starts with its built-in default and answers /healthz', async (t) => {
  // The default echo listener is 127.0.0.1:7007: if something else holds it, say so loudly.
  const busy = await new Promise<boolean>((res) => {
    const s = net.createServer().once('error', () => res(true));
    s.listen(7007, '127.0.0.1', () => s.close(() => res(false)));
  });
  if (busy) {
    process.stderr.write(
      '\n*** SKIPPING the default-configuration test: 127.0.0.1:7007 is in use on this machine\n\n',
    );
    t.skip('127.0.0.1:7007 is in use on this machine');
    return;
  }
  const k = await startKeyport([]);
  t.teardown(() => k.stop());
  const r = await k.get('/healthz');
  t.equal(r.status, 200);
  t.match(r.body, { status: 'ok', version: /^\d+\.\d+\.\d+$/ });
  t.match(k.output(), new RegExp(`"backend":"${BACKEND}"`), `the ${BACKEND} backend is what runs`);
  const ls = (await k.get('/listeners')).body as {
    items: Array<{ address: string; mode: string }>;
  };
  t.match(ls.items, [{ address: '127.0.0.1:7007', mode: 'echo' }], 'the default echo listener');
  const code = await k.stop();
  t.equal(code, 0, 'SIGTERM ends it cleanly');
});

t.test(
  'KEYPORT_LOG_FILE kept across runs: only this run is shown, not the earlier ones',
  async (t) => {
    const { FileFollower } = await import('../../dist/launcher/follow.js');
    const { appendFileSync, mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { PassThrough } = await import('node:stream');
    const file = join(mkdtempSync(join(tmpdir(), 'keyport-follow-')), 'keyport.log');
    writeFileSync(file, 'an earlier run\n');
    const sink = new PassThrough();
    let shown = '';
    sink.on('data', (d: Buffer) => (shown += d.toString()));
    const follower = new FileFollower(file, sink, 10);
    appendFileSync(file, 'this run\n');
    await new Promise((r) => setTimeout(r, 50));
    follower.close();
    t.equal(
      shown,
      'this run\n',
      'the terminal shows what this run appends, from where the file ended',
    );
  },
);

t.test('the backend a config file names is the one that runs (no --backend flag)', async (t) => {
  // The launcher decides once, from the same settings the engine reads: a config file's
  // "backend": "iocp" on Linux starts the Windows Node under Wine, and is not refused there.
  const cfg = join(OUT_DIR, `launcher-backend-${process.pid}.json`);
  writeFileSync(
    cfg,
    JSON.stringify({ backend: BACKEND, listeners: [{ address: '127.0.0.1:0', mode: 'echo' }] }),
  );
  const env = { ...process.env, KEYPORT_LOG_FILE: `${cfg}.log` };
  delete env.KEYPORT_BACKEND;
  const child = spawn(process.execPath, [bin, '--config', cfg, '--api', '127.0.0.1:0'], { env });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => child.kill('SIGKILL'));
  const started = await Promise.race([
    until(
      async () => out,
      (o) => /"api":"/.test(o),
      90_000,
    ),
    exited.then(() => out),
  ]);
  t.match(
    started,
    new RegExp(`"backend":"${BACKEND}"`),
    `the file's ${BACKEND} runs: ${started.slice(-300)}`,
  );
  child.kill('SIGINT');
  t.equal(await exited, 0, 'and stops cleanly');
});

t.test(
  'a Wine that ends node.exe without a word is named as such, not left silent',
  {
    skip: process.platform === 'win32' ? 'on Windows keyport runs in the launcher: no Wine' : false,
  },
  async (t) => {
    // A "Wine" that exits 1 at once, as Wine now and then did under parallel load: before, the
    // launcher exited 1 with no output at all.
    const env = {
      ...process.env,
      KEYPORT_WINE_LOADER: '/bin/false',
      KEYPORT_WINESERVER: '/bin/true',
    };
    const r = spawnSync(process.execPath, [bin, '--backend', 'iocp', '--api', '127.0.0.1:0'], {
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    t.equal(r.status, 1, 'exit code 1, as node.exe ended');
    t.match(
      r.stderr,
      /^keyport: node\.exe ended \(exit code 1\) before writing anything: it never ran keyport .*WINEDEBUG=err\+all to see why$/m,
      r.stderr.trim(),
    );
  },
);
