// The shapes of what the engine shows: the snapshots EngineControl hands out (listeners, their
// upstreams, connections with their completion trace, keys, ops, the summaries, readiness), as
// JSON Schema. The snapshot types are derived from these (Static), so the engine builds exactly
// what the API documents: the API registers them as shared components and refers to them.
// TypeBox only, nothing of HTTP: the shape lives with its producer.
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { OP_KINDS } from '../backend.js';

/**
 * A `$ref` to a schema known by its `$id` (the API registers these as shared components), typed
 * as the schema itself: the OpenAPI then names the component instead of repeating it inline.
 */
export const RefTo = <T extends TSchema>(schema: T) =>
  Type.Unsafe<Static<T>>(Type.Ref(schema.$id as string));

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const KeyOwner = Type.Object(
  {
    kind: Type.Union([
      Type.Literal('listener'),
      Type.Literal('connection'),
      Type.Literal('engine'),
      Type.Literal('check'),
    ]),
    id: Type.String({
      description: 'The listener, connection or engine part; for a check, its listener',
    }),
    side: Type.Optional(Type.Union([Type.Literal('client'), Type.Literal('upstream')])),
    target: Type.Optional(
      Type.String({ description: 'check: the upstream target an active health check dials' }),
    ),
  },
  { $id: 'KeyOwner', description: 'Who a completion key belongs to' },
);
export type KeyOwnerSnapshot = Static<typeof KeyOwner>;

const NullableTime = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

export const UpstreamView = Type.Object(
  {
    target: Type.String({ description: 'HOST:PORT as configured', example: '10.0.0.5:8080' }),
    weight: Type.Integer({ description: 'Share of new connections relative to the others' }),
    state: Type.Union([Type.Literal('up'), Type.Literal('ejected'), Type.Literal('down')], {
      description:
        'up; ejected: consecutive connect failures, cooling down until ejectedUntil; down: active checks fail',
    }),
    connections: Type.Integer({ description: 'Client connections sent to it now' }),
    connectionsTotal: Type.Integer({ description: 'Client connections it accepted, ever' }),
    connectFailuresTotal: Type.Integer(),
    consecutiveFailures: Type.Integer(),
    ejectedUntil: NullableTime,
    ejectionsTotal: Type.Integer(),
    lastError: Nullable(Type.String({ description: 'The last connect error to it' })),
    lastErrorAt: NullableTime,
    check: Type.Union(
      [
        Type.Object({
          state: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown')]),
          checksTotal: Type.Integer(),
          failuresTotal: Type.Integer(),
          lastError: Nullable(Type.String()),
          lastCheckAt: NullableTime,
        }),
        Type.Null(),
      ],
      { description: 'Active health checks (health.check); null when off' },
    ),
  },
  { $id: 'Upstream', description: "One of a forward listener's targets" },
);
export type UpstreamSnapshot = Static<typeof UpstreamView>;

export const ListenerView = Type.Object(
  {
    id: Type.String({ example: 'l1' }),
    mode: Type.Union([Type.Literal('echo'), Type.Literal('forward')]),
    address: Type.String({ description: 'Bound address', example: '127.0.0.1:7007' }),
    target: Type.Union([Type.String(), Type.Null()], {
      description: 'Forward target as configured (the first of several)',
    }),
    balance: Type.Union(
      [
        Type.Literal('round-robin'),
        Type.Literal('least-connections'),
        Type.Literal('random-two'),
        Type.Null(),
      ],
      { description: 'How new connections are spread over the targets; null for echo' },
    ),
    upstreams: Type.Array(RefTo(UpstreamView), {
      description: 'Forward: each target with its health and load (empty for echo)',
    }),
    state: Type.String({
      description:
        'listening | degraded (no accept posted: retrying after failures, see acceptError) | closing | draining | closed',
      example: 'listening',
    }),
    key: Type.Union([Type.String(), Type.Null()], {
      description: "The listener socket's completion key; every AcceptEx completes with it",
    }),
    acceptDepth: Type.Integer(),
    acceptsPending: Type.Integer({ description: 'AcceptEx operations posted now' }),
    connections: Type.Integer(),
    maxConnections: Type.Integer(),
    onLimit: Type.Union([Type.Literal('wait'), Type.Literal('reset')], {
      description:
        'At the limit: wait (clients queue in the backlog) or reset (the surplus is reset)',
    }),
    rejectedTotal: Type.Integer({
      description: 'Clients reset right after accept, before any read (the sum of rejected)',
    }),
    rejected: Type.Object(
      {
        'max-connections': Type.Integer({ description: 'At maxConnections with onLimit reset' }),
        'engine-max-connections': Type.Integer({ description: 'At engine.maxConnections' }),
        'per-source': Type.Integer({
          description: 'Their source IP was at maxConnectionsPerSource',
        }),
        denied: Type.Integer({ description: 'Refused by the allow/deny rules' }),
      },
      { description: 'Clients reset right after accept, by reason' },
    ),
    maxConnectionsPerSource: Type.Union([Type.Integer(), Type.Null()], {
      description: 'Connections at once from one source IP; null = no limit',
    }),
    allow: Type.Array(Type.String(), {
      description: 'CIDRs of the clients served (empty: every address)',
    }),
    deny: Type.Array(Type.String(), { description: 'CIDRs of clients refused; deny wins' }),
    proxyProtocol: Type.Object(
      {
        send: Type.Union([Type.Literal('v1'), Type.Literal('v2'), Type.Null()], {
          description: 'PROXY header version sent to the upstream, or null',
        }),
        accept: Type.Boolean({ description: 'A PROXY header is required from each client' }),
        timeoutMs: Type.Integer({ description: 'Time a client has to send its header' }),
      },
      { description: 'The PROXY protocol settings' },
    ),
    idleTimeoutMs: Type.Integer(),
    idleMinBytes: Type.Integer({ description: 'Bytes each idle window must bring' }),
    closeTimeoutMs: Type.Integer({
      description: 'How long a graceful close may take to deliver what was read before it resets',
    }),
    acceptPostsTotal: Type.Integer({
      description: 'Accept ops handed to the kernel since the listener started',
    }),
    acceptError: Type.Union([Type.String(), Type.Null()], {
      description: 'The last accept failure while the accept chain backs off; null once healthy',
    }),
    acceptErrorAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    connectTimeoutMs: Type.Integer(),
    acceptedTotal: Type.Integer(),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Listener' },
);
export type ListenerSnapshot = Static<typeof ListenerView>;

export const ConnectionView = Type.Object(
  {
    id: Type.String({ example: 'c1' }),
    listener: Type.String(),
    mode: Type.Union([Type.Literal('echo'), Type.Literal('forward')]),
    state: Type.String({ description: 'connecting | open | closing | closed' }),
    key: Type.String({ description: "The client socket's completion key (hex ULONG_PTR)" }),
    upstreamKey: Nullable(Type.String()),
    local: Nullable(Type.String()),
    remote: Nullable(Type.String()),
    upstream: Nullable(Type.String()),
    bytesIn: Type.Integer({ description: 'Bytes received from the client' }),
    bytesOut: Type.Integer({ description: 'Bytes sent to the client' }),
    upstreamBytesIn: Type.Union([Type.Integer(), Type.Null()]),
    upstreamBytesOut: Type.Union([Type.Integer(), Type.Null()]),
    opsInFlight: Type.Integer(),
    ageMs: Type.Integer(),
    idleMs: Type.Integer(),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Connection' },
);
export type ConnectionSnapshot = Static<typeof ConnectionView>;

export const TraceEntryView = Type.Object(
  {
    at: Type.Number({ description: 'ms since the epoch when the completion was handled' }),
    key: Type.Union([Type.String(), Type.Null()], {
      description:
        "The completion key as DEQUEUED from the port (the kernel's word); null when the op finished inline and no packet carried a key. An accept shows the LISTENER's key",
    }),
    expectedKey: Type.String({
      description: 'The key keyport associated the socket with (for an accept: the listener)',
    }),
    keyMismatch: Type.Boolean({
      description:
        'The dequeued key is not the expected one: the packet was refused and counted as an anomaly',
    }),
    record: Type.String({ description: 'Address of the extended OVERLAPPED record' }),
    op: Type.String(),
    side: Type.Union([Type.Literal('client'), Type.Literal('upstream')]),
    bytes: Type.Integer(),
    status: Type.String({ description: 'SUCCESS or the named Win32/Winsock (or errno) error' }),
    inline: Type.Boolean({
      description: 'Completed without a packet (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)',
    }),
    latencyUs: Type.Integer({ description: 'From issue to completion' }),
  },
  { $id: 'TraceEntry' },
);
export type TraceEntrySnapshot = Static<typeof TraceEntryView>;

export const ConnectionDetail = Type.Intersect(
  [RefTo(ConnectionView), Type.Object({ trace: Type.Array(RefTo(TraceEntryView)) })],
  {
    $id: 'ConnectionDetail',
  },
);
export type ConnectionDetailSnapshot = Static<typeof ConnectionDetail>;

export const KeyView = Type.Object(
  {
    key: Type.String({
      description: 'The completion key as a hex ULONG_PTR: generation << 32 | index',
    }),
    index: Type.Integer(),
    generation: Type.Integer(),
    owner: RefTo(KeyOwner),
    socket: Type.Integer({
      description: 'The SOCKET (or fd) associated under this key; -1 for the engine heartbeat',
    }),
    associatedAt: Type.String({ format: 'date-time' }),
    completions: Type.Integer({ description: 'Completions handled with this key' }),
    opsInFlight: Type.Integer(),
  },
  { $id: 'Key' },
);
export type KeySnapshot = Static<typeof KeyView>;

export const OpView = Type.Object(
  {
    record: Type.String({
      description: 'Address of the extended OVERLAPPED record (what the completion carries)',
    }),
    op: Type.String({ description: OP_KINDS.join(' | ') }),
    key: Type.String(),
    owner: Type.Union([RefTo(KeyOwner), Type.Null()]),
    connection: Nullable(Type.String()),
    listener: Nullable(Type.String()),
    issuedAt: Type.String({ format: 'date-time' }),
    ageMs: Type.Integer(),
    bufferSize: Type.Union([Type.Integer(), Type.Null()], {
      description: 'Bytes of the data buffer the op holds; null: none (a wait, or not chosen yet)',
    }),
    bufferSelect: Type.Boolean({
      description:
        'A recv whose buffer the kernel picks when data arrives (io_uring provided buffers): ' +
        'it holds none while it waits',
    }),
    splice: Type.Boolean({
      description:
        'The op moves bytes between its socket and a kernel pipe (io_uring splice of a bulk relay direction): no buffer',
    }),
  },
  { $id: 'Op' },
);
export type OpSnapshot = Static<typeof OpView>;

export const Readiness = Type.Object(
  {
    ready: Type.Boolean(),
    backend: Type.String(),
    listeners: Type.Integer(),
    loopTurning: Type.Boolean({
      description: 'A heartbeat packet went through the completion port in the last 10 s',
    }),
    lastHeartbeatAgeMs: Type.Union([Type.Integer(), Type.Null()]),
    degradedListeners: Type.Array(Type.String(), {
      description: 'Listeners with no accept posted (retrying after failures): not ready',
    }),
    anomalies: Type.Object(
      {
        stray: Type.Integer({ description: 'Completions naming a record with no op in flight' }),
        keyMismatch: Type.Integer({
          description: "Completions whose key is not the key of their record's socket",
        }),
        duplicate: Type.Integer({
          description: 'Completions for an op the kernel still held, or already finished',
        }),
        quarantinedRecords: Type.Integer({
          description: 'Op records taken out of use after a key mismatch',
        }),
      },
      {
        description:
          'Completions refused because they disagree with what was issued (DESIGN §1.8); they never reach a connection',
      },
    ),
    reasons: Type.Array(Type.String()),
  },
  { $id: 'Readiness' },
);
export type Readiness = Static<typeof Readiness>;

const Counts = Type.Record(Type.String(), Type.Integer());

export const OpsSummaryView = Type.Object(
  {
    total: Type.Integer({ description: 'Ops in flight' }),
    byKind: Type.Record(Type.String(), Type.Integer(), {
      description: 'Ops in flight by kind (kinds with none are absent)',
    }),
    byAge: Type.Array(
      Type.Object({
        label: Type.String({ example: '<10ms' }),
        ltMs: Type.Union([Type.Integer(), Type.Null()], {
          description: 'Upper bound (exclusive) of the bucket; null: no bound',
        }),
        count: Type.Integer(),
      }),
      {
        description:
          'Ops by age, each in the first bucket whose bound exceeds its age: <10 ms, <100 ms, <1 s, <10 s, >=10 s',
      },
    ),
    olderThan: Type.Optional(
      Type.Object(
        { ms: Type.Integer(), byKind: Counts },
        { description: 'With ?olderThanMs: ops at least that old, by kind' },
      ),
    ),
    oldest: Type.Array(RefTo(OpView), { description: 'The oldest ops, oldest first' }),
  },
  { $id: 'OpsSummary' },
);
export type OpsSummary = Static<typeof OpsSummaryView>;

export const ConnectionsSummaryView = Type.Object(
  {
    total: Type.Integer({ description: 'Live connections' }),
    byListener: Type.Record(Type.String(), Type.Integer(), {
      description: 'Connections by listener id (listeners with none are absent)',
    }),
    byState: Type.Record(Type.String(), Type.Integer(), {
      description: 'Connections by state (states with none are absent)',
    }),
    oldest: Type.Array(RefTo(ConnectionView), {
      description: 'The oldest connections, oldest first',
    }),
    busiest: Type.Array(RefTo(ConnectionView), {
      description:
        'The connections that moved the most bytes (in + out, client and upstream sides), most first',
    }),
  },
  { $id: 'ConnectionsSummary' },
);
export type ConnectionsSummary = Static<typeof ConnectionsSummaryView>;
