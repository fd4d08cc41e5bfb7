// The state file: the listeners created over the API, kept across restarts. Read once at
// start-up (any fault stops it, naming the path and the field, and the file is left as it is);
// written whole on each change: a temp file in the same directory, fsync, rename over.
import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ConfigError } from './config-error.js';
import { type ListenerInput, StateFile } from './schema.js';

const stateCheck = TypeCompiler.Compile(StateFile);

/** Line and column (1-based) of a character offset, for a JSON syntax error. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return `line ${line} column ${offset - before.lastIndexOf('\n')}`;
}

/**
 * The JSON pointer of the value being read at `offset` when the text stops or breaks there:
 * a light scan that tracks the containers and keys open at that point (a truncated file names
 * the listener entry and field it was cut in).
 */
export function pointerAt(text: string, offset: number): string {
  const path: Array<string | number> = [];
  const kinds: Array<'{' | '['> = [];
  let pendingKey: string | null = null;
  let i = 0;
  const end = Math.min(offset, text.length);
  while (i < end) {
    const ch = text[i] as string;
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const str = text.slice(i + 1, Math.min(j, text.length));
      // A string followed by ':' inside an object is a key.
      let k = j + 1;
      while (k < text.length && /\s/.test(text[k] as string)) k++;
      if (kinds[kinds.length - 1] === '{' && text[k] === ':') {
        pendingKey = str;
        if (j >= end) {
          path.push(str.replace(/~/g, '~0').replace(/\//g, '~1'));
          return `/${path.join('/')}`;
        }
      }
      i = j + 1;
      continue;
    }
    if (ch === '{' || ch === '[') {
      if (kinds.length > 0) {
        if (kinds[kinds.length - 1] === '{') path.push(pendingKey ?? '');
      }
      kinds.push(ch);
      if (ch === '[') path.push(0);
      pendingKey = null;
    } else if (ch === '}' || ch === ']') {
      if (ch === ']') path.pop();
      kinds.pop();
      if (kinds[kinds.length - 1] === '{') path.pop();
    } else if (ch === ',' && kinds[kinds.length - 1] === '[') {
      path[path.length - 1] = (path[path.length - 1] as number) + 1;
    } else if (ch === ',') {
      pendingKey = null;
    }
    i++;
  }
  if (kinds[kinds.length - 1] === '{' && pendingKey !== null) path.push(pendingKey);
  return path.length === 0
    ? '/'
    : `/${path.map((p) => String(p).replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
}

/** The listeners kept in `path`; [] when it does not exist yet. Throws ConfigError. */
export function readStateFile(path: string): ListenerInput[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ConfigError(
      `state file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    const at = m ? Number(m[1]) : text.length;
    throw new ConfigError(
      `state file ${path}: ${pointerAt(text, at)}: not valid JSON at ${lineColumn(text, at)} (${text.trim() === '' ? 'the file is empty' : at >= text.length - 1 ? 'it ends early: truncated?' : (err as Error).message}); keyport leaves it as it is: fix or remove it`,
    );
  }
  const first = stateCheck.Errors(data).First();
  if (first) {
    throw new ConfigError(
      `state file ${path}: ${first.path || '/'}: ${first.message}; keyport leaves it as it is: fix or remove it`,
    );
  }
  return (data as StateFile).listeners;
}

/**
 * Writes the listeners to `path` so that a crash at any point leaves either the old file or the
 * new one: a temp file beside it (same directory, so the rename stays on one file system),
 * fsync'd, then renamed over the old one (on Windows too, when nothing holds the target open).
 */
export function writeStateFile(path: string, listeners: ListenerInput[]): void {
  const body: StateFile = { version: 1, listeners };
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(body, null, 2)}\n`);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  // The rename itself reaches the disk with the directory's fsync (not possible on Windows).
  if (process.platform !== 'win32') {
    try {
      const dfd = openSync(dirname(path), 'r');
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {}
  }
}
