#!/usr/bin/env node
// keyport's command: see src/launcher/main.ts (run `npm run build` first when working from a checkout).
import { launch } from '../dist/launcher/main.js';

launch(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`keyport: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
