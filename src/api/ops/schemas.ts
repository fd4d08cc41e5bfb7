import { Type } from '@sinclair/typebox';
import { OP_KINDS } from '../../engine/backend.js';
import { OpView } from '../../engine/views/schemas.js';
import { PageOf, PageQuery, RefTo } from '../shared/schemas.js';

export const OpsQuery = Type.Object(
  {
    kind: Type.Optional(Type.Union(OP_KINDS.map((k) => Type.Literal(k)))),
    connection: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    minAgeMs: Type.Optional(Type.Integer({ minimum: 0 })),
    ...PageQuery,
  },
  { additionalProperties: false },
);

export const OpPage = PageOf(RefTo(OpView));

export const OpsSummaryQuery = Type.Object(
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
);

export const RecordParams = Type.Object(
  {
    record: Type.String({
      pattern: '^0x[0-9a-fA-F]{1,16}$',
      description: 'The record address from GET /ops',
    }),
  },
  { additionalProperties: false },
);

export const CancelOutcome = Type.Object(
  {
    record: Type.String(),
    op: Type.String(),
    key: Type.String(),
    connection: Type.Union([Type.String(), Type.Null()]),
    listener: Type.Union([Type.String(), Type.Null()]),
    cancelRequested: Type.Boolean({
      description:
        'The cancel was requested: CancelIoEx on its OVERLAPPED succeeded (IOCP), or IORING_OP_ASYNC_CANCEL was queued for its user_data (io_uring)',
    }),
    cancelError: Type.Union([Type.String(), Type.Null()], {
      description:
        'Why the cancel was not requested, e.g. ERROR_NOT_FOUND when the op completed first (IOCP). ' +
        'io_uring queues the cancel without waiting for its answer: there an op that completed first is `completed` with its own status',
    }),
    completed: Type.Boolean({
      description:
        "The op's completion was handled within 2 s of the request (dequeued from the completion port, or reaped from the io_uring completion queue)",
    }),
    status: Type.Union([Type.String(), Type.Null()], {
      description:
        'Its final status: ERROR_OPERATION_ABORTED (IOCP) or ECANCELED (io_uring) when the cancel took it; SUCCESS or another error when it completed first',
    }),
    bytes: Type.Union([Type.Integer(), Type.Null()]),
  },
  { $id: 'CancelOutcome' },
);
