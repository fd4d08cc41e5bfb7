// The OpenAPI document: @fastify/swagger collects every route as it is added, and documentRoute
// (document.ts) fills in what the API's cross-cutting rules say of each.
import fastifySwagger from '@fastify/swagger';
import fp from 'fastify-plugin';
import { VERSION } from '../../version.js';
import { documentRoute } from './document.js';

/**
 * Registered before the routes, and without encapsulation (fastify-plugin without
 * `encapsulate`): its onRoute hooks must see the routes of every other plugin, and the
 * `swagger()` decorator must reach the route that serves the document (routes.ts).
 */
export const openapiSpec = fp(
  async (app) => {
    // Security and the hooks' 4xx answers on every documented route, before swagger sees it.
    app.addHook('onRoute', documentRoute);
    await app.register(fastifySwagger, {
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
  },
  { name: 'keyport-openapi', fastify: '5.x' },
);
