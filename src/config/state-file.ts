// The state file: the listeners created over the API, kept across restarts. Read once at
// start-up (any fault stops it, naming the path and the field, and the file is left as it is);
// written whole on each change: a temp file in the same directory, fsync, rename over.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { readJsonFile } from './json-file.js';
import { type ListenerInput, StateFile } from './schema.js';

const stateCheck = TypeCompiler.Compile(StateFile);

/** The listeners kept in `path`; [] when it does not exist yet. Throws ConfigError. */
export function readStateFile(path: string): ListenerInput[] {
  const state = readJsonFile(path, stateCheck, {
    what: 'state file',
    advice: 'keyport leaves it as it is: fix or remove it',
    missingOk: true,
  });
  return state?.listeners ?? [];
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
