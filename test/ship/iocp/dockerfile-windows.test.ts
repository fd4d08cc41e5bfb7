// Dockerfile.windows, the Windows service definition and the Kubernetes manifest, kept honest on
// a Linux machine that can build none of them: their invariants are checked by parsing them, and
// the commands they run are run here the only way Linux can run the Windows code path — the same
// node.exe (checked by SHA-256), the same script, arguments, environment and configuration file,
// under Wine — until /healthz answers, then stopped the way each of them stops keyport.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import t from 'tap';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { ROOT } from '../../helpers/keyport.js';
import { closed, connect, readBytes } from '../../helpers/tcp.js';

// The container's environment is the image's ENV and nothing else: no KEYPORT_* of the machine
// running the tests may leak into the runs below (those that say which Wine runs the Windows
// code path on this machine stay: KEYPORT_CACHE, KEYPORT_WINE*, KEYPORT_TEST_*).
const WINE_CHOICE = /^KEYPORT_(CACHE|WINE|WINE_LOADER|WINESERVER|TEST_\w+)$/;
for (const k of Object.keys(process.env)) {
  if (k.startsWith('KEYPORT_') && !WINE_CHOICE.test(k)) delete process.env[k];
}

const paths = await import('../../../dist/launcher/paths.js');
const { runWindowsNode, toWindowsPath } = await import('../../../dist/launcher/wine.js');
const OUT = join(ROOT, 'test-output');
mkdirSync(OUT, { recursive: true });

// ---- a small Dockerfile parser (what docker build does with the text, no more) -----------------

interface Instr {
  cmd: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string | null;
  instrs: Instr[];
  /** The stage's last WORKDIR (relative COPY destinations and sources of COPY --from). */
  workdir: string;
}

function parseDockerfile(text: string): {
  escape: string;
  globalArgs: Map<string, string>;
  stages: Stage[];
  comments: string;
} {
  const lines = text.split(/\r?\n/);
  const esc = /^#\s*escape=(.)/.exec(lines[0] ?? '')?.[1] ?? '\\';
  const instrs: Instr[] = [];
  let buf = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && buf === '')) continue;
    if (buf === '') start = i + 1;
    if (trimmed.endsWith(esc)) {
      buf += `${trimmed.slice(0, -1)} `;
      continue;
    }
    buf += trimmed;
    const m = /^(\S+)\s*(.*)$/s.exec(buf);
    if (m)
      instrs.push({
        cmd: (m[1] as string).toUpperCase(),
        args: (m[2] as string).trim(),
        line: start,
      });
    buf = '';
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instrs) {
    if (ins.cmd === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: bad FROM ${ins.args}`);
      const image = (m[1] as string).replace(/\$\{(\w+)\}/g, (_, v) => globalArgs.get(v) ?? '');
      stages.push({ image, name: m[2] ?? null, instrs: [], workdir: 'C:\\' });
    } else if (stages.length === 0) {
      if (ins.cmd !== 'ARG') throw new Error(`line ${ins.line}: ${ins.cmd} before FROM`);
      const [k, v] = ins.args.split('=');
      globalArgs.set(k as string, v ?? '');
    } else {
      const stage = stages[stages.length - 1] as Stage;
      stage.instrs.push(ins);
      if (ins.cmd === 'WORKDIR') stage.workdir = ins.args;
    }
  }
  const comments = lines.filter((l) => l.trim().startsWith('#')).join('\n');
  return { escape: esc, globalArgs, stages, comments };
}

function argDefault(stage: Stage, name: string): string | undefined {
  const ins = stage.instrs.find((i) => i.cmd === 'ARG' && i.args.startsWith(`${name}=`));
  return ins?.args.slice(name.length + 1);
}

function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instrs.filter((i) => i.cmd === 'ENV')) {
    for (const [, k, v] of ins.args.matchAll(/(\w+)=(\S+)/g)) env[k as string] = v as string;
  }
  return env;
}

interface Copy {
  from: string | null;
  src: string;
  dest: string;
}

function copiesOf(stage: Stage): Copy[] {
  return stage.instrs
    .filter((i) => i.cmd === 'COPY')
    .flatMap((i) => {
      const words = i.args.split(/\s+/);
      const from = words[0]?.startsWith('--from=') ? (words.shift() as string).slice(7) : null;
      const dest = words.pop() as string;
      return words.map((src) => ({ from, src, dest }));
    });
}

const lower = (s: string) => s.toLowerCase().replaceAll('/', '\\');

const dockerfile = readFileSync(join(ROOT, 'Dockerfile.windows'), 'utf8');
const df = parseDockerfile(dockerfile);
const runtime = df.stages[df.stages.length - 1] as Stage;
const stageByName = new Map(df.stages.filter((s) => s.name).map((s) => [s.name as string, s]));
const nodeStage = df.stages.find((s) => argDefault(s, 'NODE_VERSION') !== undefined) as Stage;
// The image ships its own Node: whichever Wine this pass runs on (npm test runs Wine 8 and Wine
// 10), the image's commands run below with that very node.exe (checked by SHA-256), not with the
// Node the pass runs the rest of the suite with (Node 24 on Wine 10).
process.env.KEYPORT_WINDOWS_NODE = argDefault(nodeStage, 'NODE_VERSION');
const runtimeEnv = envOf(runtime);

/** The exec-form command of an ENTRYPOINT/CMD/HEALTHCHECK CMD. */
function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  return JSON.parse(json) as string[];
}
const entrypoint = execForm(
  (runtime.instrs.find((i) => i.cmd === 'ENTRYPOINT') as Instr | undefined)?.args ?? '[]',
);
const cmdIns = runtime.instrs.find((i) => i.cmd === 'CMD');
const command = [...entrypoint, ...(cmdIns ? execForm(cmdIns.args) : [])];
const healthIns = runtime.instrs.find((i) => i.cmd === 'HEALTHCHECK');
const healthcheck = healthIns ? execForm(healthIns.args) : [];
const imageNodeExe = copiesOf(runtime).find(
  (c) => c.from === nodeStage.name && /node\.exe$/i.test(c.src),
)?.dest;

/**
 * Where a path of the image comes from in this repository, by the runtime stage's COPY lines:
 * from the build context as is, from a build stage relative to its WORKDIR (which holds a copy of
 * the repository, built). node.exe maps to the node.exe the tests run (checked by SHA-256 below).
 */
function fromImage(winPath: string): string | null {
  if (imageNodeExe && lower(winPath) === lower(imageNodeExe)) return paths.windowsNodeExe();
  let best: { dest: string; repo: string } | null = null;
  for (const c of copiesOf(runtime)) {
    let repo: string | null = null;
    if (c.from === null) repo = join(ROOT, c.src);
    else {
      const st = stageByName.get(c.from);
      const wd = lower(st?.workdir ?? '');
      if (st && lower(c.src).startsWith(`${wd}\\`))
        repo = join(ROOT, c.src.slice(wd.length + 1).replaceAll('\\', '/'));
    }
    if (!repo) continue;
    const d = lower(c.dest);
    const p = lower(winPath);
    if ((p === d || p.startsWith(`${d}\\`)) && (!best || d.length > best.dest.length))
      best = { dest: d, repo };
  }
  if (!best) return null;
  const rest = winPath.slice(best.dest.length).replaceAll('\\', '/');
  return best.repo + rest;
}

/** The image's ENV as the Windows Node under Wine must see it (paths through Z:). */
function translatedEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    const local = /^[A-Za-z]:\\/.test(v) ? fromImage(v) : null;
    out[k] = local ? toWindowsPath(local) : v;
  }
  return out;
}

// ---- running the Windows code path --------------------------------------------------------------

interface WinProc {
  child: ChildProcess;
  log(): string;
  exited: Promise<number | string>;
}

let runs = 0;
function runWin(
  script: string,
  args: string[],
  env: Record<string, string>,
  flags: string[] = [],
): WinProc {
  const logFile = join(OUT, `dockerfile-windows-${process.pid}-${++runs}.log`);
  rmSync(logFile, { force: true });
  let child: ChildProcess;
  if (process.platform === 'win32') {
    writeFileSync(logFile, '');
    child = spawn(process.execPath, [...flags, script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => writeFileSync(logFile, d, { flag: 'a' }));
    child.stderr?.on('data', (d) => writeFileSync(logFile, d, { flag: 'a' }));
  } else {
    child = runWindowsNode(script, args, { logFile, env, nodeFlags: flags });
  }
  const exited = new Promise<number | string>((res) =>
    child.on('exit', (code, sig) => res(code ?? sig ?? -1)),
  );
  return { child, exited, log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '') };
}

/** Waits for keyport's "api" log line; rejects with its output if it exits first. */
async function apiOf(p: WinProc, ms = 90_000): Promise<string> {
  const end = Date.now() + ms;
  let exitedWith: number | string | undefined;
  void p.exited.then((c) => (exitedWith = c));
  for (;;) {
    const m = /"api":"([^"]+)"/.exec(p.log());
    if (m?.[1]) return `http://${m[1].replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
    if (exitedWith !== undefined) throw new Error(`exited (${exitedWith}) first:\n${p.log()}`);
    if (Date.now() > end) throw new Error(`no API after ${ms} ms:\n${p.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(p: WinProc, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
  return p.exited;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body };
}

/** The HEALTHCHECK's own command, run with the Windows Node: its exit code is the verdict. */
async function healthcheckExit(env: Record<string, string>): Promise<number | string> {
  const [, flag, code] = healthcheck;
  return runWin(code as string, [], env, [flag as string]).exited;
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createServer().once('error', () => res(false));
    s.listen(port, host, () => s.close(() => res(true)));
  });
}

/** A copy of a keyport.json with every port set to 0, so runs never collide on a busy machine. */
function ephemeralCopy(json: string, dir: string): string {
  const c = JSON.parse(json);
  const zero = (a: string) => a.replace(/:\d+$/, ':0');
  if (c.api?.address) c.api.address = zero(c.api.address);
  for (const l of c.listeners ?? []) l.address = zero(l.address);
  const file = join(dir, 'keyport.json');
  writeFileSync(file, JSON.stringify(c));
  return file;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const tmp = mkdtempSync(join(tmpdir(), 'keyport-deploy-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const tokenFile = join(tmp, 'token');
writeFileSync(tokenFile, `${randomBytes(24).toString('hex')}\n`);

// ---- Dockerfile.windows: invariants -------------------------------------------------------------

t.test(
  'Dockerfile.windows: multi-stage, pinned Windows Server 2022 images, no latest',
  async (t) => {
    t.equal(df.escape, '`', '# escape=` so that Windows paths need no doubling outside JSON');
    t.ok(df.stages.length >= 3, `${df.stages.length} stages`);
    for (const s of df.stages) {
      if (stageByName.has(s.image)) continue; // FROM an earlier stage
      t.match(
        s.image,
        /^mcr\.microsoft\.com\/windows\/(servercore|nanoserver):10\.0\.20348\.\d+$/,
        `${s.name ?? 'runtime'}: ${s.image} is pinned to one LTSC 2022 build`,
      );
      t.notMatch(s.image, /:latest$|:ltsc2022$/, 'not a moving tag');
    }
    t.match(runtime.image, /nanoserver|servercore/, `runtime base ${runtime.image}`);
    const why = df.comments;
    t.match(why, /Nano Server/, 'the choice of base is explained beside it');
    t.match(why, /koffi\.node[\s\S]*KERNEL32 and ADVAPI32/, 'with what koffi.node imports');
    t.match(why, /VCRUNTIME140/, 'and why no VC++ runtime is needed');
  },
);

t.test(
  'the Node runtime: pinned version, verified by SHA-256, the one the tests run',
  async (t) => {
    const version = argDefault(nodeStage, 'NODE_VERSION');
    t.equal(version, paths.WINDOWS_NODE_VERSION, 'the Windows Node the tests run (src/launcher)');
    t.match(version, /^22\.\d+\.\d+$/, 'Node 22 LTS');
    for (const name of ['NODE_TGZ_SHA256', 'NODE_EXE_SHA256', 'NPM_TGZ_SHA256']) {
      t.match(argDefault(nodeStage, name), /^[0-9a-f]{64}$/, `${name} is a SHA-256`);
    }
    const run = nodeStage.instrs.find((i) => i.cmd === 'RUN' && /Get-FileHash/.test(i.args));
    t.ok(run, 'a RUN step hashes what it downloaded');
    const text = run?.args ?? '';
    t.match(text, /Get-FileHash -Algorithm SHA256/);
    t.match(text, /\$env:NODE_TGZ_SHA256/, 'against the pinned SHA-256 of the Node package');
    t.match(text, /\$env:NPM_TGZ_SHA256/, 'and of npm');
    t.match(text, /\$env:NODE_EXE_SHA256/, 'and of node.exe itself');
    t.match(text, /throw/, 'a mismatch fails the build');
    t.match(text, /-f \$env:NODE_VERSION/, 'the URL is built from the pinned version');
    t.match(text, /Get-AuthenticodeSignature[\s\S]*OpenJS Foundation/, 'and the OpenJS signature');
    t.equal(
      sha256(paths.windowsNodeExe()),
      argDefault(nodeStage, 'NODE_EXE_SHA256'),
      'the image ships byte for byte the node.exe that these tests run',
    );
    t.match(
      dockerfile,
      /NOT the nodejs\.org zip/,
      'the comments say which artifact the hash is of',
    );
  },
);

t.test(
  "npm ci --omit=dev keeps koffi's Windows binary; dist comes from a build stage",
  async (t) => {
    const all = df.stages.flatMap((s) => s.instrs.map((i) => ({ s, i })));
    const prod = all.find(({ i }) => i.cmd === 'RUN' && /npm ci --omit=dev\b/.test(i.args));
    t.ok(prod, 'npm ci --omit=dev');
    t.notMatch(prod?.i.args ?? '', /--omit=optional|--no-optional/, 'optional dependencies stay');
    t.match(prod?.i.args ?? '', /koffi-win32-x64\\win32_x64\\koffi\.node/, 'the binary is checked');
    const build = all.find(({ i }) => i.cmd === 'RUN' && /npm run build/.test(i.args));
    t.ok(build, 'npm run build in a build stage');
    const copies = copiesOf(runtime);
    t.ok(
      copies.some((c) => c.from === prod?.s.name && /node_modules$/.test(c.src)),
      'the runtime takes the production node_modules',
    );
    t.ok(
      copies.some((c) => c.from === build?.s.name && /dist$/.test(c.src)),
      'and dist from the build stage',
    );
    t.notOk(
      runtime.instrs.some((i) => i.cmd === 'RUN'),
      'the runtime stage runs nothing (Nano Server has no PowerShell)',
    );

    // Why npm installs it on Windows: koffi's optionalDependencies, recorded in the lock file.
    const koffi = JSON.parse(
      readFileSync(join(ROOT, 'node_modules', 'koffi', 'package.json'), 'utf8'),
    );
    t.equal(koffi.optionalDependencies['@koromix/koffi-win32-x64'], koffi.version);
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
    const entry = lock.packages['node_modules/@koromix/koffi-win32-x64'];
    t.match(entry, { version: koffi.version, optional: true, os: ['win32'], cpu: ['x64'] });
  },
);

t.test(
  'ContainerUser, EXPOSE, a HEALTHCHECK with node, config from a mount, no secrets',
  async (t) => {
    const users = runtime.instrs.filter((i) => i.cmd === 'USER').map((i) => i.args);
    t.same(users, ['ContainerUser'], 'runs as ContainerUser, never ContainerAdministrator');
    const exposed = runtime.instrs
      .filter((i) => i.cmd === 'EXPOSE')
      .flatMap((i) => i.args.split(/\s+/));
    t.ok(exposed.includes('9180') && exposed.includes('7007'), `EXPOSE ${exposed.join(' ')}`);

    t.ok(healthIns, 'HEALTHCHECK');
    t.equal(healthcheck[0], imageNodeExe, "run by the image's own node.exe");
    t.equal(healthcheck[1], '-e');
    t.match(healthcheck[2], /get\(process\.env\.KEYPORT_HEALTHCHECK_URL/);
    t.match(runtimeEnv.KEYPORT_HEALTHCHECK_URL, /^http:\/\/127\.0\.0\.1:9180\/healthz$/);
    t.match(healthIns?.args, /--timeout=\d+s/);

    t.equal(command[0], imageNodeExe, "ENTRYPOINT starts the image's node.exe");
    t.match(runtimeEnv.KEYPORT_CONFIG, /^C:\\keyport\\config\\keyport\.json$/, 'KEYPORT_CONFIG');
    t.equal(fromImage(runtimeEnv.KEYPORT_CONFIG as string), join(ROOT, 'deploy', 'keyport.json'));

    // Secrets: no token, password or key in any instruction (comments may show how to mount one).
    for (const s of df.stages) {
      for (const i of s.instrs) {
        t.notMatch(
          i.args,
          /KEYPORT_TOKEN(_FILE)?=|password|secret|BEGIN [A-Z ]*PRIVATE KEY/i,
          `line ${i.line} holds no secret`,
        );
        if (i.cmd === 'COPY')
          t.notMatch(i.args, /token|\.pem|\.key\b|\.pfx/i, `line ${i.line} copies no secret`);
      }
    }

    // The build context: .dockerignore lets in exactly what the COPY lines need.
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    t.equal(
      ignore[0],
      '*',
      '.dockerignore starts by leaving everything out (.cache, node_modules)',
    );
    for (const s of df.stages) {
      for (const c of copiesOf(s).filter((c) => c.from === null)) {
        const src = c.src.replace(/\/$/, '');
        t.ok(existsSync(join(ROOT, src)), `${src} exists`);
        t.ok(ignore.includes(`!${src}`), `.dockerignore lets ${src} in`);
      }
    }
  },
);

// ---- the entry command, under Wine --------------------------------------------------------------

t.test(
  'the exact ENTRYPOINT + ENV, under Wine: /healthz answers, the HEALTHCHECK passes',
  async (t) => {
    const [exe, script, ...args] = command;
    t.equal(fromImage(exe as string), paths.windowsNodeExe());
    const local = fromImage(script as string);
    t.equal(local, join(ROOT, 'bin', 'keyport.js'), `${script} is bin/keyport.js`);
    const env = translatedEnv(runtimeEnv);
    const shipped = readFileSync(join(ROOT, 'deploy', 'keyport.json'), 'utf8');
    const api = JSON.parse(shipped).api.address as string;
    t.equal(api, '127.0.0.1:9180', 'the shipped config keeps the API inside the container');

    const exact = (await portFree(9180, '127.0.0.1')) && (await portFree(7007, '0.0.0.0'));
    if (!exact) {
      // Another keyport on this machine holds a port of the shipped config: run the same command
      // with a copy of it whose ports are 0 (CI runs alone, so there it is the exact one).
      process.stderr.write(
        '\n*** dockerfile-windows: 9180 or 7007 is busy here: running the entry command with an ephemeral-port copy of deploy/keyport.json\n\n',
      );
      env.KEYPORT_CONFIG = toWindowsPath(ephemeralCopy(shipped, tmp));
    }
    const k = runWin(local as string, args, env);
    t.teardown(() => stop(k));
    const base = await apiOf(k);
    if (exact) t.equal(base, 'http://127.0.0.1:9180', 'the API where the HEALTHCHECK looks');
    else env.KEYPORT_HEALTHCHECK_URL = `${base}/healthz`;
    t.match(k.log(), /"backend":"iocp"/, 'auto is iocp on Windows');

    const h = await get(`${base}/healthz`);
    t.equal(h.status, 200);
    t.match(h.body, { status: 'ok' });
    t.equal(await healthcheckExit(env), 0, 'the HEALTHCHECK command exits 0');

    const listeners = (await get(`${base}/listeners`)).body as { items: { address: string }[] };
    t.equal(listeners.items.length, 1);
    const port = Number(listeners.items[0]?.address.split(':').pop());
    if (exact) t.equal(port, 7007);
    const c = await connect(port);
    c.write('through the image');
    t.equal((await readBytes(c, 17)).toString(), 'through the image', 'the echo listener echoes');
    c.destroy();

    t.equal(await stop(k, 'SIGINT'), 0, 'Ctrl+C: drained, exit 0');
    t.not(await healthcheckExit(env), 0, 'and the HEALTHCHECK fails once keyport is gone');
  },
);

t.test('the API beyond loopback: refused without a token, served with a mounted one', async (t) => {
  const local = fromImage(command[1] as string) as string;
  const env = translatedEnv(runtimeEnv);
  env.KEYPORT_CONFIG = toWindowsPath(
    ephemeralCopy(readFileSync(join(ROOT, 'deploy', 'keyport.json'), 'utf8'), tmp),
  );
  env.KEYPORT_API = '0.0.0.0:0';

  const bare = runWin(local, [], env);
  t.equal(await bare.exited, 2, 'no token: keyport refuses to start');
  t.match(bare.log(), /without a token[\s\S]*KEYPORT_TOKEN_FILE/);

  // What docs/container.md tells the operator: mount a folder with the token, point at it.
  const k = runWin(local, [], { ...env, KEYPORT_TOKEN_FILE: toWindowsPath(tokenFile) });
  t.teardown(() => stop(k));
  const base = await apiOf(k);
  t.equal((await get(`${base}/healthz`)).status, 200, '/healthz needs no token');
  t.equal((await get(`${base}/metrics`)).status, 200, 'reads need none with protect: commands');
  const del = await fetch(`${base}/listeners/l1`, { method: 'DELETE' });
  t.equal(del.status, 401, 'commands need the token');
  t.notMatch(k.log(), readFileSync(tokenFile, 'utf8').trim(), 'the token is never logged');
  t.equal(await stop(k, 'SIGINT'), 0);
});

// ---- the Windows service (WinSW) ----------------------------------------------------------------

const serviceXml = readFileSync(
  join(ROOT, 'deploy', 'windows-service', 'keyport-service.xml'),
  'utf8',
);
const xmlBody = serviceXml.replace(/<!--[\s\S]*?-->/g, '');
const xml = (tag: string) =>
  [...xmlBody.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, 'g'))].map((m) => m[1] as string);
const serviceConfigComment = /<!--([\s\S]*?)-->/.exec(serviceXml)?.[1] ?? '';

/** A WinSW 3 duration ("30 sec", "1 min", "500 ms"; its suffixes, XmlServiceConfig.cs) in ms. */
const WINSW_UNITS: Record<string, number> = { ms: 1, sec: 1e3, secs: 1e3, min: 6e4, mins: 6e4 };
function winswMs(v: string | undefined): number {
  const m = /^(\d+)\s*([a-z]*)$/.exec((v ?? '').trim());
  return m ? Number(m[1]) * (WINSW_UNITS[m[2] || 'ms'] ?? Number.NaN) : Number.NaN;
}
/** The one command-line argument of <arguments>, without the quotes WinSW passes on. */
const serviceScript = () => (xml('arguments')[0] ?? '').replace(/^"(.*)"$/, '$1');

t.test(
  'the WinSW 3 service definition: Ctrl+C, time to drain, pre-shutdown, a virtual account',
  async (t) => {
    t.same(xml('id'), ['keyport']);
    t.match(xml('executable')[0], /\\nodejs\\node\.exe$/, 'Node from its Windows installer');
    const stopTimeout = winswMs(xml('stoptimeout')[0]);
    const deadline = JSON.parse(
      readFileSync(join(ROOT, 'deploy', 'keyport.json'), 'utf8'),
    ).shutdownDeadlineMs;
    t.ok(
      stopTimeout >= deadline + 5000,
      `stoptimeout ${stopTimeout} ms > shutdownDeadlineMs ${deadline} + 5 s`,
    );
    // At system shutdown: SERVICE_CONTROL_PRESHUTDOWN, and Windows waits preshutdownTimeout
    // (10 s by default) for the same Ctrl+C stop, which may take up to stoptimeout.
    t.same(xml('preshutdown'), ['true'], 'pre-shutdown: the drain is not cut by shutdown');
    const pre = winswMs(xml('preshutdownTimeout')[0]);
    t.ok(pre > stopTimeout, `preshutdownTimeout ${pre} ms > stoptimeout ${stopTimeout} ms`);
    // The virtual account NT SERVICE\<id>: no password, its own SID (for the token's ACL).
    t.same(xml('username'), [`NT SERVICE\\${xml('id')[0]}`], 'runs as NT SERVICE\\keyport');
    t.notMatch(xmlBody, /<password>/i, 'no password in the file');
    // What WinSW 3 no longer reads (docs/migrate-to-3-x.md): it would be ignored silently.
    for (const gone of ['argument', 'stopparentprocessfirst', 'domain', 'user', 'waithint']) {
      t.same(xml(gone), [], `no WinSW 2 <${gone}>`);
    }
    t.match(xmlBody, /<env name="KEYPORT_CONFIG" value="%ProgramData%\\keyport\\keyport\.json"\/>/);
    t.equal(xml('arguments').length, 1);
    t.notMatch(serviceScript(), /\s--?\w/, 'one argument: the script');
    t.match(serviceConfigComment, /WinSW 3\.0\.0-alpha\.11/, 'the version is pinned in the file');
  },
);

t.test("the service's command under Wine; stop (Ctrl+C, as WinSW sends it) drains", async (t) => {
  // %BASE% is the folder of keyport-service.exe, i.e. deploy/windows-service in the checkout.
  const base = join(ROOT, 'deploy', 'windows-service');
  const arg = serviceScript().replace('%BASE%', base).replaceAll('\\', '/');
  const script = resolve(arg);
  t.equal(script, join(ROOT, 'bin', 'keyport.js'), `${xml('arguments')[0]} is bin/keyport.js`);
  t.equal(
    resolve(xml('workingdirectory')[0]?.replace('%BASE%', base).replaceAll('\\', '/') ?? ''),
    ROOT,
  );
  // The file docs/windows-service.md has you copy to %ProgramData%\keyport\keyport.json.
  const config = ephemeralCopy(
    readFileSync(join(ROOT, 'deploy', 'keyport.json'), 'utf8'),
    mkdtempSync(join(tmp, 'svc-')),
  );
  const k = runWin(script, [], { KEYPORT_CONFIG: toWindowsPath(config) });
  t.teardown(() => stop(k));
  const api = await apiOf(k);
  const listeners = (await get(`${api}/listeners`)).body as { items: { address: string }[] };
  const c = await connect(Number(listeners.items[0]?.address.split(':').pop()));
  c.write('x');
  await readBytes(c, 1);
  const eof = closed(c);
  k.child.kill('SIGINT'); // Wine delivers it to node.exe as CTRL_C_EVENT, like WinSW's stop
  // The drain lets the open connection run to its natural end: the client finishes its
  // business during the drain, and its stream ends cleanly.
  await new Promise((r) => setTimeout(r, 500));
  c.write('y');
  t.equal((await readBytes(c, 1)).toString(), 'y', 'a connection is still served during the drain');
  c.end();
  t.match(await eof, { how: 'end' }, 'the client gets a graceful EOF, not a reset');
  t.equal(await k.exited, 0, 'exit 0: drained within shutdownDeadlineMs');
  t.match(k.log(), /SIGINT: shutting down/);
  t.match(k.log(), /"drained":true/);
});

// ---- Kubernetes and Prometheus ------------------------------------------------------------------

const manifests = parseAllDocuments(
  readFileSync(join(ROOT, 'deploy', 'kubernetes', 'keyport.yaml'), 'utf8'),
  // biome-ignore lint/suspicious/noExplicitAny: a Kubernetes manifest is whatever YAML it is
).map((d) => d.toJS() as any);
const deployment = manifests.find((m) => m.kind === 'Deployment');
const pod = deployment?.spec.template;
const container = pod?.spec.containers[0];
const configMap = manifests.find((m) => m.kind === 'ConfigMap');

t.test(
  'the Kubernetes manifest: Windows nodes, probes, scrape annotations, API kept inside',
  async (t) => {
    // Windows nodes of the image's own build (test/ship/deploy-kubernetes.test.ts checks it in full).
    t.match(pod.spec.nodeSelector, {
      'kubernetes.io/os': 'windows',
      'node.kubernetes.io/windows-build': df.globalArgs.get('WINDOWS_BUILD')?.replace(/\.\d+$/, ''),
    });
    t.equal(pod.spec.securityContext.windowsOptions.runAsUserName, 'ContainerUser');
    t.notMatch(container.image, /:latest$|^[^:]+$/, `image ${container.image} has a fixed tag`);
    const api = container.ports.find((p: { name: string }) => p.name === 'api');
    t.equal(api.containerPort, 9180);
    t.match(container.livenessProbe.httpGet, { path: '/healthz', port: 'api' });
    t.match(container.readinessProbe.httpGet, { path: '/readyz', port: 'api' });
    t.match(pod.metadata.annotations, {
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '9180',
      'prometheus.io/path': '/metrics',
    });
    for (const svc of manifests.filter((m) => m.kind === 'Service')) {
      for (const p of svc.spec.ports) {
        t.not(p.port, 9180, `Service ${svc.metadata.name} does not expose the API`);
        t.not(p.targetPort, 'api');
      }
    }
    t.notOk(
      manifests.some((m) => m.kind === 'Secret'),
      'no Secret (and so no token) in the file',
    );

    // The token comes from a Secret mounted as a folder, where KEYPORT_TOKEN_FILE points.
    const tokenEnv = container.env.find((e: { name: string }) => e.name === 'KEYPORT_TOKEN_FILE');
    const secretVol = pod.spec.volumes.find((v: { secret?: unknown }) => v.secret);
    const secretMount = container.volumeMounts.find(
      (m: { name: string }) => m.name === secretVol.name,
    );
    t.equal(
      dirname(tokenEnv.value.replaceAll('\\', '/')),
      secretMount.mountPath.replaceAll('\\', '/'),
    );
    t.equal(secretMount.readOnly, true);
    // The ConfigMap replaces the image's config folder, where the image's KEYPORT_CONFIG points.
    const cfgVol = pod.spec.volumes.find((v: { configMap?: { name: string } }) => v.configMap);
    const cfgMount = container.volumeMounts.find((m: { name: string }) => m.name === cfgVol.name);
    t.equal(
      lower(cfgMount.mountPath),
      lower(dirname(runtimeEnv.KEYPORT_CONFIG?.replaceAll('\\', '/') ?? '').replaceAll('/', '\\')),
    );
    t.ok(configMap.data['keyport.json'], 'the ConfigMap holds keyport.json');

    // preStop drains with the tools the image ships, within the grace period.
    const [exe, drainScript, , deadline] = container.lifecycle.preStop.exec.command;
    t.equal(exe, imageNodeExe);
    t.equal(fromImage(drainScript), join(ROOT, 'deploy', 'keyport-drain.mjs'));
    const shutdown = JSON.parse(configMap.data['keyport.json']).shutdownDeadlineMs ?? 5000;
    t.ok(
      pod.spec.terminationGracePeriodSeconds * 1000 > Number(deadline) + shutdown,
      'grace period covers drain + shutdown',
    );
  },
);

t.test(
  "the ConfigMap's keyport.json starts keyport: /readyz answers; the preStop drain works",
  async (t) => {
    const cfg = ephemeralCopy(configMap.data['keyport.json'], mkdtempSync(join(tmp, 'k8s-')));
    const env = { ...translatedEnv(runtimeEnv), KEYPORT_CONFIG: toWindowsPath(cfg) };
    const bare = runWin(fromImage(command[1] as string) as string, [], env);
    t.equal(await bare.exited, 2, 'without the Secret keyport refuses the pod-wide API');

    const k = runWin(fromImage(command[1] as string) as string, [], {
      ...env,
      KEYPORT_TOKEN_FILE: toWindowsPath(tokenFile),
    });
    t.teardown(() => stop(k));
    const api = await apiOf(k);
    const ready = await get(`${api}/readyz`);
    t.equal(ready.status, 200, 'the readiness probe passes');
    t.equal((await get(`${api}/healthz`)).status, 200, 'the liveness probe passes');

    const listeners = (await get(`${api}/listeners`)).body as { items: { address: string }[] };
    const c = await connect(Number(listeners.items[0]?.address.split(':').pop()));
    // The preStop hook's own command, with the pod's environment, under Wine (plus --api: the
    // port here is ephemeral; in the pod it is the default 127.0.0.1:9180).
    const [hookExe, hookScript, ...hookArgs] = container.lifecycle.preStop.exec.command;
    t.equal(fromImage(hookExe), paths.windowsNodeExe());
    const drainLocal = fromImage(hookScript) as string;
    const noToken = runWin(drainLocal, ['--api', api, ...hookArgs], env);
    t.equal(await noToken.exited, 1, 'without the token the drain is refused (exit 1)');
    t.match(noToken.log(), /401/);
    setTimeout(() => c.end(), 1500); // a client that finishes its work during the drain
    const drain = runWin(drainLocal, ['--api', api, ...hookArgs], {
      ...env,
      KEYPORT_TOKEN_FILE: toWindowsPath(tokenFile),
    });
    t.equal(await drain.exited, 0, 'the hook ends as soon as the last connection is done');
    t.match(drain.log(), /l1 \(.*\) draining, 1 connection/, 'every listener is asked to drain');
    t.match(drain.log(), /drained in \d+ ms/);
    const after = (await get(`${api}/listeners`)).body as { items: { state: string }[] };
    t.ok(
      after.items.every((l) => l.state !== 'listening'),
      'no listener accepts any more',
    );
    t.equal(await stop(k, 'SIGINT'), 0);
  },
);

t.test('deploy/prometheus-kubernetes.yml: one Prometheus, every replica by pod', async (t) => {
  const text = readFileSync(join(ROOT, 'deploy', 'prometheus-kubernetes.yml'), 'utf8');
  const doc = parseAllDocuments(text)[0]?.toJS();
  const job = doc.scrape_configs[0];
  t.equal(job.kubernetes_sd_configs[0].role, 'pod', 'pods, not the load-balanced Service');
  t.same(job.kubernetes_sd_configs[0].namespaces.names, [deployment.metadata.namespace]);
  const keep = job.relabel_configs.find((r: { source_labels: string[] }) =>
    r.source_labels.includes('__meta_kubernetes_pod_label_app_kubernetes_io_name'),
  );
  t.equal(keep.regex, pod.metadata.labels['app.kubernetes.io/name']);
  t.ok(
    job.relabel_configs.some((r: { target_label: string }) => r.target_label === 'pod'),
    'a pod label keeps replicas apart',
  );
  // The address rewrite, as Prometheus applies it (anchored RE2; the same syntax in JS here).
  const addr = job.relabel_configs.find(
    (r: { target_label: string }) => r.target_label === '__address__',
  );
  const m = new RegExp(`^(?:${addr.regex})$`).exec('10.244.1.7:7007;9180');
  t.equal(addr.replacement.replace('$1', m?.[1]).replace('$2', m?.[2]), '10.244.1.7:9180');

  // promtool validates everything else; Debian's build has no Kubernetes discovery, so the
  // discovery is swapped for a static target first.
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (r.error) {
    t.fail('promtool is not installed: apt-get install -y prometheus (.ci/run does)');
    return;
  }
  const staticCopy = join(tmp, 'prometheus-static.yml');
  const copy = parse(text);
  delete copy.scrape_configs[0].kubernetes_sd_configs;
  copy.scrape_configs[0].static_configs = [{ targets: ['127.0.0.1:9180'] }];
  writeFileSync(staticCopy, stringify(copy));
  const check = spawnSync('promtool', ['check', 'config', staticCopy], { encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check config: ${check.stdout}${check.stderr}`);
});
