// Schemas every resource uses: the one error shape, an id in the path, pagination; and the
// plugin that registers the shared components (the error and the engine's views) at the root,
// where every resource plugin can refer to them.
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import fp from 'fastify-plugin';
import {
  ConnectionDetail,
  ConnectionView,
  KeyOwner,
  KeyView,
  ListenerView,
  OpView,
  Readiness,
  TraceEntryView,
  UpstreamView,
} from '../../engine/views/schemas.js';

export { RefTo } from '../../engine/views/schemas.js';

/** The one error shape every route returns (also 404s and framework errors). */
export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer({ minimum: 400, maximum: 599 }),
    error: Type.String({ description: 'HTTP reason phrase, e.g. "Bad Request"' }),
    message: Type.String({ description: 'What went wrong; names the offending field for 400s' }),
  },
  { $id: 'ErrorResponse', additionalProperties: false },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

/** Reference to the shared schema, for route `response` maps (e.g. `404: ErrorRef`). */
export const ErrorRef = Type.Ref(ErrorResponse.$id as string);

/** A listener's or a connection's id in the path. */
export const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

/** offset + limit of every paginated collection (the same bounds everywhere). */
export const PageQuery = {
  offset: Type.Integer({ minimum: 0, default: 0, description: 'Items to skip' }),
  limit: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 100,
    description: 'Items in the page (1..1000)',
  }),
};

/** A page of a collection: `total` counts every item matching the filter, not just the page. */
export const PageOf = <T extends TSchema>(item: T) =>
  Type.Object({
    total: Type.Integer({ description: 'Items matching the filter, all pages together' }),
    offset: Type.Integer(),
    limit: Type.Integer(),
    items: Type.Array(item),
  });

/**
 * Registers the shared components. It must break encapsulation (fastify-plugin without
 * `encapsulate`): a schema added inside an encapsulated plugin is seen by that plugin alone.
 */
export const sharedSchemas = fp(
  async (app) => {
    app.addSchema(ErrorResponse);
    // The engine's views, the referenced before those that refer to them.
    for (const s of [
      KeyOwner,
      TraceEntryView,
      UpstreamView,
      ListenerView,
      ConnectionView,
      ConnectionDetail,
      KeyView,
      OpView,
      Readiness,
    ])
      app.addSchema(s);
  },
  { name: 'keyport-schemas', fastify: '5.x' },
);
