// Response schemas of the engine views: they are the engine's own (src/engine/views/schemas.ts,
// where the snapshot types are derived from them). The page helpers are the API's.
import { type TSchema, Type } from '@sinclair/typebox';

export * from '../../engine/views/schemas.js';

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
