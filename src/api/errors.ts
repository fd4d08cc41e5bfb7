import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorResponse } from './shared/schemas.js';

export function errorBody(statusCode: number, message: string): ErrorResponse {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message };
}

/**
 * Map any error to the uniform body. Client errors keep their message (Fastify's validation
 * messages name the field, e.g. "querystring/limit must be >= 1"); server errors are logged and
 * answered generically so internals and stacks never reach the client.
 */
export function sendError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status =
    error.validation !== undefined
      ? 400
      : typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode <= 599
        ? error.statusCode
        : 500;
  if (status >= 500) {
    request.log.error({ err: error }, 'request failed');
    void reply
      .code(status)
      .send(errorBody(status, STATUS_CODES[status] ?? 'Internal Server Error'));
    return;
  }
  let message = validationMessage(error) ?? error.message;
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    message = `content-type ${request.headers['content-type'] ?? '(none)'} is not accepted: send application/json`;
  }
  void reply.code(status).send(errorBody(status, message));
}

/**
 * Names the offending field, including the unknown one for additionalProperties. A value that
 * matches no member of a union (a target object with a bad weight) gets the error that reached
 * deepest into it (`body/targets/1/weight must be >= 1`, not `body/targets/1 must be string`).
 */
function validationMessage(error: FastifyError): string | null {
  let first = error.validation?.[0];
  if (!first) return null;
  const depth = (e: typeof first) =>
    (e?.instancePath ?? '').length * 2 + (e?.keyword === 'additionalProperties' ? 1 : 0);
  for (const e of error.validation ?? []) if (depth(e) > depth(first)) first = e;
  const where = `${error.validationContext ?? 'request'}${first.instancePath ?? ''}`;
  const params = first.params as { additionalProperty?: string } | undefined;
  if (first.keyword === 'additionalProperties' && params?.additionalProperty) {
    return `${where}/${params.additionalProperty}: unknown field`;
  }
  return `${where} ${first.message ?? 'is invalid'}`;
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler(sendError);
  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .send(errorBody(404, `no route ${request.method} ${request.url.split('?')[0]}`));
  });
}
