import { type Address, AddressError, formatAddress, parseAddress } from './address.js';
import { BACKENDS, type BackendChoice } from './backend.js';
import { DEFAULT_API, DEFAULT_BACKEND, DEFAULT_LISTENER } from './defaults.js';

export type ListenerSpec =
  | { address: Address; mode: 'echo' }
  | { address: Address; mode: 'forward'; target: Address };

/** What the command line said, before defaults. Unset fields may later come from --config. */
export interface CliOptions {
  api?: Address;
  listeners: ListenerSpec[];
  backend?: BackendChoice;
  config?: string;
  /** --access-log: 'off', 'stdout' or a file path (over the config file's accessLog.to). */
  accessLog?: string;
  /** --state-file: where listeners created over the API are kept (over the config file's stateFile). */
  stateFile?: string;
  help: boolean;
  version: boolean;
}

/** Bad command line. `flag` is the flag at fault, or undefined for a stray positional. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly flag?: string,
  ) {
    super(message);
  }
}

export const USAGE = `Usage: keyport [options]
       keyport import-netsh [FILE|-] [--out FILE]

A TCP echo/relay engine on I/O completion ports, with an HTTP/JSON control plane.

Commands:
  import-netsh [FILE|-] [--out FILE]
                             write the keyport config file for the rules of saved
                             "netsh interface portproxy show all" or "dump" output
                             (FILE, or standard input); keyport import-netsh --help

Options:
  --api HOST:PORT            control plane address (default ${formatAddress(DEFAULT_API)})
  --listener ADDR=echo       echo every byte back to the client
  --listener ADDR=forward:HOST:PORT
                             relay to HOST:PORT (hostname resolved at connect time)
                             --listener is repeatable; without it (and without --config)
                             one echo listener on ${formatAddress(DEFAULT_LISTENER.address)} is started
  --backend auto|iocp|uring  completion backend (default ${DEFAULT_BACKEND})
  --config FILE              read options from FILE (SIGHUP or POST /config/reload
                             re-reads its listeners: docs/reload.md)
  --state-file FILE          keep listeners created over the API in FILE, and
                             restore them at start-up (default: not kept)
  --access-log stdout|off|FILE
                             one JSON line per closed connection (default off; FILE is
                             rotated by size: accessLog in the config file)
  -h, --help                 show this help
  --version                  print the version

Addresses are HOST:PORT; IPv6 literals go in brackets, e.g. [::1]:7007.
Port 0 (ephemeral) is allowed for --api and --listener addresses.
Flags take their value as "--flag value" or "--flag=value".
`;

type ValueFlag =
  | '--api'
  | '--listener'
  | '--backend'
  | '--config'
  | '--access-log'
  | '--state-file';
const VALUE_FLAGS: ReadonlySet<string> = new Set<ValueFlag>([
  '--api',
  '--listener',
  '--backend',
  '--config',
  '--access-log',
  '--state-file',
]);
const BOOLEAN_FLAGS: Readonly<Record<string, 'help' | 'version'>> = {
  '--help': 'help',
  '-h': 'help',
  '--version': 'version',
};
const VALUE_HINT: Record<ValueFlag, string> = {
  '--api': 'HOST:PORT',
  '--listener': 'ADDR=echo or ADDR=forward:HOST:PORT',
  '--backend': BACKENDS.join('|'),
  '--config': 'FILE',
  '--access-log': 'stdout, off or a file path',
  '--state-file': 'FILE',
};

/** Parse argv (without node and script). Throws CliError on anything it does not understand. */
export function parseCli(argv: readonly string[]): CliOptions {
  const options: CliOptions = { listeners: [], help: false, version: false };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('-') || arg === '-') {
      throw new CliError(
        `unexpected argument ${JSON.stringify(arg)}: keyport takes no positional arguments (its one command, import-netsh, comes first; see keyport --help)`,
      );
    }

    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const inlineValue = eq === -1 ? undefined : arg.slice(eq + 1);

    const booleanField = BOOLEAN_FLAGS[flag];
    if (booleanField !== undefined) {
      if (inlineValue !== undefined) throw new CliError(`${flag} takes no value`, flag);
      options[booleanField] = true;
      continue;
    }
    if (!VALUE_FLAGS.has(flag)) {
      throw new CliError(`unknown flag ${flag} (see keyport --help)`, flag);
    }

    const valueFlag = flag as ValueFlag;
    let value = inlineValue;
    if (value === undefined) {
      // A following flag is not a value: "--api --listener x" means --api lacks one.
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('-')) {
        value = next;
        i++;
      }
    }
    if (value === undefined || value === '') {
      throw new CliError(`${flag} needs a value (${VALUE_HINT[valueFlag]})`, flag);
    }
    applyValue(options, valueFlag, value);
  }

  return options;
}

function applyValue(options: CliOptions, flag: ValueFlag, value: string): void {
  switch (flag) {
    case '--api':
      rejectRepeat(options.api !== undefined, flag);
      options.api = addressFor(flag, value, { allowZero: true });
      return;
    case '--backend':
      rejectRepeat(options.backend !== undefined, flag);
      if (!(BACKENDS as readonly string[]).includes(value)) {
        throw new CliError(
          `--backend ${JSON.stringify(value)}: must be one of ${BACKENDS.join(', ')}`,
          flag,
        );
      }
      options.backend = value as BackendChoice;
      return;
    case '--config':
      rejectRepeat(options.config !== undefined, flag);
      options.config = value;
      return;
    case '--access-log':
      rejectRepeat(options.accessLog !== undefined, flag);
      options.accessLog = value;
      return;
    case '--state-file':
      rejectRepeat(options.stateFile !== undefined, flag);
      options.stateFile = value;
      return;
    case '--listener': {
      const spec = parseListenerSpec(value);
      const key = formatAddress(spec.address);
      // Port 0 binds distinct ephemeral ports, so only fixed ports can collide.
      if (
        spec.address.port !== 0 &&
        options.listeners.some((l) => formatAddress(l.address) === key)
      ) {
        throw new CliError(
          `--listener ${JSON.stringify(value)}: ${key} is already a listener`,
          flag,
        );
      }
      options.listeners.push(spec);
      return;
    }
  }
}

/** Parse one `ADDR=echo` or `ADDR=forward:HOST:PORT` listener spec. */
export function parseListenerSpec(value: string): ListenerSpec {
  const flag = '--listener';
  const where = `${flag} ${JSON.stringify(value)}`;
  const eq = value.indexOf('=');
  if (eq === -1) {
    throw new CliError(
      `${where}: missing mode (expected ADDR=echo or ADDR=forward:HOST:PORT)`,
      flag,
    );
  }
  const address = addressFor(flag, value.slice(0, eq), { allowZero: true }, where);
  const mode = value.slice(eq + 1);

  if (mode === 'echo') return { address, mode: 'echo' };
  if (mode === 'forward' || mode.startsWith('forward:')) {
    const target = mode.slice('forward:'.length);
    if (target === '') {
      throw new CliError(`${where}: forward needs a target (expected forward:HOST:PORT)`, flag);
    }
    return {
      address,
      mode: 'forward',
      target: addressFor(flag, target, {}, `${where}: forward target`),
    };
  }
  throw new CliError(`${where}: mode must be "echo" or "forward:HOST:PORT"`, flag);
}

function addressFor(
  flag: ValueFlag,
  value: string,
  options: { allowZero?: boolean },
  where: string = flag,
): Address {
  try {
    return parseAddress(value, options);
  } catch (err) {
    if (err instanceof AddressError) throw new CliError(`${where}: ${err.message}`, flag);
    throw err;
  }
}

function rejectRepeat(alreadySet: boolean, flag: ValueFlag): void {
  if (alreadySet) throw new CliError(`${flag} given more than once`, flag);
}
