// GET /config's and POST /config/reload's answers.
import { Type } from '@sinclair/typebox';
import { ListenerInput } from '../../config/schema.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) =>
  Type.Union([t, Type.Null()]);

export const EffectiveListener = Type.Object(
  {
    id: Type.String({ description: 'The running listener (GET /listeners/{id})' }),
    source: Type.Union(
      [Type.Literal('config'), Type.Literal('cli'), Type.Literal('default'), Type.Literal('api')],
      {
        description:
          "Where it comes from: the config file (a reload changes it), --listener flags or the built-in default (fixed until a restart), or the API ('api': POST /listeners; kept in the state file when one is configured; a reload leaves it alone)",
      },
    ),
    ...ListenerInput.properties,
  },
  { $id: 'EffectiveListener', additionalProperties: false },
);

export const EffectiveConfig = Type.Object(
  {
    configFile: Nullable(
      Type.String({ description: 'The config file read (null: flags and environment only)' }),
    ),
    stateFile: Nullable(
      Type.String({ description: 'Where API listeners are kept (null: not kept)' }),
    ),
    api: Type.Object(
      {
        address: Type.String({ description: 'As configured (port 0: the log names the port)' }),
        token: Nullable(
          Type.Literal('redacted', {
            description:
              "'redacted' when a token is configured (it is never shown, here or anywhere), null when none is",
          }),
        ),
        tokenFile: Nullable(
          Type.String({
            description: 'The file the token was read from (its path, not its content)',
          }),
        ),
        tokenFrom: Nullable(
          Type.String({
            description: 'Where the token came from: a file path, or KEYPORT_TOKEN (the variable)',
          }),
        ),
        protect: Type.Union([Type.Literal('commands'), Type.Literal('all')]),
        allowedHosts: Type.Array(Type.String()),
        allowTargets: Nullable(Type.Array(Type.String())),
        maxEventClients: Type.Integer(),
        threadShare: Nullable(Type.Number()),
        maxConnections: Type.Integer(),
        bodyLimitBytes: Type.Integer(),
        requestTimeoutMs: Type.Integer(),
      },
      { additionalProperties: false },
    ),
    backend: Type.String({ description: 'As configured: auto, iocp or uring' }),
    backendInUse: Type.String({ description: 'The backend running' }),
    logLevel: Type.String(),
    shutdownDeadlineMs: Type.Integer(),
    engine: Type.Object(
      {
        bufferSize: Type.Integer(),
        traceDepth: Type.Integer(),
        inlineBudgetMs: Type.Number(),
        parkAfterMs: Type.Integer(),
        splicePipes: Type.Integer(),
        maxListeners: Type.Integer(),
        maxConnections: Type.Integer(),
      },
      { additionalProperties: false, description: 'With the defaults filled in' },
    ),
    accessLog: Type.Object(
      { to: Type.String(), maxBytes: Type.Integer(), keep: Type.Integer() },
      { additionalProperties: false },
    ),
    listeners: Type.Array(Type.Ref('EffectiveListener'), {
      description:
        'Listeners accepting now, as their inputs were written (config file entry or POST /listeners body); draining ones are left out',
    }),
  },
  {
    $id: 'EffectiveConfig',
    additionalProperties: false,
    description:
      'The configuration in effect: the config file merged with the environment and flags, plus listeners added over the API. The token is never shown.',
  },
);

export const ListenerChange = Type.Object(
  {
    id: Type.String(),
    address: Type.String(),
    mode: Type.Union([Type.Literal('echo'), Type.Literal('forward')]),
    previousId: Type.Optional(
      Type.String({ description: 'replaced: the old listener, draining (its connections finish)' }),
    ),
  },
  { $id: 'ListenerChange', additionalProperties: false },
);

export const ReloadResult = Type.Object(
  {
    added: Type.Array(Type.Ref('ListenerChange'), { description: 'New listeners, started' }),
    removed: Type.Array(Type.Ref('ListenerChange'), {
      description:
        'Listeners no longer in the file: draining (no new clients; connections left at shutdownDeadlineMs are reset, as DELETE /listeners/{id}?mode=drain)',
    }),
    replaced: Type.Array(Type.Ref('ListenerChange'), {
      description:
        'Same address, other options: the old one stopped accepting and closed its socket, the new one bound the address; the old connections run on until they end',
    }),
    unchanged: Type.Integer({ minimum: 0 }),
    failed: Type.Array(
      Type.Object(
        { address: Type.String(), error: Type.String() },
        { additionalProperties: false },
      ),
      { description: 'Valid changes the system refused (e.g. an address held by another process)' },
    ),
    needsRestart: Type.Array(Type.String(), {
      description:
        'Fields that differ in the file but are not applied by a reload (e.g. api.address, backend, engine.*): a restart applies them',
    }),
  },
  { $id: 'ReloadResult', additionalProperties: false },
);
