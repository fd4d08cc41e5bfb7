// GET /healthz (liveness) and GET /readyz (readiness). Both are public (probes carry no token,
// and neither shows connection data) and unmetered (a probe is answered at once, even while a
// flood of view requests waits for the API's share of the engine's thread).
import { Readiness } from '../../engine/views/schemas.js';
import { VERSION } from '../../version.js';
import type { EngineControlLike } from '../control.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef, RefTo } from '../shared/schemas.js';
import { HealthResponse } from './schemas.js';

export const healthRoutes = resourcePlugin<{ control: EngineControlLike }>(
  'health',
  async (app, { control }) => {
    /** Liveness only: answers while the process serves HTTP, without asking the engine anything. */
    app.get(
      '/healthz',
      {
        config: { public: true, unmetered: true },
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

    app.get(
      '/readyz',
      {
        config: { public: true, unmetered: true },
        schema: {
          operationId: 'getReadiness',
          summary: 'Readiness: listeners bound and the completion loop turning',
          tags: ['health'],
          response: { 200: RefTo(Readiness), 503: RefTo(Readiness) },
        },
      },
      async (_req, reply) => {
        const r = control.readiness();
        return reply.code(r.ready ? 200 : 503).send(r);
      },
    );
  },
);
