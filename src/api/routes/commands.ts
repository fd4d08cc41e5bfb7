// Commands: create and stop listeners, close connections, cancel one in-flight op. Every input
// is validated by its schema before the engine is touched.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ListenError } from '../../engine/engine.js';
import { ConfigError, listenerFromInput } from '../../main/config.js';
import { ListenerInput } from '../../main/config-schema.js';
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { ErrorRef } from '../schemas/error.js';

const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

const CancelOutcome = Type.Object(
  {
    record: Type.String(),
    op: Type.String(),
    key: Type.String(),
    connection: Type.Union([Type.String(), Type.Null()]),
    listener: Type.Union([Type.String(), Type.Null()]),
    cancelRequested: Type.Boolean({ description: 'CancelIoEx accepted the request' }),
    cancelError: Type.Union([Type.String(), Type.Null()], {
      description:
        'Why the cancel was not requested, e.g. ERROR_NOT_FOUND when the op completed first',
    }),
    completed: Type.Boolean({
      description: 'The op completion was dequeued within 2 s of the request',
    }),
    status: Type.Union([Type.String(), Type.Null()], {
      description: 'Its final status, e.g. ERROR_OPERATION_ABORTED',
    }),
    bytes: Type.Union([Type.Integer(), Type.Null()]),
  },
  { $id: 'CancelOutcome' },
);

export const commandRoutes: FastifyPluginAsyncTypebox<{ control: EngineControlLike }> = async (
  app,
  { control },
) => {
  app.addSchema(ListenerInput);
  app.addSchema(CancelOutcome);
  const security = [{ bearer: [] }];

  app.post(
    '/listeners',
    {
      schema: {
        summary: 'Start a listener',
        tags: ['commands'],
        security,
        body: ListenerInput,
        response: {
          201: Type.Ref('Listener'),
          400: ErrorRef,
          401: ErrorRef,
          409: ErrorRef,
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
      try {
        const l = await control.createListener(config);
        return reply.code(201).header('location', `/listeners/${l.id}`).send(l);
      } catch (err) {
        if (err instanceof ListenError) {
          return reply
            .code(err.inUse ? 409 : 400)
            .send(errorBody(err.inUse ? 409 : 400, err.message));
        }
        throw err;
      }
    },
  );

  app.delete(
    '/listeners/:id',
    {
      schema: {
        summary:
          'Stop a listener: drain (refuse new clients, let connections finish until the deadline) or abort',
        tags: ['commands'],
        security,
        params: IdParams,
        querystring: Type.Object(
          {
            mode: Type.Union([Type.Literal('drain'), Type.Literal('abort')], { default: 'drain' }),
            deadlineMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 30_000 }),
          },
          { additionalProperties: false },
        ),
        response: { 202: Type.Ref('Listener'), 401: ErrorRef, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const l = control.closeListener(req.params.id, req.query.mode, req.query.deadlineMs);
      if (!l) return reply.code(404).send(errorBody(404, `no listener ${req.params.id}`));
      return reply.code(202).send(l);
    },
  );

  app.delete(
    '/connections/:id',
    {
      schema: {
        summary: 'Close a connection: graceful (its peers get EOF) or abort (RST)',
        tags: ['commands'],
        security,
        params: IdParams,
        querystring: Type.Object(
          {
            mode: Type.Union([Type.Literal('graceful'), Type.Literal('abort')], {
              default: 'graceful',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 202: Type.Ref('Connection'), 401: ErrorRef, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const c = control.closeConnection(req.params.id, req.query.mode);
      if (!c) return reply.code(404).send(errorBody(404, `no connection ${req.params.id}`));
      return reply.code(202).send(c);
    },
  );

  app.delete(
    '/ops/:record',
    {
      schema: {
        summary:
          'Cancel one in-flight op (CancelIoEx on its OVERLAPPED) and report what became of it',
        tags: ['commands'],
        security,
        params: Type.Object(
          {
            record: Type.String({
              pattern: '^0x[0-9a-fA-F]{1,16}$',
              description: 'The record address from GET /ops',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: CancelOutcome, 401: ErrorRef, 404: ErrorRef, 409: ErrorRef },
      },
    },
    async (req, reply) => {
      const r = await control.cancelOp(req.params.record);
      if (r === 'not-found')
        return reply.code(404).send(errorBody(404, `no op in flight at ${req.params.record}`));
      if (r === 'not-cancellable') {
        return reply
          .code(409)
          .send(
            errorBody(409, `${req.params.record} is the engine heartbeat packet, not an I/O op`),
          );
      }
      return r;
    },
  );
};
