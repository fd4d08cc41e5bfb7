// `keyport import-netsh` (Windows `netsh interface portproxy` rules → a keyport config file), in
// four pure steps: bytes → text (decode.ts), text → rules (parse.ts), rules → config
// (translate.ts). This file holds what they pass between them. The command itself (files, exit
// codes) is src/launcher/import-netsh.ts.

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
