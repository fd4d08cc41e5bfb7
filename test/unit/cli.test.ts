import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AddressError, formatAddress, parseAddress } from '../../src/config/address.js';
import { CliError, type CliOptions, parseCli, USAGE } from '../../src/config/cli.js';
import { loadSettings } from '../../src/config/settings.js';

const v4 = (host: string, port: number) => ({ host, port, family: 4 as const });
const v6 = (host: string, port: number) => ({ host, port, family: 6 as const });
const named = (host: string, port: number) => ({ host, port, family: 0 as const });
const base: CliOptions = { listeners: [], help: false, version: false };

const good: Array<[string[], CliOptions]> = [
  [[], base],
  [['--api', '127.0.0.1:9999'], { ...base, api: v4('127.0.0.1', 9999) }],
  [['--api=0.0.0.0:0'], { ...base, api: v4('0.0.0.0', 0) }],
  [['--api', '[::1]:9180'], { ...base, api: v6('::1', 9180) }],
  [
    ['--listener', '127.0.0.1:7007=echo'],
    { ...base, listeners: [{ address: v4('127.0.0.1', 7007), mode: 'echo' }] },
  ],
  [
    ['--listener=[::1]:7007=echo', '--listener', 'localhost:0=forward:example.com:80'],
    {
      ...base,
      listeners: [
        { address: v6('::1', 7007), mode: 'echo' },
        { address: named('localhost', 0), mode: 'forward', target: named('example.com', 80) },
      ],
    },
  ],
  [
    ['--listener', '0.0.0.0:8000=forward:[2001:db8::1]:443'],
    {
      ...base,
      listeners: [
        { address: v4('0.0.0.0', 8000), mode: 'forward', target: v6('2001:db8::1', 443) },
      ],
    },
  ],
  [['--backend', 'iocp'], { ...base, backend: 'iocp' }],
  [['--backend=uring'], { ...base, backend: 'uring' }],
  [['--backend', 'auto'], { ...base, backend: 'auto' }],
  [['--config', 'keyport.json'], { ...base, config: 'keyport.json' }],
  [['--config=a=b.json'], { ...base, config: 'a=b.json' }],
  [['--help'], { ...base, help: true }],
  [['-h'], { ...base, help: true }],
  [['--version'], { ...base, version: true }],
];

t.test('good argv', async (t) => {
  for (const [argv, expected] of good) {
    t.same(parseCli(argv), expected, argv.join(' ') || '(no args)');
  }
});

// argv, flag named by the error (undefined for positionals), a fragment of the message
const bad: Array<[string[], string | undefined, string]> = [
  [['--foo'], '--foo', 'unknown flag --foo (see keyport --help)'],
  [['--foo=1'], '--foo', 'unknown flag --foo'],
  [['-x'], '-x', 'unknown flag -x'],
  [['stray'], undefined, 'unexpected argument "stray"'],
  [['--api'], '--api', '--api needs a value (HOST:PORT)'],
  [['--api='], '--api', '--api needs a value'],
  [['--api', '--listener', '127.0.0.1:1=echo'], '--api', '--api needs a value'],
  [['--listener'], '--listener', '--listener needs a value'],
  [['--backend'], '--backend', '--backend needs a value'],
  [['--config'], '--config', '--config needs a value (FILE)'],
  [['--help=yes'], '--help', '--help takes no value'],
  [
    ['--api', '1.2.3.4'],
    '--api',
    'invalid address "1.2.3.4": missing port (expected HOST:PORT, IPv6 as [::1]:PORT)',
  ],
  [['--api', '127.0.0.1:70000'], '--api', 'port 70000 out of range 0-65535'],
  [['--api', '127.0.0.1:http'], '--api', 'port "http" is not a number'],
  [['--api', '::1:80'], '--api', 'IPv6 addresses must be bracketed, e.g. [::1]:PORT'],
  [['--api', '[::1]'], '--api', 'missing port'],
  [['--api', '[1.2.3.4]:80'], '--api', 'is not an IPv6 address'],
  [['--api', '1.2.3.999:80'], '--api', '"1.2.3.999" is not a valid IPv4 address'],
  [['--api', 'bad_host:80'], '--api', 'is not a valid hostname or IP address'],
  [['--api', ':80'], '--api', 'missing host'],
  [['--api', '1.1.1.1:1', '--api', '1.1.1.1:2'], '--api', '--api given more than once'],
  [
    ['--listener', '127.0.0.1:7007=blah'],
    '--listener',
    '--listener "127.0.0.1:7007=blah": mode must be "echo" or "forward:HOST:PORT"',
  ],
  [['--listener', '127.0.0.1:7007'], '--listener', 'missing mode'],
  [['--listener', '127.0.0.1=echo'], '--listener', 'invalid address "127.0.0.1": missing port'],
  [['--listener', '::1:7007=echo'], '--listener', 'IPv6 addresses must be bracketed'],
  [['--listener', '127.0.0.1:7007=forward'], '--listener', 'forward needs a target'],
  [['--listener', '127.0.0.1:7007=forward:'], '--listener', 'forward needs a target'],
  [
    ['--listener', '127.0.0.1:7007=forward:example.com'],
    '--listener',
    'forward target: invalid address "example.com": missing port',
  ],
  [
    ['--listener', '127.0.0.1:7007=forward:example.com:0'],
    '--listener',
    'port 0 out of range 1-65535',
  ],
  [
    ['--listener', '127.0.0.1:7007=echo', '--listener', '127.0.0.1:7007=forward:a:1'],
    '--listener',
    '127.0.0.1:7007 is already a listener',
  ],
  [['--backend', 'epoll'], '--backend', '--backend "epoll": must be one of auto, iocp, uring'],
  [['--backend', 'auto', '--backend', 'iocp'], '--backend', '--backend given more than once'],
];

t.test('bad argv names the flag', async (t) => {
  for (const [argv, flag, fragment] of bad) {
    const label = argv.join(' ');
    try {
      parseCli(argv);
      t.fail(`${label}: expected CliError`);
    } catch (err) {
      t.type(err, CliError, label);
      t.equal((err as CliError).flag, flag, `${label}: flag`);
      t.match((err as Error).message, fragment, `${label}: message`);
      if (flag !== undefined)
        t.ok((err as Error).message.includes(flag), `${label}: message names ${flag}`);
    }
  }
});

t.test('defaults, as start-up applies them (loadSettings)', async (t) => {
  const env = {}; // not this shell's KEYPORT_* variables
  const none = loadSettings(parseCli([]), env);
  t.same(none.api, v4('127.0.0.1', 9180));
  t.same(none.listeners, [{ host: '127.0.0.1', port: 7007, mode: 'echo' }]);
  t.equal(none.backend, 'auto');
  // Explicit listeners replace the default one; the API default still applies.
  const flags = loadSettings(
    parseCli(['--listener', '127.0.0.1:1=echo', '--backend', 'iocp']),
    env,
  );
  t.same(flags.api, v4('127.0.0.1', 9180));
  t.same(flags.listeners, [{ host: '127.0.0.1', port: 1, mode: 'echo' }]);
  t.equal(flags.backend, 'iocp');
  // A config file may define listeners, so none is invented when it defines none.
  const cfg = join(mkdtempSync(join(tmpdir(), 'keyport-cli-')), 'k.json');
  writeFileSync(cfg, '{}');
  const file = loadSettings(parseCli(['--config', cfg]), env);
  t.same(file.listeners, [], 'no default listener beside a config file');
  // A listener of the settings is a fresh object: changing it leaves the default alone.
  (none.listeners[0] as { port: number }).port = 1;
  t.equal(loadSettings(parseCli([]), env).listeners[0]?.port, 7007);
});

t.test('parseAddress', async (t) => {
  t.same(parseAddress('localhost:80'), named('localhost', 80));
  t.same(parseAddress('example.com.:443'), named('example.com.', 443));
  t.same(parseAddress('[fe80::1]:1'), v6('fe80::1', 1));
  t.throws(
    () => parseAddress('127.0.0.1:0'),
    new AddressError('127.0.0.1:0', 'port 0 out of range 1-65535'),
  );
  t.same(parseAddress('127.0.0.1:0', { allowZero: true }), v4('127.0.0.1', 0));
  t.throws(() => parseAddress('127.0.0.1:65536', { allowZero: true }), {
    message: /port 65536 out of range 0-65535/,
  });
  t.throws(() => parseAddress(''), AddressError);
  t.throws(() => parseAddress('[::1:80'), { message: /missing "\]"/ });
  t.throws(() => parseAddress('[::1]80'), { message: /expected ":PORT" after "\]"/ });
  t.throws(() => parseAddress('host:-1'), { message: /port "-1" is not a number/ });
  t.equal(formatAddress(v6('::1', 7007)), '[::1]:7007');
  t.equal(formatAddress(v4('127.0.0.1', 7007)), '127.0.0.1:7007');
});

t.test('usage text', async (t) => {
  for (const flag of ['--api', '--listener', '--backend', '--config', '--help', '--version']) {
    t.ok(USAGE.includes(flag), `USAGE mentions ${flag}`);
  }
  t.match(USAGE, '127.0.0.1:9180');
  t.match(USAGE, '127.0.0.1:7007');
});
