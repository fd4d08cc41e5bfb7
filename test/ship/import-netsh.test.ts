// keyport import-netsh: the real command (node bin/keyport.js import-netsh …, as an operator runs
// it) on saved `netsh interface portproxy` output in test/fixtures/netsh/ (show all in English,
// German and French, in UTF-8, UTF-16LE and code page 850, LF and CRLF; dump scripts; a whole
// netsh dump; one-liners in a .cmd script), what it refuses, and a generated config that keyport
// starts on and relays through.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import t, { type Test } from 'tap';
import { listenerFromInput } from '../../src/config/listener-input.js';
import { parseNetsh } from '../../src/config/netsh/parse.js';
import { translateRules } from '../../src/config/netsh/translate.js';
import { ConfigFile } from '../../src/config/schema.js';
import { OUT_DIR, ROOT, startKeyport } from '../helpers/keyport.js';
import { connect, freePort, payload, readBytes, upstream } from '../helpers/tcp.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'netsh');
const fixture = (name: string) => join(FIXTURES, name);

// The Wine backend asked for, and an empty cache: were the command to start the engine or
// Wine, it would provision into this cache (or fail); it must do neither.
const cache = mkdtempSync(join(tmpdir(), 'keyport-import-netsh-'));
t.teardown(() => rmSync(cache, { recursive: true, force: true }));

function run(args: string[], input?: string | Buffer) {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYPORT_BACKEND: 'iocp', KEYPORT_CACHE: cache };
  delete env.NODE_OPTIONS; // the test runner's loader has no business in the command
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin', 'keyport.js'), 'import-netsh', ...args],
    { cwd: ROOT, env, input: input ?? '', encoding: 'utf8', timeout: 30_000 },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const configCheck = TypeCompiler.Compile(ConfigFile);

/** The config as keyport's own loader reads it: schema, then each listener. */
function assertLoadable(t: Test, text: string, label: string) {
  const data = JSON.parse(text);
  const first = configCheck.Errors(data).First();
  t.notOk(first, `${label}: schema: ${first?.path} ${first?.message}`);
  (data.listeners as ConfigFile['listeners'] & object).forEach((l, i) => {
    t.doesNotThrow(() => listenerFromInput(l, `/listeners/${i}`), `${label}: listener ${i}`);
  });
  return data as { listeners: Array<{ address: string; mode: string; target: string }> };
}

const fwd = (address: string, target: string) => ({ address, mode: 'forward', target });

const SHOW_ALL_EN = [
  fwd('0.0.0.0:8080', '10.0.0.5:80'),
  fwd('192.168.1.10:3389', 'rdp-host.corp.example:3389'),
  fwd('0.0.0.0:2525', '10.0.0.25:25'),
  fwd('0.0.0.0:8443', '[2001:db8::10]:443'),
  fwd('[::]:2222', '10.0.0.22:22'),
  fwd('[2001:db8:ffff:1234::abcd]:5000', '10.0.0.50:5000'),
  fwd('[::]:9090', '[fd00::9]:9090'),
  fwd('[::1]:9091', 'backend6.example:9091'),
];
const DUMP = [
  fwd('0.0.0.0:8080', '10.0.0.5:80'),
  fwd('0.0.0.0:1024', '192.168.198.200:1024'),
  fwd('127.0.0.1:8081', '10.0.0.6:8081'),
  fwd('0.0.0.0:3390', 'rdp-host.corp.example:3390'),
  fwd('192.168.1.10:8443', '[2001:db8::10]:443'),
  fwd('[::]:2222', '10.0.0.22:22'),
  fwd('[::1]:9090', '[fd00::9]:9090'),
  fwd('[fe80::1]:9091', '[fd00::9]:9092'),
  fwd('0.0.0.0:7000', '10.0.0.7:7001'),
];
const FR = [fwd('0.0.0.0:8080', '10.0.0.5:80'), fwd('[::]:8080', '10.0.0.5:80')];

// fixture → the listeners it must become (every rule translated: exit 0).
const good: Array<[string, ReturnType<typeof fwd>[]]> = [
  ['show-all-en.txt', SHOW_ALL_EN],
  ['show-all-en-utf16le.txt', SHOW_ALL_EN],
  [
    'show-all-de.txt',
    [
      fwd('0.0.0.0:8080', '10.0.0.5:80'),
      fwd('10.1.2.3:1433', 'sql.intern.example:1433'),
      fwd('[::]:8080', '[fd00::5]:80'),
    ],
  ],
  ['show-all-fr.txt', FR],
  ['show-all-fr-cp850.txt', FR],
  ['dump.txt', DUMP],
  ['dump-utf16le.txt', DUMP],
  ['netsh-dump-all.txt', [fwd('0.0.0.0:8080', '10.0.0.5:80'), fwd('[::]:8080', '[fd00::5]:80')]],
  [
    'rules.cmd',
    [
      fwd('0.0.0.0:3390', '10.0.0.30:3389'),
      fwd('[::]:8080', '[fd00::5]:80'),
      fwd('0.0.0.0:8443', 'backend6.example:443'),
    ],
  ],
];

t.test('the fixtures are what Windows writes', async (t) => {
  const bytes = (name: string) => readFileSync(fixture(name));
  for (const name of ['show-all-en-utf16le.txt', 'dump-utf16le.txt']) {
    const b = bytes(name);
    t.same([...b.subarray(0, 2)], [0xff, 0xfe], `${name}: UTF-16LE BOM`);
    t.ok(b.includes(Buffer.from('\r\n', 'utf16le')), `${name}: CRLF`);
  }
  for (const name of ['show-all-de.txt', 'dump.txt', 'show-all-fr-cp850.txt', 'rules.cmd']) {
    const text = bytes(name).toString('latin1');
    t.equal(text.split('\n').length - 1, text.split('\r\n').length - 1, `${name}: CRLF only`);
  }
  t.notOk(bytes('show-all-en.txt').includes('\r'), 'show-all-en.txt: LF');
  t.same([...bytes('show-all-fr.txt').subarray(0, 3)], [0xef, 0xbb, 0xbf], 'UTF-8 BOM');
  // Code page 850: "Écouter", "à" as single bytes that are not UTF-8.
  t.ok(bytes('show-all-fr-cp850.txt').includes(Buffer.from([0x90, 0x63, 0x6f])), 'CP850 É');
  t.throws(() => new TextDecoder('utf-8', { fatal: true }).decode(bytes('show-all-fr-cp850.txt')));
  t.match(bytes('show-all-de.txt').toString(), /Abfragen auf ipv4:\s+Verbinden mit ipv4:/);
  t.match(bytes('show-all-de.txt').toString(), /Adresse\s+Anschluss/);
  const en = bytes('show-all-en.txt').toString();
  for (const pair of ['ipv4:             Connect to ipv4', 'ipv4:             Connect to ipv6']) {
    t.match(en, pair);
  }
  t.match(en, 'Listen on ipv6:             Connect to ipv4:');
  t.match(en, 'Listen on ipv6:             Connect to ipv6:');
});

t.test('every rule of every fixture becomes a forward listener keyport accepts', async (t) => {
  for (const [name, expected] of good) {
    const r = run([fixture(name)]);
    t.equal(r.status, 0, `${name}: exit 0 (${r.stderr.trim()})`);
    const data = assertLoadable(t, r.stdout, name);
    t.same(data.listeners, expected, `${name}: listeners`);
    t.match(
      r.stderr,
      `${expected.length} rules read, ${expected.length} written, 0 skipped`,
      `${name}: summary`,
    );
    t.notMatch(r.stderr, 'skipped line', `${name}: nothing skipped`);
  }
  t.same(readdirSync(cache), [], 'neither Wine nor the engine was provisioned or started');
});

t.test('standard input: - or no FILE', async (t) => {
  const utf16 = readFileSync(fixture('show-all-en-utf16le.txt'));
  const fromFile = run([fixture('show-all-en.txt')]).stdout;
  for (const args of [['-'], []]) {
    const r = run(args, utf16);
    t.equal(r.status, 0, `${args.join(' ') || '(no FILE)'}: exit 0`);
    t.equal(r.stdout, fromFile, 'same config as from the file');
    t.match(r.stderr, '8 rules read, 8 written, 0 skipped');
  }
});

t.test('--out FILE', async (t) => {
  const out = join(OUT_DIR, `import-netsh-${process.pid}.json`);
  t.teardown(() => rmSync(out, { force: true }));
  const r = run([fixture('dump.txt'), '--out', out]);
  t.equal(r.status, 0);
  t.equal(r.stdout, '', 'nothing on stdout');
  t.match(r.stderr, `9 rules read, 9 written to ${out}, 0 skipped`);
  t.same(assertLoadable(t, readFileSync(out, 'utf8'), 'out').listeners, DUMP);
  const r2 = run([`--out=${out}`, fixture('show-all-de.txt')]);
  t.equal(r2.status, 0, '--out=FILE before the input');
  t.equal(JSON.parse(readFileSync(out, 'utf8')).listeners.length, 3);
});

t.test('rules keyport cannot express are named with their line; the rest is written', async (t) => {
  const r = run([fixture('partial.txt')]);
  t.equal(r.status, 1, 'exit 1');
  const data = assertLoadable(t, r.stdout, 'partial');
  t.same(data.listeners, [
    fwd('0.0.0.0:8080', '10.0.0.5:80'),
    fwd('0.0.0.0:9000', '10.0.0.9:9000'),
  ]);
  const skipped: Array<[number, string]> = [
    [5, 'listens on 0.0.0.0:8080, as the rule on line 4 does'],
    [6, 'listen address "gateway.corp.example" is a host name'],
    [7, 'listen port 70000 is out of range 1-65535'],
    [8, 'connect port "http" is a service name'],
    [9, 'connect address 10.0.0.5 is IPv4, but a v4tov6 rule connects over IPv6'],
    [10, 'listen address 10.0.0.1 is IPv4, but a v6tov4 rule listens on IPv6'],
    [11, 'protocol=udp: portproxy and keyport relay TCP only'],
    [12, 'unknown parameter "mode"'],
  ];
  const lines = r.stderr.trim().split('\n');
  for (const [line, why] of skipped) {
    const msg = lines.find((l) => l.includes(`skipped line ${line} (`));
    t.ok(msg, `line ${line} is named`);
    t.match(msg ?? '', why, `line ${line}: ${why}`);
    t.match(msg ?? '', 'partial.txt', `line ${line}: names the file`);
  }
  t.equal(lines.filter((l) => l.includes('skipped line')).length, skipped.length);
  t.equal(lines.at(-1), 'keyport import-netsh: 10 rules read, 2 written, 8 skipped', 'summary');
});

t.test('garbage and bad usage: exit 2 with the line and what is wrong', async (t) => {
  const bad: Array<[string[], string | Buffer | undefined, RegExp]> = [
    [
      [fixture('garbage.txt')],
      undefined,
      /garbage\.txt: line 1: not netsh portproxy output: "server \{"/,
    ],
    [
      [fixture('garbage-row.txt')],
      undefined,
      /garbage-row\.txt: line 7: a v4tov4 row has 3 columns, expected 4/,
    ],
    [['-'], '', /standard input: the input is empty/],
    [['-'], '\r\n  \r\n', /the input is empty/],
    [['-'], Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0, 0, 1, 2, 3]), /line 1: binary data/],
    [
      ['-'],
      'pushd interface portproxy\nadd v5tov4 listenport=1 connectaddress=10.0.0.1\npopd\n',
      /line 2: .*unknown rule kind "v5tov4"/,
    ],
    [
      ['-'],
      '\nListen on ipv4:             Connect to ipv4:\n\nAddress  Port  Address  Port\nsomething else\n',
      /line 5: expected the dashed line under the column titles of the table that starts on line 2/,
    ],
    [['-'], 'Listen on ipv4:   Connect to ipv4:\n', /line 1: a show all table header with no/],
    [['-'], '# only a comment\n', /no portproxy rules, tables or dump found/],
    [['--frobnicate'], undefined, /unknown flag --frobnicate/],
    [['a.txt', 'b.txt'], undefined, /unexpected argument "b.txt": one input FILE at most/],
    [['--out'], undefined, /--out needs a value/],
    [[join(FIXTURES, 'no-such-file.txt')], undefined, /cannot read .*no-such-file\.txt: ENOENT/],
  ];
  for (const [args, input, message] of bad) {
    const r = run(args, input);
    const label = `${args.join(' ')} ${input === undefined ? '' : JSON.stringify(String(input).slice(0, 30))}`;
    t.equal(r.status, 2, `${label}: exit 2`);
    t.match(r.stderr, message, `${label}: message`);
    t.equal(r.stdout, '', `${label}: no config written`);
  }
});

t.test('help: keyport --help and keyport import-netsh --help', async (t) => {
  const r = run(['--help']);
  t.equal(r.status, 0);
  t.match(r.stdout, 'Usage: keyport import-netsh [FILE|-] [--out FILE]');
  t.match(r.stdout, 'netsh interface portproxy dump');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const main = spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), '--help'], {
    env,
    encoding: 'utf8',
  });
  t.match(main.stdout, 'keyport import-netsh [FILE|-] [--out FILE]');
  t.match(main.stdout, '--out FILE');
});

t.test('parser details', async (t) => {
  // A delete is not applied; a reset after rules is noted; other netsh commands are noted.
  const p = parseNetsh(
    [
      'netsh interface portproxy add v4tov4 listenport=1 connectaddress=10.0.0.1',
      'netsh interface portproxy reset',
      'netsh interface portproxy delete v4tov4 listenport=1',
      'netsh interface ipv4 show interfaces',
      'netsh interface portproxy add v4tov4 listenport = 2 connectaddress = 10.0.0.2',
    ].join('\n'),
  );
  t.equal(p.rules.length, 4);
  t.match(p.rules[1]?.problem, 'a reset command is not applied');
  t.match(p.rules[2]?.problem, 'a delete command is not applied');
  t.same(
    p.notes.map((n) => n.line),
    [4],
    'the other netsh command is noted',
  );
  const tr = translateRules(p.rules);
  t.same(
    tr.skipped.map((x) => x.rule.line),
    [2, 3],
  );
  t.same(
    tr.config.listeners,
    [fwd('0.0.0.0:1', '10.0.0.1:1'), fwd('0.0.0.0:2', '10.0.0.2:2')],
    '"tag = value" with spaces is read',
  );
  // Over 256 rules: the config raises engine.maxListeners to hold them.
  const many = Array.from(
    { length: 300 },
    (_, i) => `add v4tov4 listenport=${10_000 + i} connectaddress=10.0.0.1`,
  ).join('\n');
  const big = translateRules(parseNetsh(many).rules);
  t.equal(big.config.listeners.length, 300);
  t.same(big.config.engine, { maxListeners: 300 });
  t.notOk(configCheck.Errors(big.config).First(), 'schema');
});

t.test('end to end: keyport runs the generated config and relays through the rules', async (t) => {
  const echo = (s: import('node:net').Socket) => s.pipe(s);
  const up4 = await upstream(echo, '127.0.0.1');
  const up6 = await upstream(echo, '::1');
  t.teardown(() => Promise.all([up4.close(), up6.close()]).then(() => undefined));
  const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];

  // Saved the way Windows PowerShell saves it: UTF-16LE, BOM, CRLF; one rule in a show all
  // table, the others in a dump, each kind across families.
  const text = [
    '',
    'Listen on ipv4:             Connect to ipv4:',
    '',
    'Address         Port        Address         Port',
    '--------------- ----------  --------------- ----------',
    `127.0.0.1       ${p1}       127.0.0.1       ${up4.port}`,
    '',
    'pushd interface portproxy',
    '',
    'reset',
    `add v4tov6 listenport=${p2} connectaddress=::1 connectport=${up6.port} listenaddress=127.0.0.1`,
    `add v6tov4 connectaddress=127.0.0.1 listenaddress=::1 listenport=${p3} connectport=${up4.port}`,
    '',
    'popd',
    '',
  ].join('\r\n');
  const rules = join(OUT_DIR, `netsh-e2e-${process.pid}.txt`);
  const config = join(OUT_DIR, `netsh-e2e-${process.pid}.json`);
  writeFileSync(rules, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
  t.teardown(() => {
    rmSync(rules, { force: true });
    rmSync(config, { force: true });
  });
  const r = run([rules, '--out', config]);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, '3 rules read, 3 written');

  const k = await startKeyport(['--config', config]);
  t.teardown(() => k.stop());
  const listeners = ((await k.get('/listeners')).body as { items: Array<Record<string, unknown>> })
    .items;
  t.same(
    listeners.map((l) => [l.address, l.mode, l.target]).sort(),
    [
      [`127.0.0.1:${p1}`, 'forward', `127.0.0.1:${up4.port}`],
      [`127.0.0.1:${p2}`, 'forward', `[::1]:${up6.port}`],
      [`[::1]:${p3}`, 'forward', `127.0.0.1:${up4.port}`],
    ].sort(),
    'the imported rules are keyport listeners',
  );
  for (const [port, host, up] of [
    [p1, '127.0.0.1', up4],
    [p2, '127.0.0.1', up6],
    [p3, '::1', up4],
  ] as const) {
    const before = up.sockets.length;
    const c = await connect(port, host);
    const data = payload(256 * 1024);
    c.write(data);
    const back = await readBytes(c, data.length);
    t.ok(back.equals(data), `${host}:${port}: ${data.length} bytes relayed there and back`);
    t.equal(up.sockets.length, before + 1, `${host}:${port}: the upstream got the connection`);
    c.destroy();
  }
});
