import { Type } from '@sinclair/typebox';
import { ConnectionView } from '../../engine/views/schemas.js';
import { PageOf, PageQuery, RefTo } from '../shared/schemas.js';

export const ConnectionsQuery = Type.Object(
  {
    listener: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    state: Type.Optional(
      Type.Union([Type.Literal('connecting'), Type.Literal('open'), Type.Literal('closing')]),
    ),
    ...PageQuery,
  },
  { additionalProperties: false },
);

export const ConnectionPage = PageOf(RefTo(ConnectionView));

export const SummaryQuery = Type.Object(
  {
    top: Type.Integer({
      minimum: 0,
      maximum: 20,
      default: 10,
      description: 'Connections in each of oldest and busiest (0..20)',
    }),
  },
  { additionalProperties: false },
);

export const CloseConnectionQuery = Type.Object(
  {
    mode: Type.Union([Type.Literal('graceful'), Type.Literal('abort')], {
      default: 'graceful',
    }),
  },
  { additionalProperties: false },
);
