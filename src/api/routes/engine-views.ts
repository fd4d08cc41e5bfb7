// Read-only views of the completion model: listeners, connections (with their completion
// trace), the completion-key table, the in-flight ops, and readiness.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import type { PageWalk } from '../../engine/control.js';
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { pagedBody } from '../paced-body.js';
import {
  ConnectionDetail,
  ConnectionsSummaryView,
  ConnectionView,
  KeyView,
  ListenerView,
  OpsSummaryView,
  OpView,
  PageOf,
  PageQuery,
  Readiness,
  RefTo,
} from '../schemas/engine.js';
import { ErrorRef } from '../schemas/error.js';
import type { ThreadShare } from '../thread-share.js';

/**
 * A page goes out as JSON EngineControl renders from cached fragments (engine/view-fragments.ts),
 * walked and written in slices (paced-body.ts), not through the route's serializer: the
 * response schema documents the shape, and the fragments are built from the same fields.
 */
function sendPage(
  reply: FastifyReply,
  share: ThreadShare,
  walk: PageWalk,
  page: { offset: number; limit: number },
) {
  return reply.type('application/json; charset=utf-8').send(pagedBody(walk, page, share));
}

const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

export const engineViewRoutes: FastifyPluginAsyncTypebox<{
  control: EngineControlLike;
  share: ThreadShare;
}> = async (app, { control, share }) => {
  app.get(
    '/readyz',
    {
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

  app.get(
    '/listeners',
    {
      schema: {
        operationId: 'listListeners',
        summary: 'Listeners with their key, accepts pending, connections and limits',
        tags: ['engine'],
        response: { 200: Type.Object({ items: Type.Array(RefTo(ListenerView)) }) },
      },
    },
    async () => ({ items: control.listeners() }),
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

  app.get(
    '/connections',
    {
      schema: {
        operationId: 'listConnections',
        summary: 'Live connections, filtered and paginated',
        description:
          'In the order they opened. `total` counts every match (without a state filter it is ' +
          'a kept count and the walk stops at the page); the page is walked and written in ' +
          'slices between completions.',
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
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: PageOf(RefTo(ConnectionView)) },
      },
    },
    async (req, reply) => {
      const { offset, limit, listener, state } = req.query;
      const page = control.connections({
        offset,
        limit,
        ...(listener ? { listener } : {}),
        ...(state ? { state } : {}),
      });
      return sendPage(reply, share, page, { offset, limit });
    },
  );

  app.get(
    '/connections/summary',
    {
      schema: {
        operationId: 'getConnectionsSummary',
        summary: 'Connection counts by listener and state, the oldest and the busiest',
        description:
          'One pass over the connections that keeps only counts and the `top` of each ranking.',
        tags: ['engine'],
        querystring: Type.Object(
          {
            top: Type.Integer({
              minimum: 0,
              maximum: 20,
              default: 10,
              description: 'Connections in each of oldest and busiest (0..20)',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: ConnectionsSummaryView },
      },
    },
    async (req) => control.connectionsSummary(req.query.top),
  );

  app.get(
    '/connections/:id',
    {
      schema: {
        operationId: 'getConnection',
        summary: 'One connection with its recent completion trace',
        tags: ['engine'],
        params: IdParams,
        response: { 200: RefTo(ConnectionDetail), 404: ErrorRef },
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
        operationId: 'listKeys',
        summary: 'The completion-key table, paginated',
        description:
          'In slot order (index ascending). `total` counts every live key (a kept count); the walk ' +
          'stops at the page.',
        tags: ['engine'],
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: { 200: PageOf(RefTo(KeyView)) },
      },
    },
    async (req, reply) => {
      const { offset, limit } = req.query;
      const page = control.keys({ offset, limit });
      return sendPage(reply, share, page, { offset, limit });
    },
  );

  app.get(
    '/ops',
    {
      schema: {
        operationId: 'listOps',
        summary:
          'In-flight overlapped ops, paginated; filter by kind, connection or minimum age (stuck ops)',
        description:
          'In record-pool slot order, which does not change while the ops do not (for the ' +
          'oldest first, see /ops/summary). `total` counts every match (without minAgeMs it is ' +
          'a kept count by kind and the walk stops at the page).',
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
            ...PageQuery,
          },
          { additionalProperties: false },
        ),
        response: { 200: PageOf(RefTo(OpView)) },
      },
    },
    async (req, reply) => {
      const { offset, limit } = req.query;
      const page = control.ops(req.query);
      return sendPage(reply, share, page, { offset, limit });
    },
  );

  app.get(
    '/ops/summary',
    {
      schema: {
        operationId: 'getOpsSummary',
        summary: 'Ops in flight by kind and age bucket, and the oldest, without listing them',
        description:
          'One pass over the ops in flight that keeps only counts and the `oldest` oldest ops.',
        tags: ['engine'],
        querystring: Type.Object(
          {
            oldest: Type.Integer({
              minimum: 0,
              maximum: 20,
              default: 10,
              description: 'How many of the oldest ops to list (0..20)',
            }),
            olderThanMs: Type.Optional(
              Type.Integer({
                minimum: 0,
                description: 'Also count, by kind, the ops at least this old (stuck ops)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: OpsSummaryView },
      },
    },
    async (req) => control.opsSummary(req.query.oldest, req.query.olderThanMs),
  );
};
