// keyport's process entry (run by the installed Node on Windows, by the Windows Node under Wine
// on Linux): parse options, start the engine and the control plane, stop cleanly on signals.
import { pathToFileURL } from 'node:url';
import { buildApi } from '../api/app.js';
import { formatAddress } from './address.js';
import { CliError, parseCli } from './cli.js';
import { resolveCli } from './defaults.js';

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

  const { IocpBackend } = await import('../engine/iocp/backend.js');
  const backend = new IocpBackend();
  backend.start({ completion: () => {}, batch: () => {} });

  const startedAt = Date.now();
  const api = buildApi({ control: { startedAt }, logger: { level: 'info' } });
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
    await backend.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  run(process.argv.slice(2)).catch((err) => {
    process.stderr.write(
      `keyport: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
