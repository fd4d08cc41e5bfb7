import { createServer } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyServerOptions, LogController } from 'fastify';
import type { TargetRule } from '../config/netrules.js';
import { type AuthOptions, installAuth } from './auth.js';
import { configRoutes } from './config/routes.js';
import { connectionRoutes } from './connections/routes.js';
import type { ConfigControlLike, EngineControlLike } from './control.js';
import { installErrorHandling, sendError } from './errors.js';
import { eventRoutes } from './events/routes.js';
import { healthRoutes } from './health/routes.js';
import { keyRoutes } from './keys/routes.js';
import { listenerRoutes } from './listeners/routes.js';
import { type MetricsSource, metricsRoutes } from './metrics/routes.js';
import { opRoutes } from './ops/routes.js';
import { installSafety } from './safety.js';
import { sharedSchemas } from './shared/schemas.js';
import { openapiSpec } from './spec/plugin.js';
import { openapiRoutes } from './spec/routes.js';
import { DEFAULT_THREAD_SHARE, installThreadShare, ThreadShare } from './thread-share.js';
import { uiRoutes } from './ui/routes.js';

export interface BuildApiOptions {
  control: EngineControlLike;
  /** The configuration's keeper: GET /config, POST /config/reload, the state file. */
  config?: ConfigControlLike;
  /** Fastify logger option (true, pino options, or false). Default false. */
  logger?: FastifyServerOptions['logger'];
  /** Bearer token protection; no token = open (the API binds loopback by default). */
  auth?: AuthOptions;
  /** Largest request body accepted (bytes). */
  bodyLimit?: number;
  /** A request must arrive whole within this time, so a slow client cannot hold a socket. */
  requestTimeoutMs?: number;
  /**
   * The API server's own TCP connections at once (default 64): one more is closed as soon as it
   * is accepted, so a local flood cannot exhaust the process's descriptors through the API.
   */
  maxConnections?: number;
  /**
   * The meter of the API's share of the engine's thread under sustained load
   * (thread-share.ts); default: a new one at DEFAULT_THREAD_SHARE.
   */
  threadShare?: ThreadShare;
  /** Served at GET /metrics; without it the route exists (and is documented) but answers 404. */
  metrics?: MetricsSource;
  /** Browser and network defences (docs/security.md). */
  safety?: {
    /** Host names accepted besides loopback and the API's own address. */
    allowedHosts?: string[];
    /** The host the API binds (accepted in Host). */
    apiHost?: string;
    /** Forward targets POST /listeners may use; null/absent = anything but the API itself. */
    allowTargets?: TargetRule[] | null;
    /** Concurrent GET /events clients (default 32). */
    maxEventClients?: number;
  };
}

/** Build the control-plane app. Caller does `await app.listen(...)` or `await app.ready()`. */
export function buildApi(opts: BuildApiOptions) {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 16 * 1024,
    // Node checks request deadlines every connectionsCheckingInterval (30 s by default): check
    // every second, so a client that trickles its headers is cut off near the deadline.
    serverFactory: (handler) => {
      const timeout = opts.requestTimeoutMs ?? 10_000;
      const server = createServer(
        { requestTimeout: timeout, headersTimeout: timeout, connectionsCheckingInterval: 1000 },
        (req, res) => {
          // On every answer, including the router's own errors and the event stream.
          res.setHeader('x-content-type-options', 'nosniff');
          handler(req, res);
        },
      );
      server.maxConnections = opts.maxConnections ?? 64;
      return server;
    },
    // Unknown fields are an error, not silently dropped (Fastify's default strips them).
    // `example` is OpenAPI 3.0's annotation (JSON Schema's `examples` is not valid there).
    ajv: { customOptions: { removeAdditional: false, keywords: ['example'] } },
    // keyport logs listeners and connections; a line per HTTP request would drown them.
    logController: new LogController({ disableRequestLogging: true }),
    // Router-level failures (undecodable URL, over-long param) bypass the error handler.
    frameworkErrors: (error, request, reply) => sendError(error, request, reply),
  }).withTypeProvider<TypeBoxTypeProvider>();

  installErrorHandling(app);
  // First: a foreign Host or a cross-origin command is refused before auth or any body parsing.
  installSafety(app, {
    allowedHosts: opts.safety?.allowedHosts ?? [],
    ...(opts.safety?.apiHost ? { apiHost: opts.safety.apiHost } : {}),
  });
  // Before the OpenAPI's hook: it marks routes public as they are added, and the spec reads it.
  installAuth(app, opts.auth ?? { token: null, protect: 'commands' });
  const share = opts.threadShare ?? new ThreadShare(DEFAULT_THREAD_SHARE);
  installThreadShare(app, share);

  // The error shape and the engine's views, which every resource refers to.
  app.register(sharedSchemas);
  // Before the routes: it collects them as they are added.
  app.register(openapiSpec);

  // One plugin per resource. Their order is the order of the OpenAPI's paths.
  const { control } = opts;
  app.register(healthRoutes, { control });
  app.register(listenerRoutes, {
    control,
    policy: {
      tokenConfigured: Boolean(opts.auth?.token),
      allowTargets: opts.safety?.allowTargets ?? null,
    },
    ...(opts.config ? { config: opts.config } : {}),
  });
  app.register(connectionRoutes, { control, share });
  app.register(keyRoutes, { control, share });
  app.register(opRoutes, { control, share });
  app.register(metricsRoutes, { metrics: opts.metrics });
  app.register(configRoutes, opts.config ? { config: opts.config } : {});
  app.register(eventRoutes, { control, maxClients: opts.safety?.maxEventClients ?? 32 });
  // The live status page at / (its assets under /ui/), served from the package itself. Its
  // routes are public: the shell carries no engine data (the page asks for the token to read).
  app.register(uiRoutes, {
    auth: { tokenRequired: Boolean(opts.auth?.token), protect: opts.auth?.protect ?? 'commands' },
  });
  // The API's own description: /openapi.json, and the page at /docs.
  app.register(openapiRoutes);
  return app;
}

export type Api = ReturnType<typeof buildApi>;
