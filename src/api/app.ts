import { createServer } from 'node:http';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyServerOptions, LogController } from 'fastify';
import type { TargetRule } from '../config/netrules.js';
import { VERSION } from '../version.js';
import { type AuthOptions, installAuth } from './auth.js';
import type { ConfigControlLike, EngineControlLike } from './control.js';
import { installErrorHandling, sendError } from './errors.js';
import { documentRoute } from './openapi-doc.js';
import { commandRoutes } from './routes/commands.js';
import { configRoutes } from './routes/config.js';
import { engineViewRoutes } from './routes/engine-views.js';
import { eventRoutes } from './routes/events.js';
import { healthzRoutes } from './routes/healthz.js';
import { type MetricsSource, metricsRoutes } from './routes/metrics.js';
import { openapiRoutes } from './routes/openapi.js';
import { uiRoutes } from './routes/ui.js';
import { installSafety } from './safety.js';
import {
  ConnectionDetail,
  ConnectionView,
  KeyOwner,
  KeyView,
  ListenerView,
  OpView,
  Readiness,
  TraceEntryView,
  UpstreamView,
} from './schemas/engine.js';
import { ErrorResponse } from './schemas/error.js';
import { DEFAULT_THREAD_SHARE, installThreadShare, ThreadShare } from './thread-share.js';

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
  installAuth(app, opts.auth ?? { token: null, protect: 'commands' });
  const share = opts.threadShare ?? new ThreadShare(DEFAULT_THREAD_SHARE);
  installThreadShare(app, share);
  app.addSchema(ErrorResponse);
  // Shared by several route plugins, so registered at the root.
  // (The referenced before those that refer to them.)
  for (const s of [
    KeyOwner,
    TraceEntryView,
    UpstreamView,
    ListenerView,
    ConnectionView,
    ConnectionDetail,
    KeyView,
    OpView,
    Readiness,
  ])
    app.addSchema(s);

  // Security and the hooks' 4xx answers on every documented route, before swagger sees it.
  app.addHook('onRoute', documentRoute);
  // Must be registered before the routes: it collects them from the onRoute hook.
  app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'keyport',
        version: VERSION,
        description: 'Control plane of the keyport TCP echo/relay engine',
        license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' },
      },
      servers: [
        {
          url: 'http://127.0.0.1:9180',
          description:
            "keyport's default API address (api.address in the config file, or --api, sets another)",
        },
      ],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'KEYPORT_TOKEN_FILE / api.tokenFile',
          },
        },
      },
    },
    // Name components after their $id instead of def-0, def-1...
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });

  app.register(healthzRoutes, { control: opts.control });
  app.register(engineViewRoutes, { control: opts.control, share });
  app.register(metricsRoutes, { metrics: opts.metrics });
  app.register(commandRoutes, {
    control: opts.control,
    policy: {
      tokenConfigured: Boolean(opts.auth?.token),
      allowTargets: opts.safety?.allowTargets ?? null,
    },
    ...(opts.config ? { config: opts.config } : {}),
  });
  app.register(configRoutes, opts.config ? { config: opts.config } : {});
  app.register(eventRoutes, {
    control: opts.control,
    maxClients: opts.safety?.maxEventClients ?? 32,
  });
  // The live status page at / (its assets under /ui/), served from the package itself.
  app.register(uiRoutes, {
    auth: { tokenRequired: Boolean(opts.auth?.token), protect: opts.auth?.protect ?? 'commands' },
  });
  app.register(openapiRoutes);
  // A human page for the same spec, its assets served by keyport itself (no external requests).
  app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true });
  return app;
}

export type Api = ReturnType<typeof buildApi>;
