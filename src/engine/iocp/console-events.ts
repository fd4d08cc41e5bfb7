// Console control events: Ctrl+C, Ctrl+Break, the console closed, logoff, system shutdown.
// `docker stop` on a Windows container sends CTRL_SHUTDOWN_EVENT, and Node has no signal for it
// (libuv turns Ctrl+C into SIGINT, Ctrl+Break into SIGBREAK, the console's close into SIGHUP):
// without a handler of our own the system's default one ends the process at once. Windows runs
// the handlers on a thread of its own, newest first, until one returns TRUE; koffi runs our JS
// on the main thread while that thread waits for the answer.
import { BackendError, type ConsoleEvent, type ConsoleHandler } from '../backend.js';
import { FAULTS } from '../faults.js';
import { win32ErrorName } from './errors.js';
import * as w from './win32.js';

const EVENTS: Record<number, ConsoleEvent> = {
  0: 'ctrl-c',
  1: 'ctrl-break',
  2: 'close',
  5: 'logoff',
  6: 'shutdown',
};

/** The registered callbacks, kept so that none is collected while Windows may call it. */
const registered: unknown[] = [];

/** Adds `handler` in front of the handlers registered before it (Windows calls newest first). */
export function watchConsoleEvents(handler: ConsoleHandler): void {
  const callback = w.koffi.register((type: number): number => {
    const event = EVENTS[type];
    if (!event) return 0;
    try {
      return handler(event) ? 1 : 0;
    } catch (err) {
      process.stderr.write(`keyport: console handler (${event}): ${String(err)}\n`);
      return 0;
    }
  }, w.koffi.pointer(w.HandlerRoutineProto));
  if (!w.SetConsoleCtrlHandler(callback, 1)) {
    const code = w.GetLastError();
    w.koffi.unregister(callback);
    throw new BackendError('SetConsoleCtrlHandler', code, win32ErrorName(code));
  }
  registered.push(callback);
}

/**
 * Test fault (ctrl-c-as:N): a Ctrl+C that no later handler took is delivered again as console
 * event N, the way Windows delivers it. Wine turns SIGINT into Ctrl+C but cannot send the
 * others. Registered when the backend starts, so keyport's own handler comes before it.
 */
export function watchCtrlCAsFault(): void {
  if (FAULTS.ctrlCAs <= 0) return;
  watchConsoleEvents((event) => {
    if (event !== 'ctrl-c') return false;
    raiseConsoleEvent(FAULTS.ctrlCAs);
    return true;
  });
}

/**
 * Delivers console event `type` to this process the way Windows does: a new thread runs
 * kernelbase's CtrlRoutine, which calls the handlers newest first (the last, the system's,
 * ends the process).
 */
function raiseConsoleEvent(type: number): void {
  const kernelbase = w.GetModuleHandleW('kernelbase.dll');
  const routine = kernelbase ? w.GetProcAddress(kernelbase, 'CtrlRoutine') : null;
  if (!routine) throw new Error('kernelbase.dll has no CtrlRoutine');
  const thread = w.CreateThread(null, 0, routine, type, 0, null);
  if (!thread) {
    const code = w.GetLastError();
    throw new BackendError('CreateThread', code, win32ErrorName(code));
  }
  w.CloseHandle(thread);
}
