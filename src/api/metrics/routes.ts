// GET /metrics: the Prometheus exposition. Registered even without a metrics source (metrics
// switched off, or the OpenAPI generator), so the spec always documents it; it then answers 404.
import { errorBody } from '../errors.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef } from '../shared/schemas.js';
import { Exposition } from './schemas.js';

/** What the route needs: the exposition, negotiated from the request's Accept header. */
export interface MetricsSource {
  render(accept?: string): Promise<{ contentType: string; body: string }>;
}

export const metricsRoutes = resourcePlugin<{ metrics?: MetricsSource | undefined }>(
  'metrics',
  async (app, { metrics }) => {
    app.get(
      '/metrics',
      {
        schema: {
          operationId: 'getMetrics',
          summary:
            'Prometheus metrics: text format 0.0.4, or OpenMetrics 1.0.0 when Accept asks for application/openmetrics-text',
          tags: ['metrics'],
          response: {
            200: {
              description: 'The exposition',
              content: {
                'text/plain; version=0.0.4': { schema: Exposition },
                'application/openmetrics-text; version=1.0.0': { schema: Exposition },
              },
            },
            404: ErrorRef,
          },
        },
      },
      async (req, reply) => {
        if (!metrics)
          return reply
            .code(404)
            .send(errorBody(404, 'metrics are switched off (KEYPORT_METRICS=off)'));
        const r = await metrics.render(req.headers.accept);
        return reply.type(r.contentType).send(r.body);
      },
    );
  },
);
