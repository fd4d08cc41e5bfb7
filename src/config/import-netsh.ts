// `keyport import-netsh`: Windows `netsh interface portproxy` rules → a keyport config file.
// Pure functions: bytes → text (decodeNetshOutput), text → rules (parseNetsh), rules → config
// (translateRules). The command itself (files, exit codes) is src/launcher/import-netsh.ts.
//
// Two inputs are read, mixed freely in one file:
// - `netsh interface portproxy show all`: per rule kind a header naming ipv4/ipv6 twice (listen,
//   then connect; localized Windows translates the words around them, never the tokens), a line
//   of column titles, a dashed line, then rows "ADDRESS PORT ADDRESS PORT" (split on whitespace:
//   a long IPv6 address or host name pushes the columns right).
// - `netsh interface portproxy dump` (or a whole `netsh dump`): `pushd interface portproxy`,
//   `reset`, `add KIND tag=value…`, `popd`; and `netsh interface portproxy add …` one-liners.
import { isIP } from 'node:net';
import { AddressError, formatAddress, parseAddress } from './address.js';
import type { ConfigFile, ListenerInput } from './schema.js';

export const NETSH_KINDS = ['v4tov4', 'v4tov6', 'v6tov4', 'v6tov6'] as const;
export type NetshKind = (typeof NETSH_KINDS)[number];

/** A portproxy rule as written: values are the text netsh printed (or was given), unchecked. */
export interface NetshRule {
  /** 1-based line of the input. */
  line: number;
  /** The line as written (whitespace collapsed), for messages. */
  text: string;
  /** null for a command that is not a rule (delete, a reset after rules): it has a problem. */
  kind: NetshKind | null;
  listenAddress?: string;
  listenPort?: string;
  connectAddress?: string;
  connectPort?: string;
  protocol?: string;
  /** Set when the line is a portproxy command that cannot become a rule (why). */
  problem?: string;
}

export interface NetshNote {
  line: number;
  message: string;
}

export interface ParsedNetsh {
  rules: NetshRule[];
  /** Lines read but not acted on (other netsh commands), and translation caveats. */
  notes: NetshNote[];
}

/** The input is not netsh portproxy output at all (exit code 2): names the line and the fault. */
export class NetshInputError extends Error {
  override name = 'NetshInputError';
  constructor(
    readonly line: number | null,
    readonly reason: string,
  ) {
    super(line === null ? reason : `line ${line}: ${reason}`);
  }
}

/**
 * The bytes of a saved netsh output → text. Windows PowerShell's `>` writes UTF-16LE with a BOM,
 * PowerShell 7 UTF-8 without one, cmd.exe's `>` the console's OEM code page (e.g. 850, where
 * "É" is one byte that is not UTF-8): bytes that are not UTF-8 are read as Latin-1, which keeps
 * every ASCII character (all that is parsed) as it is.
 */
export function decodeNetshOutput(bytes: Uint8Array): string {
  const b = bytes;
  if (b[0] === 0xff && b[1] === 0xfe) return new TextDecoder('utf-16le').decode(b.subarray(2));
  if (b[0] === 0xfe && b[1] === 0xff) {
    const swapped = new Uint8Array(b.length - 2 - (b.length % 2));
    for (let i = 0; i < swapped.length; i += 2) {
      swapped[i] = b[i + 3] as number;
      swapped[i + 1] = b[i + 2] as number;
    }
    return new TextDecoder('utf-16le').decode(swapped);
  }
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return utf8OrLatin1(b.subarray(3));
  if (looksUtf16le(b)) return new TextDecoder('utf-16le').decode(b);
  return utf8OrLatin1(b);
}

/** UTF-16LE without a BOM (Out-File -Encoding unicode -NoBOM…): ASCII text has a NUL every odd byte. */
function looksUtf16le(b: Uint8Array): boolean {
  if (b.length < 4 || b.length % 2 !== 0) return false;
  let oddNul = 0;
  let evenNul = 0;
  for (let i = 0; i < b.length; i += 2) {
    if (b[i] === 0) evenNul++;
    if (b[i + 1] === 0) oddNul++;
  }
  return evenNul === 0 && oddNul >= (b.length / 2) * 0.9;
}

function utf8OrLatin1(b: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  }
}

// The tags of `add v4tov4` in the order netsh assigns untagged values to them.
const TAGS = ['listenport', 'connectaddress', 'connectport', 'listenaddress', 'protocol'] as const;
type Tag = (typeof TAGS)[number];
const FIELD: Record<Tag, keyof NetshRule> = {
  listenport: 'listenPort',
  connectaddress: 'connectAddress',
  connectport: 'connectPort',
  listenaddress: 'listenAddress',
  protocol: 'protocol',
};

const HEADER_RE = /\bipv([46])\b.*\bipv([46])\b/i;
const DASHES_RE = /^-{3,}(\s+-{3,})+$/;
const PORTPROXY_CONTEXT_RE = /^int[a-z]*\s+portproxy$/i;
const NETSH_PORTPROXY_RE = /^netsh(?:\.exe)?\s+int[a-z]*\s+portproxy(?:\s+(.*))?$/i;
const NETSH_RE = /^netsh(?:\.exe)?(?:\s|$)/i;
// A copied console prompt with the command that printed the rest: "PS C:\> netsh … show all".
const PROMPT_RE = /\bnetsh(?:\.exe)?\s+int[a-z]*\s+portproxy\s+(?:show|dump)\b/i;
const COMMENT_RE = /^(?:#|;|::(?:\s|$)|rem(?:\s|$)|@?echo(?:\s|$))/i;

/**
 * Reads `show all` tables, `dump` scripts and `netsh interface portproxy add` lines. Throws
 * NetshInputError, naming the line, on anything that is none of them.
 */
export function parseNetsh(text: string): ParsedNetsh {
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  if (lines.every((l) => l.trim() === '')) {
    throw new NetshInputError(
      null,
      'the input is empty (netsh prints nothing when there are no portproxy rules)',
    );
  }
  const rules: NetshRule[] = [];
  const notes: NetshNote[] = [];
  let recognized = false;
  // Where we are: outside any block, inside `pushd interface portproxy`, inside another pushd
  // block of a whole `netsh dump` (skipped), or in a show-all table (after its header, after
  // its dashed line).
  let context: 'top' | 'portproxy' | 'other' = 'top';
  // Rules read before the current `pushd interface portproxy` (its reset clears none of ours).
  let blockStart = 0;
  let table: { kind: NetshKind; state: 'titles' | 'dashes' | 'rows'; header: number } | null = null;

  const command = (body: string, line: number, raw: string): void => {
    const tokens = tokenize(body);
    const verb = (tokens[0] ?? '').toLowerCase();
    if (verb === 'add' || verb === 'set') {
      const kindText = tokens[1] ?? '';
      const kind = NETSH_KINDS.find((k) => k === kindText.toLowerCase());
      if (!kind) {
        throw new NetshInputError(
          line,
          `${JSON.stringify(raw.trim())}: ${kindText ? `unknown rule kind ${JSON.stringify(kindText)}` : 'no rule kind'} (expected ${NETSH_KINDS.join(', ')})`,
        );
      }
      rules.push(ruleFromParameters(kind, tokens.slice(2), line, raw));
      recognized = true;
      return;
    }
    // Every dump's block starts with a reset; one after rules, or a delete, edits the rules
    // above it, which an import of every rule cannot honour: named, so that exit code 1 says so.
    if (verb === 'reset' || verb === 'delete') {
      if (verb === 'delete' || rules.length > blockStart) {
        rules.push({
          line,
          text: collapse(raw),
          kind: null,
          problem: `a ${verb} command is not applied (the rules above it are all imported): import the rules as they are, the output of netsh interface portproxy dump or show all, not a script that edits them`,
        });
      }
      recognized = true;
      return;
    }
    if (verb === 'show' || verb === 'dump' || verb === 'help' || verb === '?') return;
    throw new NetshInputError(
      line,
      `${JSON.stringify(raw.trim())}: not a portproxy command (expected add, set, reset or delete)`,
    );
  };

  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    const t = raw.trim();
    if (t.includes('\u0000')) {
      throw new NetshInputError(line, 'binary data (NUL bytes): not netsh output');
    }
    if (context === 'other') {
      if (/^popd$/i.test(t)) context = 'top';
      continue;
    }
    if (t === '') {
      if (table?.state === 'rows') table = null;
      continue;
    }
    const header = HEADER_RE.exec(t);
    if (header && !NETSH_RE.test(t) && !/^(?:add|set|delete)\s/i.test(t)) {
      table = { kind: `v${header[1]}tov${header[2]}` as NetshKind, state: 'titles', header: line };
      recognized = true;
      continue;
    }
    if (table) {
      if (table.state !== 'rows') {
        if (DASHES_RE.test(t)) table.state = 'rows';
        else if (table.state === 'titles') table.state = 'dashes';
        else {
          throw new NetshInputError(
            line,
            `expected the dashed line under the column titles of the table that starts on line ${table.header}, found ${JSON.stringify(t)}`,
          );
        }
        continue;
      }
      const cols = t.split(/\s+/);
      if (cols.length !== 4) {
        throw new NetshInputError(
          line,
          `a ${table.kind} row has ${cols.length} columns, expected 4 (listen address, port, connect address, port): ${JSON.stringify(t)}`,
        );
      }
      const [listenAddress, listenPort, connectAddress, connectPort] = cols as [
        string,
        string,
        string,
        string,
      ];
      rules.push({
        line,
        text: `${table.kind} ${collapse(t)}`,
        kind: table.kind,
        listenAddress,
        listenPort,
        connectAddress,
        connectPort,
      });
      continue;
    }

    // After the tables: a show-all row may start with "::", which is also a batch comment.
    if (COMMENT_RE.test(t)) continue;
    const pushd = /^pushd\s+(.+)$/i.exec(t);
    if (pushd) {
      context = PORTPROXY_CONTEXT_RE.test((pushd[1] as string).trim()) ? 'portproxy' : 'other';
      blockStart = rules.length;
      recognized ||= context === 'portproxy';
      continue;
    }
    if (/^popd$/i.test(t)) {
      context = 'top';
      continue;
    }
    const oneLiner = NETSH_PORTPROXY_RE.exec(t);
    if (oneLiner) {
      command(oneLiner[1] ?? '', line, raw);
      continue;
    }
    if (PROMPT_RE.test(t)) continue;
    if (NETSH_RE.test(t)) {
      notes.push({ line, message: `ignored: not a portproxy command: ${collapse(t)}` });
      continue;
    }
    if (/^(?:add|set|delete|reset|show|dump)(?:\s|$)/i.test(t)) {
      command(t, line, raw);
      continue;
    }
    throw new NetshInputError(
      line,
      `not netsh portproxy output: ${JSON.stringify(t.length > 80 ? `${t.slice(0, 80)}…` : t)} (expected the output of "netsh interface portproxy show all" or "netsh interface portproxy dump")`,
    );
  }

  if (table && table.state !== 'rows') {
    throw new NetshInputError(
      table.header,
      'a show all table header with no dashed line and rows under it (is the file cut short?)',
    );
  }
  if (!recognized) {
    throw new NetshInputError(
      null,
      'no portproxy rules, tables or dump found (expected the output of "netsh interface portproxy show all" or "netsh interface portproxy dump")',
    );
  }
  return { rules, notes };
}

/** Splits a command line on whitespace, keeping "quoted values" whole; `tag = value` → `tag=value`. */
function tokenize(body: string): string[] {
  const joined = body.trim().replace(/\s*=\s*/g, '=');
  return [...joined.matchAll(/(?:[^\s"]+|"[^"]*")+/g)].map((m) => m[0].replace(/"/g, ''));
}

function collapse(s: string): string {
  return s.trim().replace(/\s+/g, ' ');
}

function ruleFromParameters(
  kind: NetshKind,
  params: string[],
  line: number,
  raw: string,
): NetshRule {
  const rule: NetshRule = { line, text: collapse(raw), kind };
  const given = new Set<Tag>();
  const fail = (problem: string): NetshRule => ({ line, text: rule.text, kind, problem });
  for (const p of params) {
    const eq = p.indexOf('=');
    let tag: Tag | undefined;
    let value: string;
    if (eq === -1) {
      // Untagged: the next parameter in the syntax's order (listenport, connectaddress, …).
      tag = TAGS.find((x) => !given.has(x));
      if (!tag) return fail(`one value too many: ${JSON.stringify(p)}`);
      value = p;
    } else {
      const name = p.slice(0, eq).toLowerCase();
      tag = TAGS.find((x) => x === name);
      if (!tag) {
        return fail(
          `unknown parameter ${JSON.stringify(p.slice(0, eq))} (netsh's are ${TAGS.join(', ')})`,
        );
      }
      value = p.slice(eq + 1);
    }
    if (given.has(tag)) return fail(`${tag} given twice`);
    if (value === '') return fail(`${tag} has no value`);
    given.add(tag);
    (rule as unknown as Record<string, string>)[FIELD[tag]] = value;
  }
  return rule;
}

export interface SkippedRule {
  rule: NetshRule;
  reason: string;
}

export interface Translation {
  config: ConfigFile & { listeners: ListenerInput[] };
  /** The rules written, each with its listener (same order as config.listeners). */
  written: Array<{ rule: NetshRule; listener: ListenerInput }>;
  skipped: SkippedRule[];
  /** Caveats of rules that were written. */
  notes: NetshNote[];
}

/** keyport's limit on listeners in one config (the schema's maxItems, engine.maxListeners' maximum). */
const MAX_LISTENERS = 4096;
/** engine.maxListeners when the config does not set it. */
const DEFAULT_MAX_LISTENERS = 256;

/** netsh rules → keyport forward listeners; what cannot be expressed faithfully is skipped, with why. */
export function translateRules(rules: readonly NetshRule[]): Translation {
  const written: Translation['written'] = [];
  const skipped: SkippedRule[] = [];
  const notes: NetshNote[] = [];
  const byAddress = new Map<string, NetshRule>();

  for (const rule of rules) {
    const result = translateRule(rule);
    if ('reason' in result) {
      skipped.push({ rule, reason: result.reason });
      continue;
    }
    const earlier = byAddress.get(result.key);
    if (earlier) {
      skipped.push({
        rule,
        reason: `listens on ${result.listener.address}, as the rule on line ${earlier.line} does (one address:port takes one listener; netsh's "*" and ${rule.kind?.startsWith('v4') ? '0.0.0.0' : '::'} both mean every address)`,
      });
      continue;
    }
    if (written.length >= MAX_LISTENERS) {
      skipped.push({ rule, reason: `keyport takes at most ${MAX_LISTENERS} listeners` });
      continue;
    }
    byAddress.set(result.key, rule);
    written.push({ rule, listener: result.listener });
    if (result.note) notes.push({ line: rule.line, message: result.note });
  }

  const listeners = written.map((w) => w.listener);
  const config: Translation['config'] =
    listeners.length > DEFAULT_MAX_LISTENERS
      ? { engine: { maxListeners: listeners.length }, listeners }
      : { listeners };
  return { config, written, skipped, notes };
}

type RuleResult =
  | { listener: ListenerInput; key: string; note?: string }
  | { reason: string; listener?: undefined };

function translateRule(rule: NetshRule): RuleResult {
  if (rule.problem || rule.kind === null) return { reason: rule.problem ?? 'not a rule' };
  const kind = rule.kind;
  const listenFamily = kind[1] === '4' ? 4 : 6;
  const connectFamily = kind[5] === '4' ? 4 : 6;

  if (rule.protocol !== undefined && rule.protocol.toLowerCase() !== 'tcp') {
    return {
      reason: `protocol=${rule.protocol}: portproxy and keyport relay TCP only`,
    };
  }
  if (rule.listenPort === undefined) return { reason: 'no listenport' };
  const listenPort = port(rule.listenPort, 'listen');
  if (typeof listenPort === 'string') return { reason: listenPort };
  if (rule.connectAddress === undefined) {
    return { reason: 'no connectaddress (netsh needs the address to connect to)' };
  }
  const connectPort = port(rule.connectPort ?? rule.listenPort, 'connect');
  if (typeof connectPort === 'string') return { reason: connectPort };

  // Listen address: "*" (or none) is every address of the family; otherwise an IP literal.
  let listenHost = unbracket(rule.listenAddress ?? '*');
  if (listenHost === '*') listenHost = listenFamily === 4 ? '0.0.0.0' : '::';
  const listenIs = isIP(listenHost);
  if (listenIs === 0) {
    const looksLikeIp = /^[0-9.]+$/.test(listenHost) || listenHost.includes(':');
    return {
      reason: looksLikeIp
        ? `listen address ${JSON.stringify(listenHost)} is not a valid IPv${listenFamily} address`
        : `listen address ${JSON.stringify(listenHost)} is a host name: keyport listens on IP addresses; write the address of this host it should listen on (or * for all)`,
    };
  }
  if (listenIs !== listenFamily) {
    return {
      reason: `listen address ${listenHost} is IPv${listenIs}, but a ${kind} rule listens on IPv${listenFamily}`,
    };
  }

  // Connect address: an IP literal of the rule's family, or a host name keyport resolves.
  const connectHost = unbracket(rule.connectAddress);
  const connectIs = isIP(connectHost);
  let note: string | undefined;
  if (connectIs !== 0 && connectIs !== connectFamily) {
    return {
      reason: `connect address ${connectHost} is IPv${connectIs}, but a ${kind} rule connects over IPv${connectFamily}`,
    };
  }
  const listenAddress = formatAddress({ host: listenHost, port: listenPort, family: listenFamily });
  const targetText = formatAddress({
    host: connectHost,
    port: connectPort,
    family: connectIs === 0 ? 0 : connectFamily,
  });
  try {
    parseAddress(listenAddress);
    parseAddress(targetText);
  } catch (err) {
    if (err instanceof AddressError) return { reason: err.reason };
    throw err;
  }
  if (connectIs === 0 && connectFamily === 6) {
    note = `connect address ${JSON.stringify(connectHost)} is a host name: netsh (${kind}) connects to its IPv6 addresses only, keyport to every address it resolves to, of either family`;
  }
  return {
    listener: { address: listenAddress, mode: 'forward', target: targetText },
    key: listenAddress.toLowerCase(),
    ...(note ? { note } : {}),
  };
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** A port number, or why not. netsh also takes service names (http), which keyport does not. */
function port(text: string, which: 'listen' | 'connect'): number | string {
  if (/^[0-9]+$/.test(text)) {
    const n = Number(text);
    if (n >= 1 && n <= 65535) return n;
    return `${which} port ${text} is out of range 1-65535`;
  }
  if (/^[A-Za-z][\w-]*$/.test(text)) {
    return `${which} port ${JSON.stringify(text)} is a service name: keyport needs the port number (see %SystemRoot%\\System32\\drivers\\etc\\services)`;
  }
  return `${which} port ${JSON.stringify(text)} is not a number`;
}

/** The config as written: one listener per line, so that a diff shows one rule per line. */
export function formatConfig(config: ConfigFile): string {
  const { listeners = [], ...rest } = config;
  const head = Object.entries(rest).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  const body =
    listeners.length === 0
      ? '  "listeners": []'
      : `  "listeners": [\n${listeners.map((l) => `    ${JSON.stringify(l)}`).join(',\n')}\n  ]`;
  return `{\n${[...head, body].join(',\n')}\n}\n`;
}

/** How a rule is named in messages: its line and the text it was read from. */
export function describeRule(rule: NetshRule): string {
  return `line ${rule.line} (${rule.text})`;
}
