#!/usr/bin/env node
// Writes openapi/openapi.json from the built app (run `npm run build` first; the npm scripts
// `openapi` and `openapi:check` do). With --check, only compares and exits 1 when stale.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outFile = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url));
const check = process.argv.includes('--check');

const { buildApi } = await import(new URL('../dist/api/app.js', import.meta.url).href);

// The spec depends only on route schemas, never on engine state: a stub control suffices.
const app = buildApi({ control: { startedAt: Date.now() }, logger: false });
await app.ready();
const spec = `${JSON.stringify(app.swagger(), null, 2)}\n`;
await app.close();

const relative = outFile.slice(root.length);
if (check) {
  const committed = await readFile(outFile, 'utf8').catch(() => null);
  if (committed !== spec) {
    console.error(`${relative} is stale: run npm run openapi`);
    process.exit(1);
  }
  console.log(`${relative} is up to date`);
} else {
  await mkdir(dirname(outFile), { recursive: true });
  await writeFile(outFile, spec);
  console.log(`wrote ${relative}`);
}
