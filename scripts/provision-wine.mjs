#!/usr/bin/env node
// Provisions the Windows code path on Linux (a Wine, the Windows Node, koffi's Windows binary, a
// Wine prefix of the project's own). Idempotent; a no-op on Windows. Needs `npm run build` first.
//   node scripts/provision-wine.mjs              Wine 8 (Debian's, on the host) + Node 22
//   node scripts/provision-wine.mjs --wine 10    Wine 10 (a Debian trixie root in .cache/) + Node 24
//   node scripts/provision-wine.mjs --wine 10 --remove   removes Wine 10's root and prefix
//   node scripts/provision-wine.mjs [--wine N] --wait     waits for that prefix's wineserver to exit
// Without --wine, KEYPORT_WINE (default 8) decides; KEYPORT_WINDOWS_NODE, KEYPORT_WINE_LOADER and
// KEYPORT_WINESERVER apply as they do to the launcher (src/launcher/paths.ts).
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    wine: { type: 'string' },
    remove: { type: 'boolean', default: false },
    wait: { type: 'boolean', default: false },
  },
});
if (process.platform !== 'win32') {
  if (opt.wine !== undefined) process.env.KEYPORT_WINE = opt.wine;
  const { provisionWine, removeWine10, waitForWineserver } = await import(
    '../dist/launcher/provision.js'
  );
  const log = (l) => process.stderr.write(`keyport: ${l}\n`);
  try {
    if (opt.wait) {
      waitForWineserver();
    } else if (opt.remove) {
      if (process.env.KEYPORT_WINE !== '10') throw new Error('--remove is for --wine 10 only');
      removeWine10(log);
    } else {
      const p = provisionWine(log);
      console.log(
        `keyport: Windows code path ready: Wine ${p.release} (${p.wineLoader}), Windows Node ${p.nodeVersion} (${p.nodeExe})`,
      );
    }
  } catch (err) {
    console.error(`keyport: ${err.message}`);
    process.exit(1);
  }
}
