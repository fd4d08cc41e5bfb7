// Connections: a filtered page of them, their summary, one with its completion trace, and
// closing one (graceful or abort).
import {
  ConnectionDetail,
  ConnectionsSummaryView,
  ConnectionView,
} from '../../engine/views/schemas.js';
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { sendPage } from '../shared/paced-body.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef, IdParams, RefTo } from '../shared/schemas.js';
import type { ThreadShare } from '../thread-share.js';
import { CloseConnectionQuery, ConnectionPage, ConnectionsQuery, SummaryQuery } from './schemas.js';

export const connectionRoutes = resourcePlugin<{
  control: EngineControlLike;
  share: ThreadShare;
}>('connections', async (app, { control, share }) => {
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
        querystring: ConnectionsQuery,
        response: { 200: ConnectionPage },
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
        querystring: SummaryQuery,
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

  app.delete(
    '/connections/:id',
    {
      schema: {
        operationId: 'closeConnection',
        summary: 'Close a connection: graceful (its peers get EOF) or abort (RST)',
        tags: ['commands'],
        security: [{ bearer: [] }],
        params: IdParams,
        querystring: CloseConnectionQuery,
        response: { 202: RefTo(ConnectionView), 401: ErrorRef, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const c = control.closeConnection(req.params.id, req.query.mode);
      if (!c) return reply.code(404).send(errorBody(404, `no connection ${req.params.id}`));
      return reply.code(202).send(c);
    },
  );
});
