// netsh portproxy output as text → its rules, each with its line.
//
// Two inputs are read, mixed freely in one file:
// - `netsh interface portproxy show all`: per rule kind a header naming ipv4/ipv6 twice (listen,
//   then connect; localized Windows translates the words around them, never the tokens), a line
//   of column titles, a dashed line, then rows "ADDRESS PORT ADDRESS PORT" (split on whitespace:
//   a long IPv6 address or host name pushes the columns right).
// - `netsh interface portproxy dump` (or a whole `netsh dump`): `pushd interface portproxy`,
//   `reset`, `add KIND tag=value…`, `popd`; and `netsh interface portproxy add …` one-liners.
import {
  NETSH_KINDS,
  NetshInputError,
  type NetshKind,
  type NetshNote,
  type NetshRule,
  type ParsedNetsh,
} from './rules.js';

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
