// What every operation of the OpenAPI says about the API's cross-cutting rules, filled in from
// those rules rather than repeated by each route (a route's own answer wins): who may call it
// (`security`: none for the routes marked `config: { public: true }`, as src/api/auth.ts reads
// the same mark) and the 4xx answers the API's hooks give before any handler runs
// (src/api/safety.ts, src/api/auth.ts, schema validation). `redocly lint` (CI) holds the result
// to the recommended rules.
import { Type } from '@sinclair/typebox';
import type { RouteOptions } from 'fastify';
import { ErrorResponse } from '../shared/schemas.js';

const errorAnswer = (description: string) => Type.Ref(ErrorResponse.$id as string, { description });

/** Answers a hook can give on any route, by status. */
const COMMON = {
  403: errorAnswer(
    'Refused cross-origin request: a command from another origin, or a cross-site read that is not a top-level navigation (docs/security.md)',
  ),
  421: errorAnswer(
    'The Host header names neither loopback, the API address nor api.allowedHosts (DNS rebinding defence)',
  ),
};

const BAD_INPUT = errorAnswer(
  'A path parameter, query string or body that the schema refuses (unknown query parameters too); the message names the field',
);
const TOO_LARGE = errorAnswer('The body is larger than api.bodyLimitBytes (16 KiB by default)');
const NOT_JSON = errorAnswer('The body is not application/json');
const UNAUTHORIZED = errorAnswer(
  'Missing or invalid bearer token: commands need it whenever a token is configured, reads too with api.protect = "all"',
);

/** Without a token nothing needs one; the spec says what a token, once configured, protects. */
const READ_SECURITY = [{}, { bearer: [] }];
const COMMAND_SECURITY = [{ bearer: [] }];

/** An onRoute hook: run it after the public mark is set (auth.ts installAuth). */
export function documentRoute(route: RouteOptions): void {
  const schema = route.schema as Record<string, unknown> | undefined;
  if (!schema || schema.hide) return;
  const methods = [route.method].flat();
  const read = methods.every((m) => m === 'GET' || m === 'HEAD');
  schema.security ??= route.config?.public ? [] : read ? READ_SECURITY : COMMAND_SECURITY;
  schema.response ??= {};
  const response = schema.response as Record<string, unknown>;
  const add = (status: number, answer: unknown) => {
    response[status] ??= answer;
  };
  if (schema.params || schema.querystring || schema.body) add(400, BAD_INPUT);
  if (schema.body) {
    add(413, TOO_LARGE);
    add(415, NOT_JSON);
  }
  if ((schema.security as unknown[]).length > 0) add(401, UNAUTHORIZED);
  for (const [status, answer] of Object.entries(COMMON)) add(Number(status), answer);
}
