// netsh rules → keyport forward listeners, and the config file they make; what keyport cannot
// express faithfully is skipped, with why.
import { isIP } from 'node:net';
import { AddressError, formatAddress, parseAddress } from '../address.js';
import type { ConfigFile, ListenerInput } from '../schema.js';
import type { NetshNote, NetshRule } from './rules.js';

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
