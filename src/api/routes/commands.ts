// Commands: create and stop listeners, close connections, cancel one in-flight op. Every input
// is validated by its schema before the engine is touched.
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ConfigError } from '../../config/config-error.js';
import { StateWriteError } from '../../config/lifecycle.js';
import { listenerFromInput } from '../../config/listener-input.js';
import {
  isLoopbackIp,
  isWildcardIp,
  loopbackByAddress,
  matchTarget,
  type Resolver,
  systemResolver,
  type TargetRule,
  unmapIp,
} from '../../config/netrules.js';
import { ListenerInput } from '../../config/schema.js';
import { ListenError } from '../../engine/engine.js';
import type { ListenerConfig, TargetAddress } from '../../engine/options.js';
import type { ConfigControlLike, EngineControlLike } from '../control.js';
import { errorBody } from '../errors.js';
import { RefTo } from '../schemas/engine.js';
import { ErrorRef } from '../schemas/error.js';

const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

const CancelOutcome = Type.Object(
  {
    record: Type.String(),
    op: Type.String(),
    key: Type.String(),
    connection: Type.Union([Type.String(), Type.Null()]),
    listener: Type.Union([Type.String(), Type.Null()]),
    cancelRequested: Type.Boolean({
      description:
        'The kernel accepted the cancel (CancelIoEx on Windows, IORING_OP_ASYNC_CANCEL on Linux)',
    }),
    cancelError: Type.Union([Type.String(), Type.Null()], {
      description:
        'Why the cancel was not requested, e.g. ERROR_NOT_FOUND when the op completed first',
    }),
    completed: Type.Boolean({
      description: 'The op completion was dequeued within 2 s of the request',
    }),
    status: Type.Union([Type.String(), Type.Null()], {
      description: 'Its final status, e.g. ERROR_OPERATION_ABORTED',
    }),
    bytes: Type.Union([Type.Integer(), Type.Null()]),
  },
  { $id: 'CancelOutcome' },
);

/** Who may create which listeners (docs/security.md). */
export interface ListenerPolicy {
  /** Without a token, listeners may only bind loopback addresses. */
  tokenConfigured: boolean;
  /** Forward targets allowed; null = anything (but never the API itself). */
  allowTargets: TargetRule[] | null;
  resolve?: Resolver;
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Every address of this machine, for a target that would reach an API bound to 0.0.0.0/::. */
function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) out.add(unmapIp(a.address));
  return out;
}

/**
 * Why this listener may not be created, or null. `api` is where the API itself listens: a
 * forward to it would serve the API (without its Host checks' protection from the network, on a
 * data port that may be bound wider) to whoever reaches that listener.
 */
async function refusal(
  config: ListenerConfig,
  policy: ListenerPolicy,
  api: { address: string; port: number }[],
): Promise<string | null> {
  const resolve = policy.resolve ?? systemResolver;
  if (!policy.tokenConfigured) {
    const r = await loopbackByAddress(config.host, resolve);
    if (!r.ok) {
      return (
        `body/address: ${formatHostPort(config.host, config.port)} refused: without an API token, listeners may only bind ` +
        `loopback addresses (${r.why}), or any local process or web page could open this machine to the network. ` +
        'To allow other addresses, configure a token (KEYPORT_TOKEN_FILE or api.tokenFile): commands then need it.'
      );
    }
  }
  if (config.mode !== 'forward') return null;
  const targets = config.targets ?? (config.target ? [config.target] : []);
  for (const [i, target] of targets.entries()) {
    const why = await targetRefused(target, policy, api, resolve);
    if (why) return `${config.targets ? `body/targets/${i}` : 'body/target'}: ${why}`;
  }
  return null;
}

/** Why a forward target is refused (the API itself, or outside api.allowTargets), or null. */
async function targetRefused(
  target: TargetAddress,
  policy: ListenerPolicy,
  api: { address: string; port: number }[],
  resolve: (host: string) => Promise<string[]>,
): Promise<string | null> {
  const shown = formatHostPort(target.host, target.port);
  let addresses: string[] = [];
  if (isIP(target.host)) addresses = [target.host];
  else {
    try {
      addresses = await resolve(target.host);
    } catch {
      addresses = [];
    }
  }
  const samePort = api.filter((a) => a.port === target.port);
  if (samePort.length > 0) {
    const local = samePort.some((a) => isWildcardIp(a.address)) ? localAddresses() : null;
    for (const t of addresses) {
      const u = unmapIp(t);
      if (
        isLoopbackIp(u) ||
        isWildcardIp(u) ||
        samePort.some((a) => unmapIp(a.address) === u) ||
        local?.has(u)
      ) {
        return (
          `${shown} refused: it is keyport's own API address, and a forward to it would expose the API ` +
          "on a data port (to whoever can reach that listener, bypassing the API's own bind and checks)"
        );
      }
    }
  }
  if (policy.allowTargets && !matchTarget(policy.allowTargets, target, addresses)) {
    return (
      `${shown} refused: it matches no rule of api.allowTargets (${policy.allowTargets.map((r) => r.text).join(', ') || 'empty: no forward target is allowed'})` +
      (addresses.length > 0 && !isIP(target.host) ? `; it resolves to ${addresses.join(', ')}` : '')
    );
  }
  return null;
}

function apiAddresses(app: { addresses(): (string | { address: string; port: number })[] }) {
  return app.addresses().filter((a) => typeof a === 'object');
}

export const commandRoutes: FastifyPluginAsyncTypebox<{
  control: EngineControlLike;
  policy?: ListenerPolicy;
  /** Records API listeners in the state file (when one is configured). */
  config?: ConfigControlLike;
}> = async (app, { control, policy, config: keeper }) => {
  app.addSchema(ListenerInput);
  app.addSchema(CancelOutcome);
  const security = [{ bearer: [] }];

  app.post(
    '/listeners',
    {
      schema: {
        operationId: 'createListener',
        summary: 'Start a listener',
        tags: ['commands'],
        security,
        body: RefTo(ListenerInput),
        response: {
          201: Type.Ref('Listener'),
          400: ErrorRef,
          401: ErrorRef,
          403: ErrorRef,
          409: ErrorRef,
          500: ErrorRef,
        },
      },
    },
    async (req, reply) => {
      let config: ReturnType<typeof listenerFromInput>;
      try {
        config = listenerFromInput(req.body, 'body');
      } catch (err) {
        if (err instanceof ConfigError) return reply.code(400).send(errorBody(400, err.message));
        throw err;
      }
      const why = await refusal(
        config,
        policy ?? { tokenConfigured: true, allowTargets: null },
        apiAddresses(app),
      );
      if (why) return reply.code(403).send(errorBody(403, why));
      try {
        // After any reload under way (which checks the addresses API listeners hold), and
        // recorded in the state file before the answer.
        const create = async () => {
          const l = await control.createListener(config);
          keeper?.apiCreated(l.id, req.body, config);
          return l;
        };
        const l = await (keeper ? keeper.serial(create) : create());
        return reply.code(201).header('location', `/listeners/${l.id}`).send(l);
      } catch (err) {
        if (err instanceof StateWriteError)
          return reply.code(500).send(errorBody(500, err.message));
        if (err instanceof ListenError) {
          const status = err.inUse || err.atLimit ? 409 : 400;
          return reply.code(status).send(errorBody(status, err.message));
        }
        throw err;
      }
    },
  );

  app.delete(
    '/listeners/:id',
    {
      schema: {
        operationId: 'closeListener',
        summary:
          'Stop a listener: drain (refuse new clients, let connections finish until the deadline) or abort',
        tags: ['commands'],
        security,
        params: IdParams,
        querystring: Type.Object(
          {
            mode: Type.Union([Type.Literal('drain'), Type.Literal('abort')], { default: 'drain' }),
            deadlineMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 30_000 }),
          },
          { additionalProperties: false },
        ),
        response: { 202: Type.Ref('Listener'), 401: ErrorRef, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const l = control.closeListener(req.params.id, req.query.mode, req.query.deadlineMs);
      if (!l) return reply.code(404).send(errorBody(404, `no listener ${req.params.id}`));
      keeper?.apiClosed(l.id);
      return reply.code(202).send(l);
    },
  );

  app.delete(
    '/connections/:id',
    {
      schema: {
        operationId: 'closeConnection',
        summary: 'Close a connection: graceful (its peers get EOF) or abort (RST)',
        tags: ['commands'],
        security,
        params: IdParams,
        querystring: Type.Object(
          {
            mode: Type.Union([Type.Literal('graceful'), Type.Literal('abort')], {
              default: 'graceful',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 202: Type.Ref('Connection'), 401: ErrorRef, 404: ErrorRef },
      },
    },
    async (req, reply) => {
      const c = control.closeConnection(req.params.id, req.query.mode);
      if (!c) return reply.code(404).send(errorBody(404, `no connection ${req.params.id}`));
      return reply.code(202).send(c);
    },
  );

  app.delete(
    '/ops/:record',
    {
      schema: {
        operationId: 'cancelOp',
        summary:
          'Cancel one in-flight op (CancelIoEx on its OVERLAPPED; io_uring: ASYNC_CANCEL) and report what became of it',
        tags: ['commands'],
        security,
        params: Type.Object(
          {
            record: Type.String({
              pattern: '^0x[0-9a-fA-F]{1,16}$',
              description: 'The record address from GET /ops',
            }),
          },
          { additionalProperties: false },
        ),
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
};
