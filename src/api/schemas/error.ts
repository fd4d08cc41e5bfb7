import { type Static, Type } from '@sinclair/typebox';

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
