// keyport's process entry (run by the installed Node on Windows, by the Windows Node under Wine
// on Linux): parse options, start the engine and the control plane, stop cleanly on signals.
import { pathToFileURL } from 'node:url';
import { buildApi } from '../api/app.js';
import { DEFAULT_THREAD_SHARE, ThreadShare } from '../api/thread-share.js';
import { formatAddress } from '../config/address.js';
import { type BackendName, resolveBackend } from '../config/backend.js';
import { CliError, type CliOptions, parseCli } from '../config/cli.js';
import { ConfigError } from '../config/config-error.js';
import { ConfigLifecycle, ReloadError, readState, type StateEntry } from '../config/lifecycle.js';
import {
  checkApiExposure,
  checkBoundAddresses,
  loadSettings,
  type Settings,
} from '../config/settings.js';
import type { Backend } from '../engine/backend.js';
import { EngineControl } from '../engine/control.js';
import { Engine } from '../engine/engine.js';
import type { LogFn } from '../engine/observers.js';
import { createMetrics } from '../metrics/keyport.js';
import { AccessLog } from './access-log.js';

/** The backend src/config/backend.ts chose; each is loaded only where it is used. */
async function createBackend(name: BackendName, onError: (err: unknown) => void): Promise<Backend> {
  if (name === 'uring') {
    if (process.platform !== 'linux') fail('--backend uring needs Linux (io_uring)', 2);
    const { UringBackend } = await import('../engine/uring/backend.js');
    try {
      return new UringBackend({ onError });
    } catch (err) {
      fail((err as Error).message, 1);
    }
  }
  if (process.platform !== 'win32') {
    fail(
      '--backend iocp needs Windows; on Linux run keyport through bin/keyport.js, which uses Wine',
      2,
    );
  }
  const { IocpBackend } = await import('../engine/iocp/backend.js');
  return new IocpBackend({ onError });
}

/** Debug aid (and the GC-pressure test): with node --expose-gc, collect every N ms. */
function startGcStress(log: { warn(msg: string): void }): void {
  const ms = Number(process.env.KEYPORT_DEBUG_GC_MS ?? 0);
  if (!ms) return;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    log.warn(
      'KEYPORT_DEBUG_GC_MS needs node --expose-gc (KEYPORT_WINDOWS_NODE_OPTIONS under Wine)',
    );
    return;
  }
  setInterval(gc, ms).unref();
}

/** The exit code after a fatal (internal) error, distinct from usage (2) and drain-abort (3). */
const FATAL_EXIT_CODE = 70;

/**
 * Ends the process with `code` now, through the backend's own way out where it has one (IOCP:
 * past Node's shutdown, which Wine 10 now and then never finishes).
 */
function exitNow(backend: Backend | null, code: number): never {
  backend?.exitProcess?.(code);
  process.exit(code);
}

/** exitNow, once stdout and stderr have taken what was written to them (at most 1 s). */
function endProcess(backend: Backend | null, code: number): void {
  let waiting = 2;
  const flushed = () => {
    if (--waiting === 0) exitNow(backend, code);
  };
  setTimeout(() => exitNow(backend, code), 1000).unref();
  process.stdout.write('', flushed);
  process.stderr.write('', flushed);
}

function fail(message: string, code: number): never {
  process.stderr.write(`keyport: ${message}\n`);
  process.exit(code);
}

export async function run(argv: string[]): Promise<void> {
  let settings: Settings;
  let cli: CliOptions;
  // The state file is read (and checked against the config file) before anything starts: a
  // corrupt one stops start-up, naming its path and field, and is left as it is.
  let state: StateEntry[];
  try {
    cli = parseCli(argv);
    settings = loadSettings(cli);
    state = readState(settings);
    await checkApiExposure(settings);
  } catch (err) {
    if (err instanceof CliError || err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }

  let log: LogFn = (level, obj, msg) => {
    if (level !== 'debug') process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`);
  };
  // A throw in the completion path (or anywhere else nobody catches) leaves the engine's state
  // unknown: log it, wake the dequeue thread (under Wine, exit waits forever on a thread waiting
  // in GetQueuedCompletionStatusEx) and exit non-zero at once, for a supervisor to restart us.
  let backendRef: Backend | null = null;
  let dying = false;
  const fatal = (err: unknown): void => {
    if (dying) return;
    dying = true;
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log('error', { err: text }, 'fatal error: exiting');
    process.stderr.write(`keyport: fatal: ${text}\n`);
    const exit = () => endProcess(backendRef, FATAL_EXIT_CODE);
    setTimeout(exit, 1500).unref();
    if (backendRef) void backendRef.stop().then(exit, exit);
    else exit();
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  // Opened before anything starts: a path that cannot be written is a usage error.
  let accessLog: AccessLog | null = null;
  if (settings.accessLog.to !== 'off') {
    try {
      accessLog = new AccessLog({
        ...settings.accessLog,
        onError: (msg, err) =>
          log('error', { err: (err as NodeJS.ErrnoException)?.code ?? String(err) }, msg),
      });
    } catch (err) {
      fail(
        `${settings.accessLog.source}: cannot open the access log ${settings.accessLog.to}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        2,
      );
    }
  }
  const backend = await createBackend(resolveBackend(settings.backend), fatal);
  backendRef = backend;
  const engine = new Engine(backend, settings.engine, (level, obj, msg) => log(level, obj, msg));
  const control = new EngineControl(engine);
  // KEYPORT_METRICS=off: no observer on the data path, and GET /metrics answers 404.
  const share = new ThreadShare(
    { ...DEFAULT_THREAD_SHARE, share: settings.threadShare ?? DEFAULT_THREAD_SHARE.share },
    () => control.dataPlaneCompletions,
  );
  const metrics =
    process.env.KEYPORT_METRICS === 'off'
      ? undefined
      : createMetrics(engine, { apiThrottle: share, accessLog: accessLog ?? undefined });
  engine.observer = metrics ?? null;
  engine.connectionLog = accessLog;
  const lifecycle = new ConfigLifecycle(settings, cli, process.env, control);
  const api = buildApi({
    control,
    config: lifecycle,
    metrics,
    logger: { level: settings.logLevel, redact: ['req.headers.authorization'] },
    auth: { token: settings.token, protect: settings.protect },
    safety: {
      apiHost: settings.api.host,
      allowedHosts: settings.allowedHosts,
      allowTargets: settings.allowTargets,
      maxEventClients: settings.maxEventClients,
    },
    bodyLimit: settings.bodyLimitBytes,
    maxConnections: settings.maxApiConnections,
    requestTimeoutMs: settings.requestTimeoutMs,
    threadShare: share,
  });
  log = (level, obj, msg) => api.log[level](obj, msg);
  engine.start();
  startGcStress(api.log);

  try {
    await lifecycle.startListeners(state);
  } catch (err) {
    api.log.error((err as Error).message);
    await engine.shutdown(0);
    fail((err as Error).message, 1);
  }

  try {
    await api.listen({ host: settings.api.host, port: settings.api.port });
  } catch (err) {
    await engine.shutdown(0);
    const code = (err as NodeJS.ErrnoException).code;
    fail(
      code === 'EADDRINUSE'
        ? `the API address ${formatAddress(settings.api)} is already in use`
        : `cannot serve the API on ${formatAddress(settings.api)}: ${(err as Error).message}`,
      1,
    );
  }
  // What the name resolved to when it was bound is what counts (it may differ from the check).
  try {
    checkBoundAddresses(
      settings,
      api.addresses().flatMap((a) => (typeof a === 'object' ? [a.address] : [])),
    );
  } catch (err) {
    await api.close();
    await engine.shutdown(0);
    fail((err as Error).message, 2);
  }
  const bound = api.server.address();
  const apiAddress =
    bound && typeof bound === 'object'
      ? formatAddress({
          host: bound.address,
          port: bound.port,
          family: bound.family === 'IPv6' ? 6 : 4,
        })
      : formatAddress(settings.api);
  // Tests and scripts read `api` from this line to learn an ephemeral port.
  api.log.info({ api: apiAddress, backend: backend.name }, `keyport api on http://${apiAddress}`);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      // A second Ctrl+C: stop waiting for the drain; reset what is left now.
      api.log.warn(`${signal} again: resetting the connections left`);
      engine.abortAll(`${signal} during drain`);
      return;
    }
    stopping = true;
    api.log.info(
      { deadlineMs: settings.shutdownDeadlineMs, connections: engine.connections.size },
      `${signal}: shutting down (draining; a second ${signal} resets what is left)`,
    );
    await api.close();
    const drained = await engine.shutdown(settings.shutdownDeadlineMs);
    // The lines of the connections the drain closed, onto the disk before exit.
    await accessLog?.close();
    api.log.info({ drained }, drained ? 'stopped' : 'stopped after aborting what was left');
    endProcess(backend, drained ? 0 : 3);
  };
  // SIGHUP: re-read the config file (as POST /config/reload). Linux only: Windows has no
  // SIGHUP (Node never emits it there, and under Wine the launcher turns its SIGHUP into a
  // POST /config/reload); the API route is the way there.
  if (process.platform !== 'win32') {
    process.on('SIGHUP', () => {
      if (stopping) return;
      lifecycle.reload().then(
        (r) => api.log.info({ reload: r }, 'SIGHUP: config reloaded'),
        (err) =>
          api.log.error(
            { err: (err as Error).message },
            err instanceof ReloadError
              ? `SIGHUP: reload refused, nothing changed: ${(err as Error).message}`
              : 'SIGHUP: reload failed',
          ),
      );
    });
  }
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGBREAK', () => void stop('SIGBREAK'));
  // Windows: `docker stop` and a system shutdown send CTRL_SHUTDOWN_EVENT, closing the console
  // CTRL_CLOSE_EVENT; the process ends as soon as a handler of them returns, so this one drains
  // before it returns. Ctrl+C and Ctrl+Break go on to Node (SIGINT, SIGBREAK above); a logoff
  // is not a reason to stop (a service outlives its users' sessions).
  backend.watchConsoleEvents?.((event) => {
    if (event !== 'shutdown' && event !== 'close') return event === 'logoff';
    const name = event === 'shutdown' ? 'CTRL_SHUTDOWN_EVENT' : 'CTRL_CLOSE_EVENT';
    api.log.info(
      { deadlineMs: settings.shutdownDeadlineMs, connections: engine.connections.size },
      `${name}: shutting down (draining before the handler returns)`,
    );
    stopping = true;
    const drained = engine.drainNow(settings.shutdownDeadlineMs);
    api.log.info({ drained }, drained ? 'stopped' : 'stopped after aborting what was left');
    // The event loop cannot turn in a console control handler: no flush to wait for.
    exitNow(backend, drained ? 0 : 3);
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run(process.argv.slice(2)).catch((err) => {
    process.stderr.write(
      `keyport: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
