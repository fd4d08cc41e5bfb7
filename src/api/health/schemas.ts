import { type Static, Type } from '@sinclair/typebox';

export const HealthResponse = Type.Object(
  {
    status: Type.Literal('ok'),
    uptimeSeconds: Type.Number({ minimum: 0, description: 'Seconds since the engine started' }),
    version: Type.String({ description: 'keyport version' }),
  },
  { additionalProperties: false, description: 'The process is up and serving HTTP' },
);
export type HealthResponse = Static<typeof HealthResponse>;
