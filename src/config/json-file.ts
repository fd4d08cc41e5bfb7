// Reading a JSON file the operator wrote or keyport kept (the config file, the state file): one
// way to say what is wrong with it, naming the file, the JSON pointer of the value at fault and,
// for a syntax error, the line and column, so that a broken file is found in one look.
import { readFileSync } from 'node:fs';
import type { TSchema } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import type { ValueError } from '@sinclair/typebox/errors';
import { ConfigError } from './config-error.js';

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

/**
 * For a value that matches no member of a union (a target given as an object with a bad
 * weight), the error of the member it came closest to: `/targets/1/weight: Expected integer
 * to be greater or equal to 1`, not `/targets/1: Expected union value`.
 */
function deepestError(e: ValueError): ValueError {
  let best = e;
  for (const member of e.errors ?? []) {
    const f = member.First();
    if (f && f.path.length > best.path.length) best = deepestError(f);
  }
  return best;
}

export interface JsonFileOptions {
  /** What the file is, first in every message: `config file`, `state file`. */
  what: string;
  /** Added to every message about the file's content (what keyport does about it). */
  advice?: string;
}

/**
 * The file's value, checked against its schema; `undefined` when it does not exist and
 * `missingOk`. Any other fault throws a ConfigError naming the file and where in it.
 */
export function readJsonFile<T extends TSchema>(
  path: string,
  check: TypeCheck<T>,
  opts: JsonFileOptions & { missingOk: true },
): T['static'] | undefined;
export function readJsonFile<T extends TSchema>(
  path: string,
  check: TypeCheck<T>,
  opts: JsonFileOptions,
): T['static'];
export function readJsonFile<T extends TSchema>(
  path: string,
  check: TypeCheck<T>,
  opts: JsonFileOptions & { missingOk?: boolean },
): T['static'] | undefined {
  const said = (where: string, what: string) =>
    new ConfigError(
      `${opts.what} ${path}: ${where}: ${what}${opts.advice ? `; ${opts.advice}` : ''}`,
    );
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && opts.missingOk) return undefined;
    throw new ConfigError(`${opts.what} ${path}: cannot read it (${code ?? err})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message);
    const at = m ? Number(m[1]) : text.length;
    const why =
      text.trim() === ''
        ? 'the file is empty'
        : at >= text.length - 1
          ? 'it ends early: truncated?'
          : (err as Error).message;
    throw said(pointerAt(text, at), `not valid JSON at ${lineColumn(text, at)} (${why})`);
  }
  const found = check.Errors(data).First();
  const first = found && deepestError(found);
  if (first) throw said(first.path || '/', first.message);
  return data as T['static'];
}
