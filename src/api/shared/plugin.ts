// Every resource (listeners/, connections/, ops/…) is one encapsulated Fastify plugin: what it
// adds (schemas, hooks) stays inside it. Each carries Fastify's plugin metadata through
// fastify-plugin, here with `encapsulate: true` so that the encapsulation is kept: a name
// (keyport-<resource>, in Fastify's errors and in `app.printPlugins()`), the Fastify major it is
// written for (checked when it is registered), and the plugins it needs registered first: the
// shared schemas (shared/schemas.ts), and any in `needs`.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyPluginOptions } from 'fastify';
import fp from 'fastify-plugin';

export function resourcePlugin<O extends FastifyPluginOptions>(
  resource: string,
  plugin: FastifyPluginAsyncTypebox<O>,
  needs: string[] = [],
): FastifyPluginAsyncTypebox<O> {
  return fp(plugin, {
    name: `keyport-${resource}`,
    fastify: '5.x',
    encapsulate: true,
    dependencies: ['keyport-schemas', ...needs],
  });
}
