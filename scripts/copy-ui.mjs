#!/usr/bin/env node
// Part of `npm run build`: copies the status page's files (src/api/ui/page/, plain HTML, CSS and
// JavaScript modules that the browser runs as they are) next to the compiled routes, into
// dist/api/ui/page/. The whole folder: src/api/ui/routes.ts decides which of them are served.
import { cpSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../src/api/ui/page/', import.meta.url));
const to = fileURLToPath(new URL('../dist/api/ui/page/', import.meta.url));
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
