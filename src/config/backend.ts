// Which completion backend runs, decided once from the settings (CLI over environment over the
// config file): `auto` is IOCP on Windows and io_uring on Linux; `iocp` on Linux is the
// Windows build of Node under Wine, started by the launcher, running the same code.
export const BACKENDS = ['auto', 'iocp', 'uring'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export type BackendName = 'iocp' | 'uring';

export function resolveBackend(
  choice: BackendChoice,
  platform: NodeJS.Platform = process.platform,
): BackendName {
  if (choice !== 'auto') return choice;
  return platform === 'win32' ? 'iocp' : 'uring';
}
