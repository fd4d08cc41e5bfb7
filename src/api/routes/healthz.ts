import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type Static, Type } from '@sinclair/typebox';
import { VERSION } from '../../version.js';
import type { EngineControlLike } from '../control.js';
import { ErrorRef } from '../schemas/error.js';

export const HealthResponse = Type.Object(
  {
    status: Type.Literal('ok'),
    uptimeSeconds: Type.Number({ minimum: 0, description: 'Seconds since the engine started' }),
    version: Type.String({ description: 'keyport version' }),
  },
  { additionalProperties: false, description: 'The process is up and serving HTTP' },
);
export type HealthResponse = Static<typeof HealthResponse>;

/** Liveness only: answers while the process serves HTTP, without asking the engine anything. */
export const healthzRoutes: FastifyPluginAsyncTypebox<{ control: EngineControlLike }> = async (
  app,
  { control },
) => {
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'getHealth',
        summary: 'Liveness',
        tags: ['health'],
        response: { 200: HealthResponse, '5xx': ErrorRef },
      },
    },
    async () => ({
      status: 'ok' as const,
      // Clamp: a wall-clock step backwards must not yield a negative uptime.
      uptimeSeconds: Math.max(0, Date.now() - control.startedAt) / 1000,
      version: VERSION,
    }),
  );
};
