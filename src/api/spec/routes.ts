// The API's own description, public: GET /openapi.json (hidden, so the spec does not describe
// itself) and a human page for it at /docs, its assets served by keyport itself (no external
// requests).
import fastifySwaggerUi from '@fastify/swagger-ui';
import { publicScope } from '../auth.js';
import { resourcePlugin } from '../shared/plugin.js';

export const openapiRoutes = resourcePlugin(
  'api-docs',
  async (app) => {
    app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () =>
      app.swagger(),
    );
    // @fastify/swagger-ui's routes take no route options from us: its whole scope is public.
    await app.register(publicScope('keyport-swagger-ui', fastifySwaggerUi), {
      routePrefix: '/docs',
      staticCSP: true,
    });
  },
  ['keyport-openapi'],
);
