import fastifySwagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyServerOptions, LogController } from 'fastify';
import { VERSION } from '../version.js';
import type { EngineControlLike } from './control.js';
import { installErrorHandling, sendError } from './errors.js';
import { engineViewRoutes } from './routes/engine-views.js';
import { healthzRoutes } from './routes/healthz.js';
import { openapiRoutes } from './routes/openapi.js';
import { ErrorResponse } from './schemas/error.js';

export interface BuildApiOptions {
  control: EngineControlLike;
  /** Fastify logger option (true, pino options, or false). Default false. */
  logger?: FastifyServerOptions['logger'];
}

/** Build the control-plane app. Caller does `await app.listen(...)` or `await app.ready()`. */
export function buildApi(opts: BuildApiOptions) {
  const app = Fastify({
    logger: opts.logger ?? false,
    // keyport logs listeners and connections; a line per HTTP request would drown them.
    logController: new LogController({ disableRequestLogging: true }),
    // Router-level failures (undecodable URL, over-long param) bypass the error handler.
    frameworkErrors: (error, request, reply) => sendError(error, request, reply),
  }).withTypeProvider<TypeBoxTypeProvider>();

  installErrorHandling(app);
  app.addSchema(ErrorResponse);

  // Must be registered before the routes: it collects them from the onRoute hook.
  app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'keyport',
        version: VERSION,
        description: 'Control plane of the keyport TCP echo/relay engine',
      },
    },
    // Name components after their $id instead of def-0, def-1...
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });

  app.register(healthzRoutes, { control: opts.control });
  app.register(engineViewRoutes, { control: opts.control });
  app.register(openapiRoutes);
  return app;
}

export type Api = ReturnType<typeof buildApi>;
