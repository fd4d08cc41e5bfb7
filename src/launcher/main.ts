// `keyport` as the user runs it. On Windows the engine runs in this very process. On Linux the
// iocp backend runs the same built code with the Windows Node under Wine (provisioned on first
// use); its output, which must go to a file, is followed onto this terminal.
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CliError, parseCli, USAGE } from '../main/cli.js';
import { VERSION } from '../version.js';
import { FileFollower } from './follow.js';
import { importNetsh } from './import-netsh.js';
import { cacheDir, PACKAGE_ROOT, WineConfigError } from './paths.js';
import { ProvisionError } from './provision.js';
import { runWindowsNode } from './wine.js';

function fail(message: string, code = 2): never {
  process.stderr.write(`keyport: ${message}\n`);
  process.exit(code);
}

export async function launch(argv: string[]): Promise<void> {
  // Subcommands: tools that start neither the engine nor Wine, on every platform.
  if (argv[0] === 'import-netsh') {
    process.exitCode = await importNetsh(argv.slice(1));
    return;
  }
  let opts: ReturnType<typeof parseCli>;
  try {
    opts = parseCli(argv);
  } catch (err) {
    if (err instanceof CliError) fail(err.message);
    throw err;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (opts.version) {
    process.stdout.write(`keyport ${VERSION}\n`);
    return;
  }

  // auto is iocp on Windows and io_uring on Linux; iocp on Linux means the Windows build of
  // Node under Wine, running the very same code as on Windows.
  const backend = opts.backend ?? process.env.KEYPORT_BACKEND ?? 'auto';
  if (process.platform === 'win32' || backend !== 'iocp') {
    const { run } = await import('../main/index.js');
    await run(argv);
    return;
  }
  runUnderWine(argv);
}

function runUnderWine(argv: string[]): void {
  const logFile =
    process.env.KEYPORT_LOG_FILE ?? join(cacheDir(), 'logs', `keyport-${process.pid}.log`);
  // Opened first: it follows from where the file ends now, before node.exe writes a line.
  mkdirSync(dirname(logFile), { recursive: true });
  const follower = new FileFollower(logFile, process.stdout);
  let child: ReturnType<typeof runWindowsNode>;
  try {
    child = runWindowsNode(join(PACKAGE_ROOT, 'dist', 'main', 'index.js'), argv, { logFile });
  } catch (err) {
    if (err instanceof ProvisionError || err instanceof WineConfigError) fail(err.message, 1);
    throw err;
  }
  let signals = 0;
  const forward = (): void => {
    // Wine turns SIGINT into a console Ctrl+C, which node.exe handles as a graceful shutdown
    // (a SIGTERM would end it on the spot). A second one resets what the drain has left; a
    // third kills it.
    child.kill(++signals > 2 ? 'SIGKILL' : 'SIGINT');
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code, signal) => {
    follower.close();
    if (!process.env.KEYPORT_LOG_FILE) rmSync(logFile, { force: true });
    process.exit(code ?? (signal ? 128 + 15 : 1));
  });
}
