// The launcher's watch over node.exe's end under Wine (src/launcher/exit-watch.ts): Wine 10 now
// and then leaves a process running after it called exit(). Once node.exe has logged its last
// line ("stopped", or a fatal error), the launcher ends it; if even SIGKILL does not end it, the launcher stops waiting and exits
// with the code node.exe asked for. A real child process stands in for node.exe.
import { spawn } from 'node:child_process';
import t from 'tap';
import { describeProcess, StoppedExitWatch } from '../../src/launcher/exit-watch.js';

const STOPPED_LINE =
  '{"level":30,"time":1,"pid":32,"hostname":"vm","drained":true,"msg":"stopped"}\n';

function watchOver(kill: () => void, pid?: number) {
  const said: string[] = [];
  let gaveUp: number | null = null;
  const watch = new StoppedExitWatch({
    exitGraceMs: 100,
    killGraceMs: 300,
    kill,
    giveUp: (code) => {
      gaveUp = code;
    },
    warn: (m) => said.push(m),
    pid: () => pid,
  });
  return { watch, said, gaveUp: () => gaveUp };
}

t.test(
  '"stopped" split across two reads still arms the watch, which ends the process',
  async (t) => {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    const ended = new Promise<string | null>((res) => child.on('exit', (_c, sig) => res(sig)));
    const w = watchOver(() => child.kill('SIGKILL'), child.pid);
    child.on('exit', () => w.watch.exited());
    const cut = STOPPED_LINE.indexOf('"msg"') + 3;
    w.watch.feed(`{"level":30,"msg":"listener stopped"}\n${STOPPED_LINE.slice(0, cut)}`);
    t.equal(w.watch.askedCode, null, 'half a line is not a line');
    w.watch.feed(STOPPED_LINE.slice(cut));
    t.equal(w.watch.askedCode, 0, 'drained: exit code 0');
    t.equal(await ended, 'SIGKILL', 'the process that did not exit was ended');
    t.same(w.said, ['node.exe asked to exit (0) but did not under Wine: ending it']);
    await new Promise((r) => setTimeout(r, 400));
    t.equal(w.gaveUp(), null, 'it ended: the launcher waits for its exit as usual');
  },
);

t.test('a process that exits by itself is left alone', async (t) => {
  let killed = false;
  const w = watchOver(() => {
    killed = true;
  });
  w.watch.feed(STOPPED_LINE.replace('true', 'false'));
  t.equal(w.watch.askedCode, 3, 'not drained: exit code 3');
  w.watch.exited();
  await new Promise((r) => setTimeout(r, 500));
  t.notOk(killed, 'not killed');
  t.same(w.said, []);
});

t.test(
  'a process that SIGKILL does not end: the launcher stops waiting, with the code asked for',
  async (t) => {
    let kills = 0;
    const w = watchOver(() => kills++, process.pid);
    w.watch.feed(STOPPED_LINE.replace('true', 'false'));
    await new Promise((r) => setTimeout(r, 600));
    t.equal(kills, 1, 'SIGKILL sent once');
    t.equal(w.gaveUp(), 3, "exits with node.exe's own code");
    t.match(
      w.said[1],
      /^node\.exe did not end even on SIGKILL \(pid \d+ state [A-Z], threads \d+:[A-Z]\//,
    );
  },
);

t.test('a fatal error is last words too: exit code 70', async (t) => {
  let kills = 0;
  const w = watchOver(() => kills++, process.pid);
  w.watch.feed(
    '{"level":50,"time":1,"pid":32,"hostname":"vm","err":"Error: boom\\n    at x","msg":"fatal error: exiting"}\nkeyport: fatal: Error: boom\n',
  );
  t.equal(w.watch.askedCode, 70);
  await new Promise((r) => setTimeout(r, 600));
  t.equal(kills, 1, 'ended when it did not exit');
  t.equal(w.gaveUp(), 70);
});

t.test('no "stopped" line, no watch', async (t) => {
  let killed = false;
  const w = watchOver(() => {
    killed = true;
  });
  w.watch.feed(
    '{"level":30,"msg":"listener stopped"}\n{"level":30,"msg":"SIGINT: shutting down"}\n',
  );
  await new Promise((r) => setTimeout(r, 300));
  t.equal(w.watch.askedCode, null);
  t.notOk(killed, 'a listener stopping is not the engine stopping');
});

t.test('describeProcess: a gone process says so', async (t) => {
  t.match(describeProcess(2 ** 22 + 12345), /no such process/);
});
