// The operator guide (docs/) and README.md say only what keyport really has: the generated
// references match the schema and the OpenAPI document, and every npm script, keyport flag,
// environment variable, route, metric, file and link they name exists.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers/keyport.js';
import { publicReadsControl } from '../helpers/stub-control.js';

const DOCS = join(ROOT, 'docs');
const docFiles = readdirSync(DOCS)
  .filter((f) => f.endsWith('.md'))
  .map((f) => join(DOCS, f));
const files = [...docFiles, join(ROOT, 'README.md')];
const text = new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));
const rel = (f: string) => relative(ROOT, f);

/** The code of a Markdown file: fenced blocks and inline code spans, line by line. */
function codeLines(md: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of md.split('\n')) {
    if (line.trimStart().startsWith('```')) {
      fenced = !fenced;
      continue;
    }
    if (fenced) out.push(line);
    else for (const [, span] of line.matchAll(/`([^`]+)`/g)) out.push(span as string);
  }
  return out;
}

function run(script: string, args: string[]) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // the test runner's loader has no business in these scripts
  return spawnSync(process.execPath, [join(ROOT, script), ...args], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
  });
}

t.test('docs/configuration.md and docs/api.md are what the generators write', async (t) => {
  for (const script of ['scripts/gen-config-doc.mjs', 'scripts/gen-api-doc.mjs']) {
    const r = run(script, ['--check']);
    t.equal(r.status, 0, `${script} --check: ${r.stdout}${r.stderr}`.trim());
  }
  const config = readFileSync(join(DOCS, 'configuration.md'), 'utf8');
  const { ConfigFile } = await import('../../dist/config/schema.js');
  const listener = ConfigFile.properties.listeners.items.properties;
  for (const name of Object.keys(listener)) {
    t.match(config, `\`listeners[].${name}\``, `the reference has listeners[].${name}`);
  }
  const api = readFileSync(join(DOCS, 'api.md'), 'utf8');
  // Routes documented as never needing the token answer without it, even with protect: all.
  const { buildApi } = await import('../../dist/api/app.js');
  const app = buildApi({
    control: publicReadsControl,
    auth: { token: 'a-long-enough-secret-token', protect: 'all' },
  });
  t.teardown(() => app.close());
  for (const [, method, path] of api.matchAll(/^\| `([A-Z]+) (\/\S*)` \|.*\| never \|/gm)) {
    const r = await app.inject({ method: method as string, url: path as string });
    t.not(r.statusCode, 401, `${method} ${path} answers without the token`);
  }
  const spec = JSON.parse(readFileSync(join(ROOT, 'openapi', 'openapi.json'), 'utf8'));
  for (const path of Object.keys(spec.paths)) t.match(api, `${path}\``, `api.md lists ${path}`);
});

t.test('docs/README.md indexes every page', async (t) => {
  const index = readFileSync(join(DOCS, 'README.md'), 'utf8');
  for (const f of docFiles.filter((f) => !f.endsWith('README.md'))) {
    const name = f.slice(DOCS.length + 1);
    t.match(index, `](${name})`, `docs/README.md links ${name}`);
  }
});

/** GitHub's heading anchors. */
function anchors(md: string): Set<string> {
  const out = new Set<string>();
  for (const [, h] of md.matchAll(/^#{1,6} (.+)$/gm)) {
    out.add(
      (h as string)
        .toLowerCase()
        .replace(/[`*]/g, '')
        .replace(/[^\w\- ]/g, '')
        .replace(/ /g, '-'),
    );
  }
  return out;
}

t.test('every relative link and anchor resolves', async (t) => {
  for (const [file, md] of text) {
    for (const [, target] of md.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target as string)) continue; // http:, https:, mailto:
      const [path, anchor] = (target as string).split('#');
      const dest = path ? resolve(dirname(file), path) : file;
      t.ok(existsSync(dest), `${rel(file)} → ${target}`);
      if (anchor && dest.endsWith('.md') && existsSync(dest)) {
        t.ok(anchors(readFileSync(dest, 'utf8')).has(anchor), `${rel(file)} → ${target}: anchor`);
      }
    }
  }
});

t.test('every file the docs name exists', async (t) => {
  for (const [file, md] of text) {
    for (const [, p] of md.matchAll(
      /`((?:deploy|scripts|test|src|openapi|docs|bin)\/[\w./-]*\w|Dockerfile\.windows|\.dockerignore)`/g,
    )) {
      // README names some tests by their prefix (`test/engine/hostile`): a prefix of a file counts.
      const full = join(ROOT, p as string);
      const prefix = existsSync(dirname(full))
        ? readdirSync(dirname(full)).some((f) => f.startsWith(full.slice(dirname(full).length + 1)))
        : false;
      t.ok(existsSync(full) || prefix, `${rel(file)}: ${p}`);
    }
  }
});

t.test('every `npm run X` is a script of package.json', async (t) => {
  const scripts = Object.keys(
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts as object,
  );
  let n = 0;
  for (const [file, md] of text) {
    for (const line of codeLines(md)) {
      for (const [, name] of line.matchAll(/\bnpm run (?:-s\s+)?([\w:.-]+)/g)) {
        n++;
        t.ok(scripts.includes(name as string), `${rel(file)}: npm run ${name}`);
      }
      for (const [, cmd] of line.matchAll(/\bnpm (start|test|ci|prune)\b/g)) {
        t.ok(cmd === 'ci' || cmd === 'prune' || scripts.includes(cmd as string), `npm ${cmd}`);
      }
    }
  }
  t.ok(n > 0, `${n} npm run commands checked`);
});

t.test(
  "every keyport flag is in keyport's USAGE, every drain flag in the drain tool",
  async (t) => {
    const { USAGE } = await import('../../dist/config/cli.js');
    const known = new Set([...USAGE.matchAll(/(?:^|\s)(--?[a-z][\w-]*)/g)].map((m) => m[1]));
    const drainSource = readFileSync(join(ROOT, 'deploy', 'keyport-drain.mjs'), 'utf8');
    const drainFlags = new Set(
      [...drainSource.matchAll(/^\s+'?([a-z][\w-]*)'?: \{ type:/gm)].map((m) => `--${m[1]}`),
    );
    t.ok(drainFlags.has('--deadline-ms'), 'the drain tool has --deadline-ms');
    let n = 0;
    for (const [file, md] of text) {
      for (const line of codeLines(md)) {
        const keyportArgs =
          /bin[\\/]keyport\.js(.*)$/.exec(line)?.[1] ??
          /^\s*keyport (\[?--.*)$/.exec(line)?.[1] ??
          /\bnpm start -- (.*)$/.exec(line)?.[1] ??
          /\bkeyport:[\w.]+ (--.*)$/.exec(line)?.[1];
        const drainArgs = /keyport-drain\.mjs(.*)$/.exec(line)?.[1];
        for (const [args, set, what] of [
          [keyportArgs, known, 'keyport'],
          [drainArgs, drainFlags, 'keyport-drain.mjs'],
        ] as const) {
          if (!args) continue;
          for (const [, flag] of args.matchAll(/(?:^|[\s[])(--[a-z][\w-]*)/g)) {
            n++;
            t.ok(set.has(flag as string), `${rel(file)}: ${what} ${flag}`);
          }
        }
      }
    }
    t.ok(n > 5, `${n} flags checked`);
  },
);

t.test('every WinSW command is one WinSW 3 has', async (t) => {
  // The commands of WinSW 3.0.0-alpha.11 (its Program.cs), the release the service XML targets.
  const winsw = new Set(['install', 'uninstall', 'start', 'stop', 'restart', 'status', 'refresh']);
  for (const [file, md] of text) {
    for (const [, cmd] of md.matchAll(/keyport-service\.exe (\w+)/g)) {
      t.ok(winsw.has(cmd as string), `${rel(file)}: keyport-service.exe ${cmd}`);
    }
  }
});

t.test('every KEYPORT_* variable is read by the code or set by the deployment files', async (t) => {
  const sources: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else sources.push(readFileSync(p, 'utf8'));
    }
  };
  for (const d of ['src', 'scripts', 'deploy']) walk(join(ROOT, d));
  sources.push(readFileSync(join(ROOT, 'Dockerfile.windows'), 'utf8'));
  const all = sources.join('\n');
  for (const [file, md] of text) {
    for (const name of new Set([...md.matchAll(/\bKEYPORT_[A-Z_]*[A-Z]/g)].map((m) => m[0]))) {
      t.ok(all.includes(name), `${rel(file)}: ${name}`);
    }
  }
});

t.test('every route the docs name is in the API', async (t) => {
  const spec = JSON.parse(readFileSync(join(ROOT, 'openapi', 'openapi.json'), 'utf8'));
  const routes = Object.entries(spec.paths as Record<string, object>).flatMap(([p, ops]) =>
    Object.keys(ops).map((m) => ({ method: m.toUpperCase(), segs: p.split('/') })),
  );
  const extra = ['/docs', '/openapi.json'];
  const known = (method: string | null, path: string) =>
    extra.includes(path) ||
    routes.some(
      (r) =>
        (method === null || r.method === method) &&
        r.segs.length === path.split('/').length &&
        path.split('/').every((s, i) => r.segs[i] === s || /^\{.+\}$/.test(r.segs[i] ?? '')),
    );
  let n = 0;
  for (const [file, md] of text) {
    for (const [, method, path] of md.matchAll(/\b(GET|POST|DELETE) (\/[\w{}/.-]*)/g)) {
      n++;
      const p = path === '/' ? '/' : (path as string).replace(/\/$/, '');
      t.ok(known(method as string, p), `${rel(file)}: ${method} ${path}`);
    }
    for (const [, path] of md.matchAll(/127\.0\.0\.1:\d+(\/[\w{}/.-]+)/g)) {
      n++;
      t.ok(known(null, path as string), `${rel(file)}: ${path}`);
    }
  }
  t.ok(n > 20, `${n} routes checked`);
});

t.test('every metric the docs name is in the exposition', async (t) => {
  const { createMetrics } = await import('../../dist/metrics/keyport.js');
  const m = createMetrics(
    {
      ops: { inFlightOfKind: () => 0, quarantined: 0 },
      // One listener, so that the per-listener histograms have their _bucket series.
      listeners: new Map([['l1', { id: 'l1', connections: { size: 0 }, degraded: false }]]),
      connections: new Map(),
      anomalies: { counts: { stray: 0, 'key-mismatch': 0, duplicate: 0 } },
      buffers: { inUse: 0, provided: { available: 256 } },
      stats: { providedExhausted: 0 },
      splicePipes: { bytes: 0, inUse: 0 },
    },
    { apiThrottle: { waits: 0, waitedMs: 0 } },
  );
  const body = (await m.render()).body as string;
  const names = new Set(
    body
      .split('\n')
      .map((l) => /^(?:# TYPE )?(keyport_\w+)/.exec(l)?.[1])
      .filter((x): x is string => Boolean(x)),
  );
  let n = 0;
  for (const [file, md] of text) {
    for (const name of new Set(
      [...md.matchAll(/\bkeyport_[a-z0-9_]*[a-z0-9]/g)].map((x) => x[0]),
    )) {
      n++;
      t.ok(names.has(name), `${rel(file)}: ${name}`);
    }
  }
  t.ok(n > 15, `${n} metric names checked`);
});
