// Listeners: list them, read one, start one (POST: every input validated by its schema, then
// the policy of policy.ts, before the engine is touched) and stop one.

import { ConfigError } from '../../config/config-error.js';
import { StateWriteError } from '../../config/lifecycle.js';
import { listenerFromInput } from '../../config/listener-input.js';
import { ListenerInput } from '../../config/schema.js';
import { ListenError } from '../../engine/listener-setup.js';
import { ListenerView } from '../../engine/views/schemas.js';
import type { ConfigControlLike, EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef, IdParams, RefTo } from '../shared/schemas.js';
import { apiAddresses, type ListenerPolicy, refusal } from './policy.js';
import { CloseListenerQuery, ListenerList } from './schemas.js';

export const listenerRoutes = resourcePlugin<{
  control: EngineControlLike;
  policy?: ListenerPolicy;
  /** Records API listeners in the state file (when one is configured). */
  config?: ConfigControlLike;
}>('listeners', async (app, { control, policy, config: keeper }) => {
  app.addSchema(ListenerInput);
  const security = [{ bearer: [] }];

  app.get(
    '/listeners',
    {
      schema: {
        operationId: 'listListeners',
        summary: 'Listeners with their key, accepts pending, connections and limits',
        tags: ['engine'],
        response: { 200: ListenerList },
      },
    },
    async () => ({ items: control.listeners() }),
  );

  app.post(
    '/listeners',
    {
      schema: {
        operationId: 'createListener',
        summary: 'Start a listener',
        tags: ['commands'],
        security,
        body: RefTo(ListenerInput),
        response: {
          201: RefTo(ListenerView),
          400: ErrorRef,
          401: ErrorRef,
          403: ErrorRef,
          409: ErrorRef,
          500: ErrorRef,
        },
      },
    },
    async (req, reply) => {
      let config: ReturnType<typeof listenerFromInput>;
      try {
        config = listenerFromInput(req.body, 'body');
      } catch (err) {
        if (err instanceof ConfigError) return reply.code(400).send(errorBody(400, err.message));
        throw err;
      }
      const why = await refusal(
        config,
        policy ?? { tokenConfigured: true, allowTargets: null },
        apiAddresses(app),
      );
      if (why) return reply.code(403).send(errorBody(403, why));
      try {
        // After any reload under way (which checks the addresses API listeners hold), and
        // recorded in the state file before the answer.
        const create = async () => {
          const l = await control.createListener(config);
          keeper?.apiCreated(l.id, req.body, config);
          return l;
        };
        const l = await (keeper ? keeper.serial(create) : create());
        return reply.code(201).header('location', `/listeners/${l.id}`).send(l);
      } catch (err) {
        if (err instanceof StateWriteError)
          return reply.code(500).send(errorBody(500, err.message));
        if (err instanceof ListenError) {
          const status = err.inUse || err.atLimit ? 409 : 400;
          return reply.code(status).send(errorBody(status, err.message));
        }
        throw err;
      }
    },
  );

  app.get(
    '/listeners/:id',
    {
      schema: {
        operationId: 'getListener',
        summary: 'One listener',
        tags: ['engine'],
        params: IdParams,
        response: { 200: RefTo(ListenerView), 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const l = control.listener(req.params.id);
      return l ?? reply.code(404).send(errorBody(404, `no listener ${req.params.id}`));
    },
  );

  app.delete(
    '/listeners/:id',
    {
      schema: {
        operationId: 'closeListener',
        summary:
          'Stop a listener: drain (refuse new clients, let connections finish until the deadline) or abort',
        tags: ['commands'],
        security,
        params: IdParams,
        querystring: CloseListenerQuery,
        response: { 202: RefTo(ListenerView), 401: ErrorRef, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const l = control.closeListener(req.params.id, req.query.mode, req.query.deadlineMs);
      if (!l) return reply.code(404).send(errorBody(404, `no listener ${req.params.id}`));
      keeper?.apiClosed(l.id);
      return reply.code(202).send(l);
    },
  );
});
