// What keeps browsers from driving the API (docs/security.md):
//  - Host allowlist (DNS rebinding): a page on attacker.example that re-resolves to 127.0.0.1 is
//    same-origin with the API in the browser's eyes, but its requests carry
//    `Host: attacker.example`. Only loopback names and literals, the API's own address (its
//    configured host, or the address the connection arrived on) and api.allowedHosts are
//    answered; anything else gets 421 before any route, hook or body parser runs.
//  - Cross-origin refusal: a request that changes state (anything but GET/HEAD) with an Origin
//    that is not the API's own, or that the browser marks Sec-Fetch-Site: cross-site/same-site,
//    is refused 403. A browser's cross-site GET that is not a top-level navigation (fetch with
//    mode no-cors, <img>, <script>) is refused too: it cannot read the answer, but it could make
//    keyport build it. No CORS headers are ever sent, so no other origin can read an answer.
//  - Cache-Control: no-store on JSON answers (X-Content-Type-Options is set for every answer by
//    the server itself, src/api/app.ts).
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isLoopbackIp, unmapIp } from '../config/netrules.js';
import { errorBody } from './errors.js';

export interface SafetyOptions {
  /** Host names accepted besides loopback and the API's own address (lower case). */
  allowedHosts?: string[];
  /** The host the API was told to bind (a name or a literal), accepted in Host. */
  apiHost?: string;
}

/** `Host` → hostname (lower case, brackets and trailing dot removed) and port; null if malformed. */
export function parseHostHeader(host: string): { name: string; port: number | null } | null {
  let name: string;
  let portText: string | undefined;
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    if (close < 0) return null;
    name = host.slice(1, close);
    const rest = host.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return null;
      portText = rest.slice(1);
    }
    if (isIP(name) !== 6) return null;
  } else {
    const parts = host.split(':');
    if (parts.length > 2) return null;
    name = parts[0] ?? '';
    portText = parts[1];
  }
  if (portText !== undefined && !/^[0-9]{1,5}$/.test(portText)) return null;
  name = name.toLowerCase().replace(/\.$/, '');
  if (name === '') return null;
  return { name, port: portText === undefined ? null : Number(portText) };
}

const STATE_SAFE = new Set(['GET', 'HEAD']);

function refuse(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send(errorBody(status, message));
}

export function installSafety(app: FastifyInstance, opts: SafetyOptions = {}): void {
  const allowed = new Set((opts.allowedHosts ?? []).map((h) => h.toLowerCase()));
  const apiHost = opts.apiHost?.toLowerCase().replace(/\.$/, '');

  const hostAllowed = (name: string, req: FastifyRequest): boolean => {
    if (name === 'localhost' || allowed.has(name) || name === apiHost) return true;
    if (isIP(name) === 0) return false;
    if (isLoopbackIp(name)) return true;
    // The address this connection arrived on is the API's own, whatever the bind (0.0.0.0 too).
    const local = req.socket?.localAddress;
    return local !== undefined && unmapIp(local) === unmapIp(name);
  };

  app.addHook('onRequest', async (req, reply) => {
    const hostHeader = req.headers.host;
    // HTTP/1.1 without Host is refused by Node itself (400); a HTTP/1.0 client without one is not
    // a browser, and not what a rebinding page can send.
    let host: { name: string; port: number | null } | null = null;
    if (hostHeader !== undefined) {
      host = parseHostHeader(hostHeader);
      if (!host || !hostAllowed(host.name, req)) {
        return refuse(
          reply,
          421,
          `this API does not answer to Host ${JSON.stringify(hostHeader)}: only loopback names and addresses, ` +
            "the API's own address and the names in api.allowedHosts are served",
        );
      }
    }

    const site = req.headers['sec-fetch-site'];
    const crossSite = site === 'cross-site' || site === 'same-site';
    if (STATE_SAFE.has(req.method)) {
      // A top-level navigation (a link to the status page) is fine; a cross-site subresource or
      // no-cors fetch is not: it could only make keyport do work for a page that cannot read it.
      if (crossSite && req.headers['sec-fetch-mode'] !== 'navigate') {
        return refuse(
          reply,
          403,
          `cross-site request refused: the browser marked it Sec-Fetch-Site: ${site} (a page of another site cannot use this API)`,
        );
      }
      return;
    }
    if (crossSite) {
      return refuse(
        reply,
        403,
        `cross-site request refused: the browser marked this ${req.method} Sec-Fetch-Site: ${site}; commands are only taken from the API's own origin or from non-browser clients`,
      );
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let same = false;
      if (origin !== 'null' && host) {
        try {
          const u = new URL(origin);
          const def = u.protocol === 'https:' ? 443 : 80;
          same =
            (u.protocol === 'http:' || u.protocol === 'https:') &&
            u.hostname
              .toLowerCase()
              .replace(/^\[|\]$/g, '')
              .replace(/\.$/, '') === host.name &&
            (u.port === '' ? def : Number(u.port)) === (host.port ?? def);
        } catch {
          same = false;
        }
      }
      if (!same) {
        return refuse(
          reply,
          403,
          `cross-origin request refused: Origin ${origin} is not this API's origin (http://${hostHeader ?? '?'}); commands are only taken from the API's own origin or from non-browser clients`,
        );
      }
    }
  });

  // JSON answers describe live state: no cache (browser, proxy) may keep or replay them.
  app.addHook('onSend', async (_req, reply, payload) => {
    const type = reply.getHeader('content-type');
    if (
      typeof type === 'string' &&
      type.startsWith('application/json') &&
      !reply.hasHeader('cache-control')
    )
      reply.header('cache-control', 'no-store');
    return payload;
  });
}
