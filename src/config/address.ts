import { isIP } from 'node:net';

/** A parsed `HOST:PORT`. family 0 means a hostname, resolved later (bind or connect time). */
export interface Address {
  host: string;
  port: number;
  family: 4 | 6 | 0;
}

export interface ParseAddressOptions {
  /** Accept port 0 (bind to an ephemeral port). Never meaningful for a connect target. */
  allowZero?: boolean;
}

export class AddressError extends Error {
  override name = 'AddressError';
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`invalid address ${JSON.stringify(input)}: ${reason}`);
  }
}

const FORMAT_HINT = 'expected HOST:PORT, IPv6 as [::1]:PORT';

// RFC 1123 labels: letters, digits, inner hyphens, 1..63 chars; optional trailing root dot.
const HOSTNAME_RE =
  /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Parse `HOST:PORT` or `[IPv6]:PORT`. Throws AddressError naming what is wrong. */
export function parseAddress(input: string, options: ParseAddressOptions = {}): Address {
  const fail = (reason: string): never => {
    throw new AddressError(input, reason);
  };
  if (input === '') fail(`empty (${FORMAT_HINT})`);

  let host: string;
  let portText: string;
  if (input.startsWith('[')) {
    const close = input.indexOf(']');
    if (close === -1) fail(`missing "]" after IPv6 address (${FORMAT_HINT})`);
    host = input.slice(1, close);
    const rest = input.slice(close + 1);
    if (rest === '') fail(`missing port (${FORMAT_HINT})`);
    if (!rest.startsWith(':')) fail(`expected ":PORT" after "]" (${FORMAT_HINT})`);
    if (isIP(host) !== 6)
      fail(`${JSON.stringify(host)} is not an IPv6 address (brackets are only for IPv6)`);
    portText = rest.slice(1);
  } else {
    const colons = input.split(':').length - 1;
    if (colons === 0) fail(`missing port (${FORMAT_HINT})`);
    if (colons > 1) fail(`IPv6 addresses must be bracketed, e.g. [::1]:PORT`);
    const colon = input.indexOf(':');
    host = input.slice(0, colon);
    portText = input.slice(colon + 1);
    if (host === '') fail(`missing host (${FORMAT_HINT})`);
    if (isIP(host) === 0) {
      // All-numeric names like 1.2.3.999 are typos of IPv4 literals, not hostnames.
      if (/^[0-9.]+$/.test(host)) fail(`${JSON.stringify(host)} is not a valid IPv4 address`);
      if (!HOSTNAME_RE.test(host))
        fail(`${JSON.stringify(host)} is not a valid hostname or IP address`);
    }
  }

  if (portText === '') fail(`missing port (${FORMAT_HINT})`);
  if (!/^[0-9]+$/.test(portText)) fail(`port ${JSON.stringify(portText)} is not a number`);
  const port = Number(portText);
  const min = options.allowZero ? 0 : 1;
  if (port < min || port > 65535) fail(`port ${portText} out of range ${min}-65535`);

  const ip = isIP(host);
  return { host, port, family: ip === 4 ? 4 : ip === 6 ? 6 : 0 };
}

/** Inverse of parseAddress: brackets IPv6 literals. */
export function formatAddress(address: Address): string {
  return address.family === 6
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}
