// The live status page: GET / and its assets under /ui/, served by keyport itself from files
// in the package (src/api/ui/page/, copied to dist/api/ui/page/ by the build) plus uPlot's one-file
// browser build from node_modules. No framework, no build server, no external request: the
// Content-Security-Policy allows only this origin. The page reads the same JSON API as curl
// does, and GET /events for live updates.
//
// The page and its assets carry no engine data, so they stay open even with api.protect = 'all'
// (src/api/auth.ts); the page then asks for the token before it can read anything.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { VERSION } from '../../version.js';
import { errorBody } from '../errors.js';
import { resourcePlugin } from '../shared/plugin.js';
import { ErrorRef } from '../shared/schemas.js';

export interface UiOptions {
  /** Whether a bearer token is configured, and what it protects. */
  auth: { tokenRequired: boolean; protect: 'commands' | 'all' };
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const UI_DIR = fileURLToPath(new URL('./page/', import.meta.url));
const require = createRequire(import.meta.url);

/**
 * The page's script: browser ES modules in src/api/ui/page/, main.js the entry index.html loads, the
 * rest what it imports (`./format.js` resolves to /ui/format.js). A module missing here is a 404
 * and the page never starts; test/browser/live-view.test.ts follows the imports to check them all.
 */
const UI_MODULES = [
  'main.js',
  'state.js',
  'format.js',
  'dom.js',
  'api.js',
  'prom.js',
  'samples.js',
  'chart.js',
  'poll.js',
  'events.js',
  'render.js',
  'render-connections.js',
  'render-ops.js',
  'render-events.js',
  'commands.js',
];

/** name under /ui/ → file. Only these are served: no path from the request reaches the disk. */
function assetFiles(): Record<string, { path: string; type: string }> {
  const js = 'text/javascript; charset=utf-8';
  const css = 'text/css; charset=utf-8';
  return {
    'index.html': { path: `${UI_DIR}index.html`, type: 'text/html; charset=utf-8' },
    ...Object.fromEntries(UI_MODULES.map((m) => [m, { path: `${UI_DIR}${m}`, type: js }])),
    'style.css': { path: `${UI_DIR}style.css`, type: css },
    'uPlot.iife.min.js': { path: require.resolve('uplot/dist/uPlot.iife.min.js'), type: js },
    'uPlot.min.css': { path: require.resolve('uplot/dist/uPlot.min.css'), type: css },
  };
}

function loadAssets(): Map<string, Asset> {
  const out = new Map<string, Asset>();
  for (const [name, { path, type }] of Object.entries(assetFiles())) {
    let body: Buffer;
    try {
      body = readFileSync(path);
    } catch {
      continue; // Reported per request: "run npm run build".
    }
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    out.set(name, { body, type, etag });
  }
  return out;
}

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // uPlot and the tables set element styles.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const UiConfig = Type.Object(
  {
    version: Type.String(),
    tokenRequired: Type.Boolean({
      description:
        'A bearer token is configured: commands need it (and reads too when protect is all)',
    }),
    protect: Type.Union([Type.Literal('commands'), Type.Literal('all')]),
  },
  { $id: 'UiConfig', additionalProperties: false },
);

export const uiRoutes = resourcePlugin<UiOptions>('ui', async (app, { auth }) => {
  app.addSchema(UiConfig);
  const known = new Set(Object.keys(assetFiles()));
  const assets = loadAssets();

  const send = (req: FastifyRequest, reply: FastifyReply, name: string): void => {
    const a = assets.get(name);
    if (!a) {
      void reply
        .code(404)
        .send(errorBody(404, `the page asset ${name} is missing: run npm run build`));
      return;
    }
    reply
      .header('etag', a.etag)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff');
    if (name === 'index.html')
      reply.header('content-security-policy', CSP).header('referrer-policy', 'no-referrer');
    if (req.headers['if-none-match'] === a.etag) void reply.code(304).send();
    else void reply.type(a.type).send(a.body);
  };

  app.get(
    '/',
    {
      config: { public: true },
      schema: {
        operationId: 'getStatusPage',
        summary: 'The live status page (HTML): listeners, connections, keys, ops, latency, events',
        tags: ['ui'],
        response: {
          200: {
            description: 'The page; it reads the JSON routes and GET /events',
            content: { 'text/html': { schema: Type.String() } },
          },
        },
      },
    },
    (req, reply) => {
      send(req, reply, 'index.html');
    },
  );

  app.get(
    '/ui/config',
    {
      config: { public: true },
      schema: {
        operationId: 'getUiConfig',
        summary: 'What the status page needs to know: whether commands (or reads) need a token',
        tags: ['ui'],
        response: { 200: Type.Ref('UiConfig') },
      },
    },
    async () => ({ version: VERSION, tokenRequired: auth.tokenRequired, protect: auth.protect }),
  );

  app.get(
    '/ui/:file',
    {
      config: { public: true },
      schema: {
        hide: true,
        params: Type.Object(
          { file: Type.String({ minLength: 1, maxLength: 64 }) },
          { additionalProperties: false },
        ),
        response: { 404: ErrorRef },
      },
    },
    (req, reply) => {
      const file = req.params.file;
      if (file === 'index.html' || !known.has(file))
        void reply.code(404).send(errorBody(404, `no route GET /ui/${file}`));
      else send(req, reply, file);
    },
  );
});
