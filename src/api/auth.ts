// Bearer-token protection. Commands always need the token when one is configured; with
// protect = 'all' every route does but those marked public in their route config
// (`config: { public: true }`): /healthz, /readyz, the API's own description and the status
// page's shell. The OpenAPI's per-operation `security` reads the same mark (spec/document.ts).
// Comparison is constant-time (over SHA-256 digests, so the token's length does not leak either).
import { createHash, timingSafeEqual } from 'node:crypto';
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyPluginCallback,
  FastifyPluginOptions,
} from 'fastify';
import fp from 'fastify-plugin';
import { errorBody } from './errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route never needs the token, whatever api.protect says: probes carry none, and what
     * such a route shows (liveness, readiness and why, the API's description, the status page's
     * shell, which asks for the token before it reads any) is no engine data.
     */
    public?: boolean;
  }
}

export interface AuthOptions {
  token: string | null;
  protect: 'commands' | 'all';
}

/** Decorates a scope whose routes are all public (publicScope). */
const PUBLIC_SCOPE = 'keyportPublicScope';

/**
 * A plugin whose routes are all public, registered in a scope that marks every one of them:
 * for plugins whose route options are not written here (@fastify/swagger-ui's pages).
 */
export function publicScope<O extends FastifyPluginOptions>(
  name: string,
  plugin: FastifyPluginAsync<O> | FastifyPluginCallback<O>,
) {
  return fp<O>(
    async (scope, opts) => {
      scope.decorate(PUBLIC_SCOPE, true);
      await scope.register(plugin, opts);
    },
    { name, fastify: '5.x', encapsulate: true },
  );
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Marks the routes of public scopes, then (with a token) checks every request. Install it
 * before anything that reads the mark from an onRoute hook (spec/document.ts): a route is
 * marked as it is added.
 */
export function installAuth(app: FastifyInstance, opts: AuthOptions): void {
  // `this` is the instance the route is added to: a public scope, or one inside it, has the
  // decorator (decorators are inherited by child scopes only).
  app.addHook('onRoute', function (route) {
    if (this.hasDecorator(PUBLIC_SCOPE)) route.config = { ...route.config, public: true };
  });
  if (!opts.token) return;
  const expected = digest(opts.token);
  app.addHook('onRequest', async (req, reply) => {
    // A request no route matched (a 404) has no mark: it needs the token like any other.
    if (req.routeOptions.config.public) return;
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
