// Bearer-token protection. Commands always need the token when one is configured; with
// protect = 'all' every route but /healthz, /readyz, the API docs and the status page's shell does.
// Comparison is constant-time (over SHA-256 digests, so the token's length does not leak either).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { errorBody } from './errors.js';

export interface AuthOptions {
  token: string | null;
  protect: 'commands' | 'all';
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Routes that never need the token: liveness and readiness (probes carry no token; /readyz
 * shows ready or not and why, no connection data), the API's own description, and the status
 * page's shell (its HTML, scripts and /ui/config; the page asks for the token before it reads
 * any). The OpenAPI's per-operation `security` follows the same rule (src/api/openapi-doc.ts).
 */
export function isOpenPath(path: string): boolean {
  return (
    path === '/healthz' ||
    path === '/readyz' ||
    path === '/openapi.json' ||
    path === '/docs' ||
    path.startsWith('/docs/') ||
    path === '/' ||
    path.startsWith('/ui/')
  );
}

export function installAuth(app: FastifyInstance, opts: AuthOptions): void {
  if (!opts.token) return;
  const expected = digest(opts.token);
  app.addHook('onRequest', async (req, reply) => {
    if (isOpenPath(req.url.split('?')[0] ?? '')) return;
    const isRead = req.method === 'GET' || req.method === 'HEAD';
    if (isRead && opts.protect === 'commands') return;
    const header = req.headers.authorization ?? '';
    const m = /^Bearer ([^\s]+)$/i.exec(header);
    if (!m?.[1]) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="keyport"')
        .send(errorBody(401, 'this route needs Authorization: Bearer <token>'));
    }
    if (!timingSafeEqual(digest(m[1]), expected)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="keyport", error="invalid_token"')
        .send(errorBody(401, 'the bearer token is not valid'));
    }
  });
}
