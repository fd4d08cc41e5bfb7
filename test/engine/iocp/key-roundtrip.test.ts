// "I passed key 100 and got something else back": on a real completion port (the Windows Node
// under Wine on Linux), a completion posted with key 100 and an extended OVERLAPPED record comes
// back with the same key, the same record address, and the op id stored in that record.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from '../../helpers/keyport.js';

async function runSelftest(name = 'selftest'): Promise<string> {
  const script = join(ROOT, 'dist', 'engine', 'iocp', `${name}.js`);
  if (process.platform === 'win32') {
    return new Promise((res, rej) => {
      const p = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`selftest exit ${code}`))));
    });
  }
  const { runWindowsNode } = await import('../../../dist/launcher/wine.js');
  const dir = join(ROOT, 'test-output');
  mkdirSync(dir, { recursive: true });
  const log = join(dir, `${name}-${process.pid}.log`);
  rmSync(log, { force: true });
  const child = runWindowsNode(script, [], { logFile: log });
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  const out = readFileSync(log, 'utf8');
  if (code !== 0) throw new Error(`selftest exited ${code}:\n${out}`);
  return out;
}

t.test('a completion posted with key 100 comes back with key 100 and its own record', async (t) => {
  const out = await runSelftest();
  const line = out.trim().split('\n').pop() ?? '';
  const r = JSON.parse(line) as {
    platform: string;
    posted: { key: string; record: string; opId: number; generation: number; bytes: number };
    dequeued: {
      key: string;
      record: string;
      opId: number;
      generation: number;
      bytes: number;
      batch: number;
    };
  };
  t.equal(r.platform, 'win32 x64', 'ran on the Windows code path');
  t.equal(r.posted.key, '100');
  t.equal(r.dequeued.key, '100', 'the completion key is the one the packet was posted with');
  t.equal(r.dequeued.record, r.posted.record, 'the OVERLAPPED address identifies the record');
  t.equal(r.dequeued.opId, r.posted.opId, 'the op id read back from the pinned record matches');
  t.equal(r.dequeued.generation, r.posted.generation);
  t.equal(r.dequeued.bytes, 4242, 'the byte count travels in the packet');
  t.equal(r.dequeued.batch, 1, 'one packet, one entry in the batch');
  t.not(r.posted.record, '0x0000000000000000');
});

t.test(
  'on real sockets, any key comes back verbatim: small, past 32 bits, top bit set',
  async (t) => {
    const out = await runSelftest('selftest-keys');
    const r = JSON.parse(out.trim().split('\n').pop() ?? '') as {
      platform: string;
      listenerKey: string;
      results: Array<{
        associated: string;
        acceptDequeuedKey: string;
        acceptRecordMatches: boolean;
        recvDequeuedKey: string;
        recvRecordMatches: boolean;
        recvBytes: number;
        recvStatus: number;
      }>;
    };
    t.equal(r.platform, 'win32 x64', 'ran on the Windows code path');
    t.equal(r.results.length, 5);
    for (const x of r.results) {
      t.equal(x.acceptDequeuedKey, r.listenerKey, `AcceptEx completed with the LISTENER key`);
      t.ok(x.acceptRecordMatches, 'and named its own record');
      t.equal(x.recvDequeuedKey, x.associated, `key 0x${x.associated} dequeued verbatim`);
      t.ok(x.recvRecordMatches, 'the WSARecv packet named its own record');
      t.equal(x.recvBytes, 1);
      t.equal(x.recvStatus, 0);
    }
  },
);
