#!/usr/bin/env node
// Provisions the Windows code path on Linux (Wine, the Windows Node, koffi's Windows binary, a
// Wine prefix of the project's own). Idempotent; a no-op on Windows. Needs `npm run build` first.
if (process.platform !== 'win32') {
  const { provisionWine } = await import('../dist/launcher/provision.js');
  try {
    const p = provisionWine();
    console.log(`keyport: Windows code path ready (${p.nodeExe})`);
  } catch (err) {
    console.error(`keyport: ${err.message}`);
    process.exit(1);
  }
}
