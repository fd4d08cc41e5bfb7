// GET /config (the effective configuration, token redacted) and POST /config/reload (re-read
// the config file, validate it whole, apply the listeners' difference: docs/reload.md).
import { Type } from '@sinclair/typebox';
import { ReloadError } from '../../config/lifecycle.js';
import type { ConfigControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef } from '../shared/schemas.js';
import { EffectiveConfig, EffectiveListener, ListenerChange, ReloadResult } from './schemas.js';

export const configRoutes = resourcePlugin<{ config?: ConfigControlLike }>(
  'config',
  async (app, { config }) => {
    app.addSchema(EffectiveListener);
    app.addSchema(EffectiveConfig);
    app.addSchema(ListenerChange);
    app.addSchema(ReloadResult);

    app.get(
      '/config',
      {
        schema: {
          operationId: 'getConfig',
          summary:
            'The effective configuration: config file, environment and flags merged, plus listeners added over the API (the token redacted)',
          tags: ['config'],
          response: { 200: Type.Ref('EffectiveConfig'), 401: ErrorRef, 404: ErrorRef },
        },
      },
      async (_req, reply) => {
        if (!config) return reply.code(404).send(errorBody(404, 'no configuration to show'));
        return config.effective();
      },
    );

    app.post(
      '/config/reload',
      {
        schema: {
          operationId: 'reloadConfig',
          summary:
            "Re-read the config file and apply its listeners' difference (nothing is applied if any part is invalid); SIGHUP does the same on Linux",
          tags: ['commands'],
          security: [{ bearer: [] }],
          response: {
            200: Type.Ref('ReloadResult'),
            400: ErrorRef,
            401: ErrorRef,
            409: ErrorRef,
          },
        },
      },
      async (req, reply) => {
        if (!config)
          return reply
            .code(409)
            .send(errorBody(409, 'this keyport has no configuration to reload'));
        try {
          const r = await config.reload();
          req.log.info({ reload: r }, 'config reloaded');
          return r;
        } catch (err) {
          if (err instanceof ReloadError) {
            req.log.warn(`reload refused, nothing changed: ${err.message}`);
            return reply.code(err.status).send(errorBody(err.status, err.message));
          }
          throw err;
        }
      },
    );
  },
);
