// keyport's process entry (run by the installed Node on Windows, by the Windows Node under Wine
// on Linux): parse options, start the engine and the control plane, stop cleanly on signals.
import { pathToFileURL } from 'node:url';
import { buildApi } from '../api/app.js';
import type { Backend } from '../engine/backend.js';
import { EngineControl } from '../engine/control.js';
import { Engine, type LogFn } from '../engine/engine.js';
import type { ListenerConfig } from '../engine/options.js';
import { formatAddress } from './address.js';
import { CliError, type ListenerSpec, parseCli } from './cli.js';
import { resolveCli } from './defaults.js';

function listenerConfig(spec: ListenerSpec): ListenerConfig {
  const base = { host: spec.address.host, port: spec.address.port };
  return spec.mode === 'echo'
    ? { ...base, mode: 'echo' }
    : { ...base, mode: 'forward', target: { host: spec.target.host, port: spec.target.port } };
}

async function createBackend(choice: string): Promise<Backend> {
  if (choice === 'uring' || (choice === 'auto' && process.platform !== 'win32')) {
    throw new Error('the io_uring backend is not part of this build yet; use --backend iocp');
  }
  const { IocpBackend } = await import('../engine/iocp/backend.js');
  return new IocpBackend();
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

export async function run(argv: string[]): Promise<void> {
  let opts: ReturnType<typeof resolveCli>;
  try {
    opts = resolveCli(parseCli(argv));
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`keyport: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  const backend = await createBackend(opts.backend);
  let log: LogFn = (_level, obj, msg) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`);
  const engine = new Engine(backend, {}, (level, obj, msg) => log(level, obj, msg));
  const control = new EngineControl(engine);
  const api = buildApi({ control, logger: { level: process.env.KEYPORT_LOG_LEVEL ?? 'info' } });
  log = (level, obj, msg) => api.log[level](obj, msg);
  engine.start();
  startGcStress(api.log);

  for (const spec of opts.listeners) {
    try {
      await engine.addListener(listenerConfig(spec));
    } catch (err) {
      api.log.error((err as Error).message);
      await engine.shutdown(0);
      process.exit(1);
    }
  }

  await api.listen({ host: opts.api.host, port: opts.api.port });
  const bound = api.server.address();
  const apiAddress =
    bound && typeof bound === 'object'
      ? formatAddress({
          host: bound.address,
          port: bound.port,
          family: bound.family === 'IPv6' ? 6 : 4,
        })
      : formatAddress(opts.api);
  // Tests and scripts read `api` from this line to learn an ephemeral port.
  api.log.info({ api: apiAddress, backend: backend.name }, `keyport api on http://${apiAddress}`);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    api.log.info(`${signal}: shutting down`);
    await api.close();
    const drained = await engine.shutdown(5000);
    api.log.info({ drained }, drained ? 'stopped' : 'stopped after aborting what was left');
    process.exit(drained ? 0 : 3);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGBREAK', () => void stop('SIGBREAK'));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run(process.argv.slice(2)).catch((err) => {
    process.stderr.write(
      `keyport: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
