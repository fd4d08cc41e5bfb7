import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

/** Serves the generated spec; hidden so the spec does not describe itself. */
export const openapiRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
};
