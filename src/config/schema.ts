// The shapes an operator writes: a listener (config file and POST /listeners share it) and the
// config file. TypeBox schemas, so the same definition validates input and documents it.
import { type Static, Type } from '@sinclair/typebox';

export const ListenerInput = Type.Object(
  {
    address: Type.String({
      minLength: 3,
      maxLength: 300,
      description: 'HOST:PORT to listen on; IPv6 in brackets ([::1]:7007); port 0 = ephemeral',
      examples: ['127.0.0.1:7007'],
    }),
    mode: Type.Union([Type.Literal('echo'), Type.Literal('forward')]),
    target: Type.Optional(
      Type.String({
        minLength: 3,
        maxLength: 300,
        description: 'forward only: HOST:PORT of the upstream; a name is resolved at each connect',
        examples: ['127.0.0.1:5201'],
      }),
    ),
    targets: Type.Optional(
      Type.Array(
        Type.Union([
          Type.String({ minLength: 3, maxLength: 300, description: 'HOST:PORT' }),
          Type.Object(
            {
              address: Type.String({ minLength: 3, maxLength: 300, description: 'HOST:PORT' }),
              weight: Type.Optional(
                Type.Integer({
                  minimum: 1,
                  maximum: 100,
                  description: 'Share of new connections relative to the other targets (default 1)',
                }),
              ),
            },
            { additionalProperties: false },
          ),
        ]),
        {
          minItems: 1,
          maxItems: 64,
          description:
            'forward only, instead of target: several upstreams, balanced by `balance`, each with passive (and optionally active) health; a connect failure to one is retried on the next within connectTimeoutMs (docs/balancing.md)',
          examples: [['10.0.0.5:8080', { address: '10.0.0.6:8080', weight: 2 }]],
        },
      ),
    ),
    balance: Type.Optional(
      Type.Union(
        [
          Type.Literal('round-robin'),
          Type.Literal('least-connections'),
          Type.Literal('random-two'),
        ],
        {
          description:
            "forward with targets: 'round-robin' (default; smooth weighted), 'least-connections' (fewest open per weight), 'random-two' (two weighted-random picks, the less loaded)",
        },
      ),
    ),
    health: Type.Optional(
      Type.Object(
        {
          failures: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 1000,
              description:
                'Consecutive connect failures that eject a target for a cool-down (default 3; 0 = never eject)',
            }),
          ),
          ejectMs: Type.Optional(
            Type.Integer({
              minimum: 100,
              maximum: 3_600_000,
              description:
                'The first cool-down; each ejection in a row doubles it up to maxEjectMs (default 10000)',
            }),
          ),
          maxEjectMs: Type.Optional(
            Type.Integer({
              minimum: 100,
              maximum: 86_400_000,
              description: 'The longest cool-down (default 60000)',
            }),
          ),
          check: Type.Optional(
            Type.Object(
              {
                intervalMs: Type.Optional(
                  Type.Integer({ minimum: 100, maximum: 3_600_000, description: 'default 5000' }),
                ),
                timeoutMs: Type.Optional(
                  Type.Integer({ minimum: 10, maximum: 600_000, description: 'default 2000' }),
                ),
                rise: Type.Optional(
                  Type.Integer({
                    minimum: 1,
                    maximum: 100,
                    description: 'Good checks in a row that bring a down target up (default 2)',
                  }),
                ),
                fall: Type.Optional(
                  Type.Integer({
                    minimum: 1,
                    maximum: 100,
                    description: 'Failed checks in a row that take a target down (default 3)',
                  }),
                ),
              },
              {
                additionalProperties: false,
                description:
                  "Active checks: a TCP connect to each target every intervalMs (HAProxy's `check`); off when absent",
              },
            ),
          ),
        },
        {
          additionalProperties: false,
          description: "forward: the targets' health (docs/balancing.md)",
        },
      ),
    ),
    acceptDepth: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1024,
        description: 'AcceptEx ops kept posted (default 32)',
      }),
    ),
    maxConnections: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description:
          'At the limit no accept is posted: new clients wait in the backlog (default 10000)',
      }),
    ),
    onLimit: Type.Optional(
      Type.Union([Type.Literal('wait'), Type.Literal('reset')], {
        description:
          "At maxConnections: 'wait' (default) lets new clients queue in the kernel backlog; 'reset' resets them at once",
      }),
    ),
    maxConnectionsPerSource: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description:
          'Connections at once from one client IP; more from it are reset right after accept, before any read (default: no limit)',
      }),
    ),
    allow: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        maxItems: 1024,
        description:
          'Clients served, as CIDRs or addresses (IPv4 and IPv6); others are reset right after accept, before any read or upstream connect. Empty or absent: every address',
        examples: [['10.0.0.0/8', 'fd00::/8']],
      }),
    ),
    deny: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        maxItems: 1024,
        description:
          'Clients refused (reset right after accept), as CIDRs or addresses; deny wins over allow',
        examples: [['192.0.2.0/24']],
      }),
    ),
    idleTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 86_400_000,
        description: 'Close after this long without traffic; 0 = never (default 300000)',
      }),
    ),
    idleMinBytes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_073_741_824,
        description:
          'Bytes that must arrive in each idleTimeoutMs window, or the connection is closed (default 1: any traffic; raise it to cut off trickling slowloris clients)',
      }),
    ),
    connectTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 600_000,
        description: 'forward: upstream connect timeout (default 10000)',
      }),
    ),
    closeTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 3_600_000,
        description:
          'A graceful close (DELETE /connections/{id}, idle or too-slow timeout) stops reading and delivers what was already read; what is still undelivered after this long is reset. 0 = no limit (default 10000)',
      }),
    ),
    proxyProtocol: Type.Optional(
      Type.Object(
        {
          send: Type.Optional(
            Type.Union([Type.Literal('v1'), Type.Literal('v2')], {
              description:
                "forward: start each upstream connection with a PROXY header of this version naming the client and the address it reached (HAProxy's send-proxy / send-proxy-v2)",
            }),
          ),
          accept: Type.Optional(
            Type.Boolean({
              description:
                "Require a PROXY header (v1 or v2) from each client (a load balancer in front) before anything is relayed; the connection then shows, logs and forwards the client it names. A missing, malformed or late header resets the connection (close reason kind proxy-header). HAProxy's accept-proxy",
            }),
          ),
          timeoutMs: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 600_000,
              description: 'accept: time a client has to send its whole header (default 5000)',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'The PROXY protocol (versions 1 and 2), to pass the client address along',
        },
      ),
    ),
  },
  { $id: 'ListenerInput', additionalProperties: false },
);
export type ListenerInput = Static<typeof ListenerInput>;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const ConfigFile = Type.Object(
  {
    api: Type.Optional(
      Type.Object(
        {
          address: Type.Optional(
            Type.String({ description: 'HOST:PORT of the control plane (default 127.0.0.1:9180)' }),
          ),
          tokenFile: Type.Optional(
            Type.String({ description: 'File holding the bearer token that protects commands' }),
          ),
          protect: Type.Optional(
            Type.Union([Type.Literal('commands'), Type.Literal('all')], {
              description:
                "What the token protects: commands only (default), or 'all': every route but /healthz, /readyz, the API description (/openapi.json, /docs) and the status page's shell (/ and /ui/*, which carry no engine data)",
            }),
          ),
          allowedHosts: Type.Optional(
            Type.Array(
              Type.String({
                minLength: 1,
                maxLength: 253,
                pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9.])?$|^\\[[0-9A-Fa-f:.]+\\]$',
              }),
              {
                maxItems: 64,
                description:
                  'Host names (or IP literals) the API answers to in the Host header, besides loopback names and literals and its own bound address; any other Host is answered 421 (DNS-rebinding defence). Any port.',
                examples: [['keyport.internal.example']],
              },
            ),
          ),
          allowTargets: Type.Optional(
            Type.Array(Type.String({ minLength: 1, maxLength: 300 }), {
              maxItems: 256,
              description:
                "Forward targets POST /listeners may use: CIDR or IP (any port), HOST:PORT, HOST:*, *:PORT, [IPv6/CIDR]:PORT. Default: anything. A name rule matches the target as written; a CIDR rule every address the target resolves to. The API's own address is always refused.",
              examples: [['10.0.0.0/8', 'db.internal.example:5432']],
            }),
          ),
          maxEventClients: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 10_000,
              description:
                'Concurrent GET /events streams; one more is answered 503 with Retry-After (default 32)',
            }),
          ),
          threadShare: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              maximum: 1,
              description:
                "The API's share of the engine's thread under sustained load (default 0.02): requests beyond it wait their turn, so clients looping over the views cannot starve the traffic. One request, or a status page's poll, is never slowed (a 25 ms burst).",
            }),
          ),
          bodyLimitBytes: Type.Optional(
            Type.Integer({
              minimum: 256,
              maximum: 1_048_576,
              description: 'Largest request body (default 16384)',
            }),
          ),
          maxConnections: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 100_000,
              description:
                "The API server's own TCP connections at once; one more is closed as soon as it is accepted (default 64)",
            }),
          ),
          requestTimeoutMs: Type.Optional(
            Type.Integer({
              minimum: 100,
              maximum: 600_000,
              description:
                'A request (headers and body) must arrive within this time, or its socket is closed (default 10000)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    backend: Type.Optional(
      Type.Union([Type.Literal('auto'), Type.Literal('iocp'), Type.Literal('uring')]),
    ),
    logLevel: Type.Optional(Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)))),
    shutdownDeadlineMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
    stateFile: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description:
          "Where listeners created or removed over the API (POST /listeners, DELETE /listeners/{id}) are kept, so a restart brings them back (docs/reload.md). Written atomically (temp file, fsync, rename) on each change; read at start-up after the config file's listeners. An address named by both files stops start-up (exit 2). Holds listener inputs only, never the token. The --state-file flag overrides it. Default: none (API listeners last until the process ends)",
        examples: ['C:\\keyport\\state.json', '/var/lib/keyport/state.json'],
      }),
    ),
    engine: Type.Optional(
      Type.Object(
        {
          bufferSize: Type.Optional(
            Type.Integer({
              minimum: 512,
              maximum: 1_048_576,
              description:
                'Bytes per I/O buffer; a relay direction holds at most one while data flows (default 65536)',
            }),
          ),
          traceDepth: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 1024,
              description: 'Completions kept per connection for its trace (default 16)',
            }),
          ),
          splicePipes: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 65_536,
              description:
                'io_uring: a relay direction that keeps filling whole buffers moves its bytes socket to pipe to socket with splice (no copy to user memory); at most this many pipes at once, two descriptors each; 0 = never splice (default 1024)',
            }),
          ),
          maxListeners: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 4096,
              description:
                'Listeners at once (config file and POST /listeners; closing and draining ones count); POST /listeners past it is answered 409 (default 256)',
            }),
          ),
          maxConnections: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 1_000_000,
              description:
                'Client connections at once across every listener; one more is reset right after accept, before any read (default 16384)',
            }),
          ),
          parkAfterMs: Type.Optional(
            Type.Integer({
              minimum: 10,
              maximum: 3_600_000,
              description:
                'IOCP (and io_uring before 5.19): a read pending this long without data gives its buffer back and waits with a zero-byte read (default 1000); io_uring 5.19+ reads into buffers the kernel picks on arrival, so no read holds one while waiting',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    listeners: Type.Optional(Type.Array(ListenerInput, { maxItems: 4096 })),
    accessLog: Type.Optional(
      Type.Object(
        {
          to: Type.String({
            minLength: 1,
            maxLength: 4096,
            description:
              "Where the access log goes: one JSON line per closed connection (docs/access-log.md). 'off' (the default), 'stdout' (interleaved with keyport's own log; under Wine that is the launcher's log file), or a file path (absolute is best), written asynchronously and rotated by size. The --access-log flag overrides it",
            examples: ['C:\\keyport\\logs\\keyport-access.log', '/var/log/keyport-access.log'],
          }),
          maxBytes: Type.Optional(
            Type.Integer({
              minimum: 1024,
              maximum: 1_099_511_627_776,
              description:
                'A file: when the next line would take it past this size, it is renamed FILE.1 (FILE.1 to FILE.2, …) and a new one started; no line is split across files (default 10485760, 10 MiB)',
            }),
          ),
          keep: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 1000,
              description:
                'Rotated files kept, FILE.1 (the newest) to FILE.keep; the oldest beyond is removed; 0 = none kept (default 5)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ConfigFile = Static<typeof ConfigFile>;

/** The state file: the listeners created over the API, as their POST /listeners bodies. */
export const StateFile = Type.Object(
  {
    version: Type.Literal(1),
    listeners: Type.Array(ListenerInput, { maxItems: 4096 }),
  },
  { additionalProperties: false },
);
export type StateFile = Static<typeof StateFile>;
