// The systems under test. Each is a small adapter:
//   check()                 → null when it can run here, else the reason it cannot
//   start(role, {target})   → an instance {port, apiPort?, memPids(), memKind, cpuPids(),
//                             winePids(), stop()}; throws StartError when it cannot start
// `role` is 'echo' (echo 64 B back) or 'relay' (forward to target host:port). keyport-iocp and
// keyport-uring are two adapters among the others; the harness treats them all alike.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  alive,
  comm,
  freePort,
  have,
  killPids,
  pinnedArgv,
  pinPids,
  processTree,
  renicePids,
  sleep,
  spawnLogged,
  stopChild,
  tail,
  waitPort,
  winePrefixPids,
  withAffinity,
} from './proc.mjs';

export class StartError extends Error {
  /** systemWide: the system cannot start at all (skip it for every workload from now on). */
  constructor(message, { systemWide = false } = {}) {
    super(message.replace(/\s*\n\s*/g, ' / '));
    this.systemWide = systemWide;
  }
}

/** GET http://127.0.0.1:port/path → status code, or null (no answer within timeoutMs). */
export async function httpStatus(port, path, timeoutMs = 1000) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return null;
  }
}

function nativeInstance(child, port, { memKind = 'rss', onStop } = {}) {
  return {
    port,
    pid: child.pid,
    memKind,
    memPids: () => (memKind === 'pss-tree' ? processTree(child.pid) : [child.pid]),
    cpuPids: () => processTree(child.pid),
    winePids: () => [],
    async stop() {
      const tree = processTree(child.pid);
      await stopChild(child, { graceMs: 2000 });
      await killPids(tree.filter((p) => p !== child.pid && alive(p)));
      await onStop?.();
    },
  };
}

async function waitListening(child, port, logFile, what, timeoutMs = 15000) {
  const ok = await waitPort(port, {
    timeoutMs,
    gone: () => child.exitCode !== null || child.signalCode !== null,
  });
  if (ok) return;
  await stopChild(child, { graceMs: 500 });
  throw new StartError(
    `${what} did not listen on 127.0.0.1:${port} within ${timeoutMs / 1000} s` +
      (child.exitCode !== null ? ` (exited with code ${child.exitCode})` : '') +
      (tail(logFile) ? `: ${tail(logFile, 3)}` : ''),
    { systemWide: true },
  );
}

// ---- Linux-native peers ------------------------------------------------------------------

function nodeNet(ctx) {
  return {
    name: 'node-net',
    label: `Node net (Linux, Node ${process.versions.node})`,
    platform: 'linux',
    roles: ['echo', 'relay'],
    async check() {
      return null;
    },
    async start(role, { target } = {}) {
      const port = await freePort();
      const logFile = ctx.logPath('node-net');
      const script = join(
        ctx.benchDir,
        'peers',
        role === 'echo' ? 'node-echo.mjs' : 'node-relay.mjs',
      );
      const args = ['--port', String(port), ...(role === 'relay' ? ['--target', target] : [])];
      const prof = ctx.profileDir
        ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profilePath('node-net', role)}`]
        : [];
      const child = spawnLogged([process.execPath, ...prof, script, ...args], {
        logFile,
        cpu: ctx.serverCpu,
        env: { ...process.env, NODE_OPTIONS: '' },
      });
      await waitListening(child, port, logFile, 'node net peer');
      return nativeInstance(child, port);
    },
  };
}

function socat(ctx) {
  return {
    name: 'socat',
    label: 'socat (fork per connection)',
    platform: 'linux',
    roles: ['echo', 'relay'],
    // socat forks a process per connection: 10 000 idle connections would be 10 000 processes
    idleConnsCap: 1000,
    async check() {
      return have('socat') ? null : 'socat is not installed (apt-get install socat)';
    },
    async start(role, { target } = {}) {
      const port = await freePort();
      const logFile = ctx.logPath('socat');
      const listen = `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=4096`;
      const child = spawnLogged(['socat', listen, role === 'echo' ? 'PIPE' : `TCP:${target}`], {
        logFile,
        cpu: ctx.serverCpu,
      });
      await waitListening(child, port, logFile, 'socat');
      return nativeInstance(child, port, { memKind: 'pss-tree' });
    },
  };
}

function haproxy(ctx) {
  return {
    name: 'haproxy',
    label: 'HAProxy (tcp mode, 1 thread)',
    platform: 'linux',
    roles: ['relay'],
    async check() {
      return have('haproxy') ? null : 'haproxy is not installed (apt-get install haproxy)';
    },
    async start(_role, { target }) {
      const port = await freePort();
      const logFile = ctx.logPath('haproxy');
      const cfg = `${logFile.replace(/\.log$/, '')}.cfg`;
      writeFileSync(
        cfg,
        [
          'global',
          // HAProxy needs ~2 descriptors per relayed connection and refuses to start without them
          `  maxconn ${Math.max(1000, Math.floor((ctx.nofile - 200) / 2))}`,
          '  nbthread 1',
          'defaults',
          '  mode tcp',
          // a frontend's own maxconn would otherwise default to far less than the global one
          `  maxconn ${Math.max(1000, Math.floor((ctx.nofile - 200) / 2))}`,
          '  timeout connect 5s',
          '  timeout client 120s',
          '  timeout server 120s',
          'listen relay',
          `  bind 127.0.0.1:${port}`,
          `  server upstream ${target}`,
          '',
        ].join('\n'),
      );
      const child = spawnLogged(['haproxy', '-db', '-f', cfg], {
        logFile,
        cpu: ctx.serverCpu,
      });
      await waitListening(child, port, logFile, 'haproxy');
      return nativeInstance(child, port);
    },
  };
}

/** No relay at all: the load goes straight to the target (iperf3 direct = the limit). */
function direct() {
  return {
    name: 'direct',
    label: 'direct (no relay)',
    platform: 'linux',
    roles: ['relay'],
    onlyWorkloads: ['bulk', 'bulk-4'],
    async check() {
      return null;
    },
    async start(_role, { target }) {
      const port = Number(target.split(':').pop());
      return {
        port,
        memKind: 'rss',
        memPids: () => [],
        cpuPids: () => [],
        winePids: () => [],
        async stop() {},
      };
    },
  };
}

// ---- Wine -------------------------------------------------------------------------------

/** Pins every process of the bench's Wine prefix (node.exe, wineserver, winedevice…) to the server core. */
function pinWine(ctx) {
  const pids = winePrefixPids(ctx.winePrefix);
  if (ctx.serverCpu !== null) pinPids(pids, ctx.serverCpu);
  if (ctx.nice) renicePids(pids, ctx.nice); // a wineserver started before this run may lack it
  return pids;
}

function wineCheck(ctx) {
  if (process.platform !== 'linux') return 'Wine runs only on Linux';
  if (ctx.wineError) return ctx.wineError;
  return null;
}

function nodeNetWine(ctx) {
  return {
    name: 'node-net-wine',
    // a getter: the Wine release and Windows Node are known once the Wine is provisioned
    get label() {
      const s = ctx.wineSetup;
      return s
        ? `Node net (Windows Node ${s.nodeVersion.split('.')[0]} under Wine ${s.release})`
        : 'Node net (Windows Node under Wine)';
    },
    platform: 'wine',
    roles: ['echo', 'relay'],
    async check() {
      return wineCheck(ctx);
    },
    async start(role, { target } = {}) {
      const { runWindowsNode, toWindowsPath } = await import(
        join(ctx.root, 'dist', 'launcher', 'wine.js')
      );
      const port = await freePort();
      const logFile = ctx.logPath('node-net-wine');
      const script = join(
        ctx.benchDir,
        'peers',
        role === 'echo' ? 'node-echo.mjs' : 'node-relay.mjs',
      );
      const args = ['--port', String(port), ...(role === 'relay' ? ['--target', target] : [])];
      // node.exe (and a wineserver it starts) inherit the spawning thread's affinity
      const nodeFlags = ctx.profileDir
        ? ['--cpu-prof', `--cpu-prof-dir=${toWindowsPath(ctx.profilePath('node-net-wine', role))}`]
        : [];
      const run = () => runWindowsNode(script, args, { logFile, nodeFlags });
      const child = ctx.serverCpu === null ? run() : withAffinity(ctx.serverCpu, run);
      child.exited = new Promise((res) =>
        child.on('exit', (code, signal) => res({ code, signal })),
      );
      child.on('error', () => {});
      await waitListening(child, port, logFile, 'node.exe peer', 30000);
      pinWine(ctx);
      return {
        port,
        pid: child.pid,
        memKind: 'rss',
        memPids: () => [child.pid], // the pid spawned is node.exe itself (wine64 execs into it)
        cpuPids: () => winePrefixPids(ctx.winePrefix),
        winePids: () => winePrefixPids(ctx.winePrefix),
        async stop() {
          // Wine turns SIGINT into a console Ctrl+C, which node.exe handles (and exits cleanly,
          // writing a --cpu-prof profile); a SIGTERM ends it on the spot
          await stopChild(child, { signal: 'SIGINT', graceMs: 3000 });
        },
      };
    },
  };
}

// ---- keyport ----------------------------------------------------------------------------
// start(role, {target, maxConnections}): maxConnections raises the listener's limit to it (and
// the engine's to 1 000 more), through a config file.

function keyport(ctx, backend) {
  const name = `keyport-${backend}`;
  const onWine = backend === 'iocp' && process.platform === 'linux';
  return {
    name,
    get label() {
      if (backend !== 'iocp') return 'keyport uring (native)';
      const s = ctx.wineSetup;
      return s
        ? `keyport iocp (Windows Node ${s.nodeVersion.split('.')[0]} under Wine ${s.release})`
        : 'keyport iocp (under Wine)';
    },
    platform: onWine ? 'wine' : 'linux',
    roles: ['echo', 'relay'],
    isKeyport: true,
    hasApi: true,
    async check() {
      if (ctx.buildError) return `keyport is not built: ${ctx.buildError}`;
      if (!existsSync(join(ctx.keyportRoot, 'dist', 'launcher', 'main.js')))
        return 'keyport is not built (dist/ missing): run npm run build';
      if (onWine) return wineCheck(ctx);
      if (backend === 'uring') {
        try {
          const v = readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim();
          if (v !== '0')
            return `io_uring is disabled on this kernel (kernel.io_uring_disabled=${v})`;
        } catch {}
      }
      return null;
    },
    async start(role, { target, maxConnections } = {}) {
      const port = await freePort();
      const apiPort = await freePort();
      const logFile = ctx.logPath(name);
      const launcherLog = `${logFile.replace(/\.log$/, '')}.launcher.log`;
      // --profile: a V8 CPU profile of the engine's process, written when it exits
      const profileEnv = (r) => {
        if (!ctx.profileDir) return { NODE_OPTIONS: '' };
        const dir = ctx.profilePath(name, r);
        if (onWine) {
          const win = `Z:${dir.replaceAll('/', '\\')}`;
          return {
            NODE_OPTIONS: '',
            KEYPORT_WINDOWS_NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${win}`,
          };
        }
        // Node refuses --cpu-prof in NODE_OPTIONS: natively it goes on the command line.
        return { NODE_OPTIONS: '' };
      };
      const nativeProfile =
        ctx.profileDir && !onWine
          ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profilePath(name, role)}`]
          : [];
      const listener =
        role === 'echo' ? `127.0.0.1:${port}=echo` : `127.0.0.1:${port}=forward:${target}`;
      // More connections than keyport's defaults allow (10 000 per listener, 16 384 in all):
      // the listener comes from a config file that raises both limits (a --listener would
      // replace the file's listeners).
      let where = ['--listener', listener];
      if (maxConnections) {
        const cfg = `${logFile.replace(/\.log$/, '')}.config.json`;
        const [address, spec] = listener.split('=');
        const [mode, ...to] = spec.split(':');
        writeFileSync(
          cfg,
          `${JSON.stringify({
            engine: { maxConnections: maxConnections + 1000 },
            listeners: [
              { address, mode, ...(to.length ? { target: to.join(':') } : {}), maxConnections },
            ],
          })}\n`,
        );
        where = ['--config', cfg];
      }
      const argv = [
        process.execPath,
        ...nativeProfile,
        join(ctx.keyportRoot, 'bin', 'keyport.js'),
        '--backend',
        backend,
        '--api',
        `127.0.0.1:${apiPort}`,
        ...where,
      ];
      const full = pinnedArgv(argv, { cpu: ctx.serverCpu });
      const errFd = openSync(launcherLog, 'a');
      let child;
      try {
        child = spawn(full[0], full.slice(1), {
          cwd: ctx.keyportRoot,
          env: { ...process.env, ...profileEnv(role), KEYPORT_LOG_FILE: logFile },
          // natively the engine logs on the launcher's stdout; under Wine node.exe logs to
          // KEYPORT_LOG_FILE and the launcher copies that onto its stdout (not kept twice)
          stdio: ['ignore', onWine ? 'ignore' : errFd, errFd],
        });
      } finally {
        closeSync(errFd);
      }
      child.exited = new Promise((res) =>
        child.on('exit', (code, signal) => res({ code, signal })),
      );
      child.on('error', () => {});
      const gone = () => child.exitCode !== null || child.signalCode !== null;

      // Up = /healthz answers 200 (and the log line with "api" appears; we record whether it did).
      const end = Date.now() + 60000;
      let healthy = false;
      while (Date.now() < end && !gone()) {
        if ((await httpStatus(apiPort, '/healthz', 500)) === 200) {
          healthy = true;
          break;
        }
        await sleep(100);
      }
      if (!healthy) {
        const wasGone = gone();
        await stopChild(child, { signal: 'SIGINT', graceMs: 3000 });
        const why = [tail(launcherLog, 3), tail(logFile, 3)].filter(Boolean).join(' | ');
        throw new StartError(
          wasGone
            ? `keyport exited at start (code ${child.exitCode})${why ? `: ${why}` : ''}`
            : `keyport's /healthz did not answer within 60 s${why ? `: ${why}` : ''}`,
          { systemWide: true },
        );
      }
      const sawApiLine = [logFile, launcherLog].some(
        (f) => existsSync(f) && readFileSync(f, 'utf8').includes(`"api":"127.0.0.1:${apiPort}"`),
      );
      const winePids = () => (onWine ? winePrefixPids(ctx.winePrefix) : []);
      if (onWine) pinWine(ctx);
      // The engine's process: node.exe under Wine; natively the launcher itself or a node child.
      const enginePid = () => {
        const tree = processTree(child.pid);
        return (
          tree.find((p) => comm(p) === 'node.exe') ??
          tree.find((p) => p !== child.pid && /^node/.test(comm(p) ?? '')) ??
          child.pid
        );
      };
      const mainPid = enginePid();
      return {
        port,
        apiPort,
        pid: mainPid,
        sawApiLine,
        memKind: 'rss',
        memPids: () => [mainPid],
        cpuPids: () => [...new Set([...processTree(child.pid), ...winePids()])],
        winePids,
        logFile,
        async stop() {
          // SIGINT: the launcher passes it on to node.exe as Ctrl+C, a graceful stop
          await stopChild(child, { signal: 'SIGINT', graceMs: 5000 });
          if (alive(mainPid)) await killPids([mainPid], 1000);
        },
      };
    },
  };
}

export function makeSystems(ctx) {
  return [
    keyport(ctx, 'iocp'),
    nodeNetWine(ctx),
    keyport(ctx, 'uring'),
    nodeNet(ctx),
    socat(ctx),
    haproxy(ctx),
    direct(ctx),
  ];
}
