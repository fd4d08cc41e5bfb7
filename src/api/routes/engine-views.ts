// Read-only views of the completion model: listeners, connections (with their completion
// trace), the completion-key table, the in-flight ops, and readiness.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import {
  ConnectionDetail,
  ConnectionView,
  KeyView,
  ListenerView,
  OpView,
  Readiness,
} from '../schemas/engine.js';
import { ErrorRef } from '../schemas/error.js';

const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

export const engineViewRoutes: FastifyPluginAsyncTypebox<{ control: EngineControlLike }> = async (
  app,
  { control },
) => {
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: listeners bound and the completion loop turning',
        tags: ['health'],
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_req, reply) => {
      const r = control.readiness();
      return reply.code(r.ready ? 200 : 503).send(r);
    },
  );

  app.get(
    '/listeners',
    {
      schema: {
        summary: 'Listeners with their key, accepts pending, connections and limits',
        tags: ['engine'],
        response: { 200: Type.Object({ items: Type.Array(ListenerView) }) },
      },
    },
    async () => ({ items: control.listeners() }),
  );

  app.get(
    '/listeners/:id',
    {
      schema: {
        summary: 'One listener',
        tags: ['engine'],
        params: IdParams,
        response: { 200: ListenerView, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const l = control.listener(req.params.id);
      return l ?? reply.code(404).send(errorBody(404, `no listener ${req.params.id}`));
    },
  );

  app.get(
    '/connections',
    {
      schema: {
        summary: 'Live connections, filtered and paginated',
        tags: ['engine'],
        querystring: Type.Object(
          {
            listener: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
            state: Type.Optional(
              Type.Union([
                Type.Literal('connecting'),
                Type.Literal('open'),
                Type.Literal('closing'),
              ]),
            ),
            offset: Type.Integer({ minimum: 0, default: 0 }),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            total: Type.Integer(),
            offset: Type.Integer(),
            limit: Type.Integer(),
            items: Type.Array(ConnectionView),
          }),
        },
      },
    },
    async (req) => {
      const { offset, limit, listener, state } = req.query;
      const page = control.connections({
        offset,
        limit,
        ...(listener ? { listener } : {}),
        ...(state ? { state } : {}),
      });
      return { total: page.total, offset, limit, items: page.items };
    },
  );

  app.get(
    '/connections/:id',
    {
      schema: {
        summary: 'One connection with its recent completion trace',
        tags: ['engine'],
        params: IdParams,
        response: { 200: ConnectionDetail, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const c = control.connection(req.params.id);
      return c ?? reply.code(404).send(errorBody(404, `no connection ${req.params.id}`));
    },
  );

  app.get(
    '/keys',
    {
      schema: {
        summary: 'The completion-key table',
        tags: ['engine'],
        response: { 200: Type.Object({ items: Type.Array(KeyView) }) },
      },
    },
    async () => ({ items: control.keys() }),
  );

  app.get(
    '/ops',
    {
      schema: {
        summary:
          'Every in-flight overlapped op; filter by kind, connection or minimum age (stuck ops)',
        tags: ['engine'],
        querystring: Type.Object(
          {
            kind: Type.Optional(
              Type.Union(
                ['accept', 'connect', 'recv', 'send', 'disconnect', 'nop'].map((k) =>
                  Type.Literal(k),
                ),
              ),
            ),
            connection: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
            minAgeMs: Type.Optional(Type.Integer({ minimum: 0 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ total: Type.Integer(), items: Type.Array(OpView) }) },
      },
    },
    async (req) => {
      const items = control.ops(req.query);
      return { total: items.length, items };
    },
  );
};
