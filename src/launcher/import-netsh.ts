// `keyport import-netsh [FILE|-] [--out FILE]`: reads saved `netsh interface portproxy` output
// and writes the keyport config file for its rules. Runs in the launcher itself, on Linux and
// Windows alike: it starts neither the engine nor Wine. Exit codes: 0 every rule translated,
// 1 some skipped (the config holds the rest), 2 bad usage or input that is not netsh output.
import { readFileSync, writeFileSync } from 'node:fs';
import { decodeNetshOutput } from '../config/netsh/decode.js';
import { parseNetsh } from '../config/netsh/parse.js';
import { NetshInputError } from '../config/netsh/rules.js';
import { describeRule, formatConfig, translateRules } from '../config/netsh/translate.js';

export const IMPORT_NETSH_USAGE = `Usage: keyport import-netsh [FILE|-] [--out FILE]

Reads the output of "netsh interface portproxy show all" or "netsh interface portproxy dump"
(saved on Windows, e.g. netsh interface portproxy dump > rules.txt) from FILE, or from standard
input with - or no FILE, and writes the keyport config file with one forward listener per rule.

Options:
  --out FILE   write the config to FILE instead of standard output
  -h, --help   show this help

Rules keyport cannot express faithfully are named on standard error with their line and why,
then a summary. Exit code 0: every rule translated; 1: some skipped (the config holds the
others); 2: bad usage, or input that is not netsh portproxy output.
`;

export interface ImportIo {
  readStdin(): Promise<Buffer>;
  stdinIsTty: boolean;
  stdout(text: string): void;
  stderr(text: string): void;
}

const processIo: ImportIo = {
  // A stream, not readFileSync(0): that fails on a non-blocking pipe (EAGAIN) and, on
  // Windows, at the end of some pipes (EOF).
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  },
  stdinIsTty: Boolean(process.stdin.isTTY),
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

const PREFIX = 'keyport import-netsh';

/** Runs the command; `args` follow "import-netsh". Returns the exit code. */
export async function importNetsh(
  args: readonly string[],
  io: ImportIo = processIo,
): Promise<number> {
  const usageError = (message: string): number => {
    io.stderr(`${PREFIX}: ${message} (see keyport import-netsh --help)\n`);
    return 2;
  };
  let input: string | undefined;
  let out: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--help' || arg === '-h') {
      io.stdout(IMPORT_NETSH_USAGE);
      return 0;
    }
    if (arg === '--out' || arg.startsWith('--out=')) {
      if (out !== undefined) return usageError('--out given more than once');
      const value = arg === '--out' ? args[++i] : arg.slice('--out='.length);
      if (value === undefined || value === '' || (value.startsWith('-') && value !== '-')) {
        return usageError('--out needs a value (FILE)');
      }
      out = value;
      continue;
    }
    if (arg.startsWith('-') && arg !== '-') return usageError(`unknown flag ${arg}`);
    if (input !== undefined) {
      return usageError(`unexpected argument ${JSON.stringify(arg)}: one input FILE at most`);
    }
    input = arg;
  }

  const name = input === undefined || input === '-' ? 'standard input' : input;
  let bytes: Buffer;
  try {
    if (input === undefined && io.stdinIsTty) {
      return usageError(
        'no FILE, and standard input is a terminal: name the file netsh wrote, or pipe it in',
      );
    }
    bytes = input === undefined || input === '-' ? await io.readStdin() : readFileSync(input);
  } catch (err) {
    io.stderr(
      `${PREFIX}: cannot read ${name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`,
    );
    return 2;
  }

  let parsed: ReturnType<typeof parseNetsh>;
  try {
    parsed = parseNetsh(decodeNetshOutput(bytes));
  } catch (err) {
    if (err instanceof NetshInputError) {
      io.stderr(`${PREFIX}: ${name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const result = translateRules(parsed.rules);
  const text = formatConfig(result.config);

  if (out === undefined) io.stdout(text);
  else {
    try {
      writeFileSync(out, text);
    } catch (err) {
      io.stderr(
        `${PREFIX}: cannot write ${out}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`,
      );
      return 2;
    }
  }

  const notes = [...parsed.notes, ...result.notes].sort((a, b) => a.line - b.line);
  for (const n of notes) io.stderr(`${PREFIX}: ${name}: line ${n.line}: note: ${n.message}\n`);
  for (const s of result.skipped) {
    io.stderr(`${PREFIX}: ${name}: skipped ${describeRule(s.rule)}: ${s.reason}\n`);
  }
  io.stderr(
    `${PREFIX}: ${parsed.rules.length} rule${parsed.rules.length === 1 ? '' : 's'} read, ${result.written.length} written${out === undefined ? '' : ` to ${out}`}, ${result.skipped.length} skipped\n`,
  );
  return result.skipped.length > 0 ? 1 : 0;
}
