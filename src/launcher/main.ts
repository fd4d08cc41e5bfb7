// `keyport` as the user runs it. On Windows the engine runs in this very process. On Linux the
// iocp backend runs the same built code with the Windows Node under Wine (provisioned on first
// use); its output, which must go to a file, is followed onto this terminal.
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { type BackendName, resolveBackend } from '../config/backend.js';
import { CliError, parseCli, USAGE } from '../config/cli.js';
import { loadSettings } from '../config/settings.js';
import { VERSION } from '../version.js';
import { StoppedExitWatch } from './exit-watch.js';
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

  // The backend as the settings say (a config file's "backend" too), decided here once: iocp
  // on Linux means the Windows build of Node under Wine, running the very same code.
  let backend: BackendName;
  try {
    backend = resolveBackend(loadSettings(opts).backend);
  } catch {
    // Settings that do not load are reported by the process that runs, the same on each path
    // (the engine checks them again): until then, what the command line and environment say.
    const said = opts.backend ?? process.env.KEYPORT_BACKEND;
    backend = resolveBackend(said === 'iocp' || said === 'uring' ? said : 'auto');
  }
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
  // The API's address, from node.exe's "keyport api on" line, for SIGHUP (below).
  let apiAddress: string | null = null;
  const finish = (code: number): never => {
    follower.close();
    if (!process.env.KEYPORT_LOG_FILE) rmSync(logFile, { force: true });
    process.exit(code);
  };
  const watch = new StoppedExitWatch({
    exitGraceMs: 10_000,
    killGraceMs: 5_000,
    kill: () => child.kill('SIGKILL'),
    giveUp: finish,
    warn: (message) => process.stderr.write(`keyport: ${message}\n`),
    pid: () => child.pid,
    onLine: (line) => {
      if (apiAddress !== null) return;
      const m = /"api":"([^"]+)"/.exec(line);
      if (m?.[1]) apiAddress = m[1];
    },
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      watch.feed(chunk.toString('latin1'));
      process.stdout.write(chunk, () => done());
    },
  });
  const follower = new FileFollower(logFile, sink);
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
  // SIGHUP (reload the config file) has no Windows equivalent for Wine to deliver to node.exe:
  // the launcher asks node.exe's API instead, as an operator would (POST /config/reload, with
  // the token when one is configured). node.exe logs what changed, or why nothing did.
  let token: string | null = null;
  try {
    token = loadSettings(parseCli(argv)).token;
  } catch {
    // node.exe reports a bad configuration itself, and exits.
  }
  process.on('SIGHUP', () => {
    if (apiAddress === null) {
      process.stderr.write('keyport: SIGHUP before the API is up: ignored\n');
      return;
    }
    const url = `http://${apiAddress.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:')}/config/reload`;
    fetch(url, {
      method: 'POST',
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(60_000),
    }).then(
      (r) => r.body?.cancel(),
      (err: Error) =>
        process.stderr.write(`keyport: SIGHUP: cannot reach the API to reload: ${err.message}\n`),
    );
  });
  child.on('exit', (code, signal) => {
    watch.exited();
    follower.close(); // its last lines first: whether node.exe wrote anything at all
    // keyport always says why it stops; a node.exe that ends without a word never ran keyport's
    // code (seen once under Wine 8 with another Wine process starting beside it): say so.
    if (follower.copied === 0 && code !== 0) {
      process.stderr.write(
        `keyport: node.exe ended (${code === null ? `signal ${signal}` : `exit code ${code}`}) before writing anything: it never ran keyport (Wine failed to start it, or it crashed at once); try again, and if it persists run with WINEDEBUG=err+all to see why\n`,
      );
    }
    finish(code ?? watch.askedCode ?? (signal ? 128 + 15 : 1));
  });
}
