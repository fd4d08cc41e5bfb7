// The state file's writer and reader, without an engine: a round trip leaves no temp file
// behind, and a cut or malformed file is named by path and JSON pointer.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { pointerAt } from '../../src/config/json-file.js';
import { readStateFile, writeStateFile } from '../../src/config/state-file.js';
import { ROOT } from '../helpers/keyport.js';

const dir = join(ROOT, 'test-output', `state-unit-${process.pid}`);
mkdirSync(dir, { recursive: true });

t.test('write then read: the same listeners, no temp file left', async (t) => {
  const path = join(dir, 'round.json');
  const listeners = [
    { address: '127.0.0.1:7010', mode: 'echo' as const, idleTimeoutMs: 1000 },
    { address: '[::1]:7011', mode: 'forward' as const, target: 'db.example:5432', allow: ['::1'] },
  ];
  writeStateFile(path, listeners);
  writeStateFile(path, listeners); // over an existing file
  t.same(readStateFile(path), listeners);
  t.same(readdirSync(dir), ['round.json'], 'only the file itself');
  t.same(readStateFile(join(dir, 'absent.json')), [], 'a file not written yet is empty');
});

t.test('a file cut anywhere is an error naming the field it was cut in', async (t) => {
  const path = join(dir, 'cut.json');
  writeStateFile(path, [
    { address: '127.0.0.1:7010', mode: 'echo' },
    { address: '127.0.0.1:7011', mode: 'forward', target: '10.0.0.1:80' },
  ]);
  const whole = readFileSync(path, 'utf8');
  for (let n = 1; n < whole.trimEnd().length; n += 7) {
    writeFileSync(path, whole.slice(0, n));
    t.throws(() => readStateFile(path), new RegExp(`^state file ${path}: /\\S*: not valid JSON`));
  }
  t.equal(pointerAt(whole, whole.indexOf('"target"') + 3), '/listeners/1/target');
  t.equal(pointerAt(whole, whole.indexOf('7011')), '/listeners/1/address');
  t.equal(pointerAt(whole, whole.indexOf('"version"') + 1), '/version');
  writeFileSync(path, '');
  t.throws(() => readStateFile(path), /: \/: not valid JSON .*the file is empty/);
  writeFileSync(path, JSON.stringify({ version: 2, listeners: [] }));
  t.throws(() => readStateFile(path), /: \/version: /);
});
