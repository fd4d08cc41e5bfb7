// In-flight ops: a filtered page of them, their summary, and cancelling one.
import { OpsSummaryView } from '../../engine/views/schemas.js';
import type { EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { sendPage } from '../shared/paced-body.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef, RefTo } from '../shared/schemas.js';
import type { ThreadShare } from '../thread-share.js';
import { CancelOutcome, OpPage, OpsQuery, OpsSummaryQuery, RecordParams } from './schemas.js';

export const opRoutes = resourcePlugin<{ control: EngineControlLike; share: ThreadShare }>(
  'ops',
  async (app, { control, share }) => {
    app.addSchema(CancelOutcome);

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
          querystring: OpsQuery,
          response: { 200: OpPage },
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
          querystring: OpsSummaryQuery,
          response: { 200: OpsSummaryView },
        },
      },
      async (req) => control.opsSummary(req.query.oldest, req.query.olderThanMs),
    );

    app.delete(
      '/ops/:record',
      {
        schema: {
          operationId: 'cancelOp',
          summary:
            'Cancel one in-flight op (IOCP: CancelIoEx on its OVERLAPPED; io_uring: IORING_OP_ASYNC_CANCEL on its user_data) and report what became of it',
          tags: ['commands'],
          security: [{ bearer: [] }],
          params: RecordParams,
          response: { 200: RefTo(CancelOutcome), 401: ErrorRef, 404: ErrorRef, 409: ErrorRef },
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
  },
);
