// The configuration's life after start-up: which listeners came from where (config file, flags,
// the API), the state file that keeps the API's across restarts, GET /config, and reload
// (SIGHUP, POST /config/reload): re-read the config file, validate it whole, apply the
// listeners' difference. The engine is reached only through EngineControl.
import type { EngineControl } from '../engine/control.js';
import { ENGINE_DEFAULTS, type ListenerConfig } from '../engine/options.js';
import { formatAddress } from './address.js';
import type { CliOptions } from './cli.js';
import { ConfigError } from './config-error.js';
import { listenerFromInput } from './listener-input.js';
import type { ListenerInput } from './schema.js';
import { loadSettings, type Settings } from './settings.js';
import { readStateFile, writeStateFile } from './state-file.js';

export type ListenerSource = 'config' | 'cli' | 'default' | 'api';

export interface ListenerChange {
  /** The listener now serving the address (for removed: the one draining). */
  id: string;
  address: string;
  mode: 'echo' | 'forward';
  /** replaced: the listener that drains (its connections finish under the old options). */
  previousId?: string;
}

export interface ReloadResult {
  added: ListenerChange[];
  removed: ListenerChange[];
  replaced: ListenerChange[];
  unchanged: number;
  /** Changes that were valid but the system refused (e.g. the address is held by another process). */
  failed: Array<{ address: string; error: string }>;
  /** Fields of the config file that changed but take a restart (docs/reload.md). */
  needsRestart: string[];
}

/** Thrown by reload: `status` is the HTTP answer (400 invalid file, 409 no file). */
export class ReloadError extends Error {
  constructor(
    readonly status: 400 | 409,
    message: string,
  ) {
    super(message);
  }
}

/** Thrown when the state file cannot be written: the change it would record is undone. */
export class StateWriteError extends Error {}

export interface StateEntry {
  id: string;
  input: ListenerInput;
  config: ListenerConfig;
}

type Entry = StateEntry;

/** A fixed address's identity (null for port 0: every such entry binds a port of its own). */
function addressKey(c: ListenerConfig): string | null {
  if (c.port === 0) return null;
  return `${c.host.toLowerCase()}|${c.port}`;
}

function shown(c: ListenerConfig): string {
  return formatAddress({ host: c.host, port: c.port, family: c.host.includes(':') ? 6 : 4 });
}

/** The options as a comparable text: keys sorted, defaults left as given. */
function canonical(c: ListenerConfig): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>)
              .filter(([, x]) => x !== undefined)
              .sort(([a], [b]) => (a < b ? -1 : 1))
              .map(([k, x]) => [k, sorted(x)]),
          )
        : v;
  return JSON.stringify(sorted(c));
}

/** The settings' parts a reload does not apply, flattened to field → JSON, to name what changed. */
function restartFields(s: Settings): Record<string, string> {
  const out: Record<string, string> = {
    'api.address': formatAddress(s.api),
    'api.token': s.token ?? '',
    'api.protect': s.protect,
    'api.allowedHosts': JSON.stringify(s.allowedHosts),
    'api.allowTargets': JSON.stringify(s.allowTargets?.map((r) => r.text) ?? null),
    'api.maxEventClients': String(s.maxEventClients),
    'api.threadShare': String(s.threadShare),
    'api.maxConnections': String(s.maxApiConnections),
    'api.bodyLimitBytes': String(s.bodyLimitBytes),
    'api.requestTimeoutMs': String(s.requestTimeoutMs),
    backend: s.backend,
    logLevel: s.logLevel,
    shutdownDeadlineMs: String(s.shutdownDeadlineMs),
    stateFile: String(s.stateFile),
    'accessLog.to': s.accessLog.to,
    'accessLog.maxBytes': String(s.accessLog.maxBytes),
    'accessLog.keep': String(s.accessLog.keep),
  };
  for (const [k, v] of Object.entries(s.engine)) out[`engine.${k}`] = String(v);
  return out;
}

/**
 * The state file's listeners, checked (each as a POST /listeners body would be) and against
 * the config file's: an address named by both is an error (the two files disagree about who
 * owns it; neither silently wins). Throws ConfigError, naming the path and field.
 */
export function readState(settings: Settings): StateEntry[] {
  const path = settings.stateFile;
  if (!path) return [];
  const inputs = readStateFile(path);
  const entries = inputs.map((input, i) => ({
    id: '',
    input,
    config: listenerFromInput(input, `state file ${path}: /listeners/${i}`),
  }));
  const mine = new Map<string, number>();
  settings.listeners.forEach((c, i) => {
    const k = addressKey(c);
    if (k) mine.set(k, i);
  });
  const seen = new Map<string, number>();
  entries.forEach((e, i) => {
    const k = addressKey(e.config);
    if (!k) return;
    const j = mine.get(k);
    if (j !== undefined) {
      const other =
        settings.listenerSource === 'cli'
          ? 'a --listener flag'
          : `config file ${settings.configPath}: /listeners/${j}/address`;
      throw new ConfigError(
        `state file ${path}: /listeners/${i}/address: ${shown(e.config)} is also ${other}; an address belongs to one of them: remove it from one file (the state file holds the listeners created over the API)`,
      );
    }
    const dup = seen.get(k);
    if (dup !== undefined)
      throw new ConfigError(
        `state file ${path}: /listeners/${i}/address: ${shown(e.config)} is already /listeners/${dup}/address`,
      );
    seen.set(k, i);
  });
  return entries;
}

export class ConfigLifecycle {
  /** The listeners from the config file (or flags, or the default), in its order. */
  private fromConfig: Entry[] = [];
  /** Listeners created over the API (and restored from the state file), by id. */
  private readonly fromApi = new Map<string, Entry>();
  /** One reload at a time; API listener changes wait for it too. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private settings: Settings,
    private readonly cli: CliOptions,
    private readonly env: NodeJS.ProcessEnv,
    private readonly control: EngineControl,
  ) {}

  /** Start-up: the config file's listeners, then the state file's (as read by readState). */
  async startListeners(state: Entry[]): Promise<void> {
    this.settings.listeners.forEach((config, i) => {
      this.fromConfig.push({
        id: '',
        input: this.settings.listenerInputs[i] as ListenerInput,
        config,
      });
    });
    for (const e of this.fromConfig) e.id = (await this.control.createListener(e.config)).id;
    for (const e of state) {
      e.id = (await this.control.createListener(e.config)).id;
      this.fromApi.set(e.id, e);
    }
  }

  /** POST /listeners created `id` from `input`: kept in the state file (undone if that fails). */
  apiCreated(id: string, input: ListenerInput, config: ListenerConfig): void {
    this.fromApi.set(id, { id, input: { ...input }, config });
    try {
      this.persist();
    } catch (err) {
      this.fromApi.delete(id);
      this.control.closeListener(id, 'abort', 0);
      throw new StateWriteError(
        `state file ${this.settings.stateFile}: cannot write it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the listener was not kept, and is closed`,
      );
    }
  }

  /** DELETE /listeners/{id}: an API listener leaves the state file. */
  apiClosed(id: string): void {
    if (!this.fromApi.delete(id)) return;
    try {
      this.persist();
    } catch {
      // The listener is closed either way; the next change rewrites the file whole.
    }
  }

  private persist(): void {
    const path = this.settings.stateFile;
    if (!path) return;
    writeStateFile(
      path,
      [...this.fromApi.values()].map((e) => e.input),
    );
  }

  /** GET /config: what keyport runs with now. The token itself never appears. */
  effective() {
    const s = this.settings;
    const listeners = [
      ...this.fromConfig
        .filter((e) => this.control.isListening(e.id))
        .map((e) => ({ id: e.id, source: s.listenerSource as ListenerSource, ...e.input })),
      ...[...this.fromApi.values()]
        .filter((e) => this.control.isListening(e.id))
        .map((e) => ({ id: e.id, source: 'api' as ListenerSource, ...e.input })),
    ];
    return {
      configFile: s.configPath,
      stateFile: s.stateFile,
      api: {
        address: formatAddress(s.api),
        token: s.token ? ('redacted' as const) : null,
        tokenFile: s.tokenSource && s.tokenSource !== 'KEYPORT_TOKEN' ? s.tokenSource : null,
        tokenFrom: s.tokenSource,
        protect: s.protect,
        allowedHosts: [...s.allowedHosts],
        allowTargets: s.allowTargets ? s.allowTargets.map((r) => r.text) : null,
        maxEventClients: s.maxEventClients,
        threadShare: s.threadShare,
        maxConnections: s.maxApiConnections,
        bodyLimitBytes: s.bodyLimitBytes,
        requestTimeoutMs: s.requestTimeoutMs,
      },
      backend: s.backend,
      backendInUse: this.control.backendName,
      logLevel: s.logLevel,
      shutdownDeadlineMs: s.shutdownDeadlineMs,
      engine: { ...ENGINE_DEFAULTS, ...s.engine },
      accessLog: { to: s.accessLog.to, maxBytes: s.accessLog.maxBytes, keep: s.accessLog.keep },
      listeners,
    };
  }

  /** Runs `fn` after every reload or change queued before it. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /** SIGHUP or POST /config/reload. Throws ReloadError (nothing applied). */
  reload(): Promise<ReloadResult> {
    return this.serial(() => this.reloadNow());
  }

  private async reloadNow(): Promise<ReloadResult> {
    if (!this.settings.configPath) {
      throw new ReloadError(
        409,
        'keyport was started without a config file (--config or KEYPORT_CONFIG): there is nothing to reload; listeners change with POST /listeners and DELETE /listeners/{id}',
      );
    }
    let next: Settings;
    try {
      next = loadSettings(this.cli, this.env);
    } catch (err) {
      if (err instanceof ConfigError) throw new ReloadError(400, err.message);
      throw err;
    }
    const before = restartFields(this.settings);
    const after = restartFields(next);
    const needsRestart = Object.keys({ ...before, ...after }).filter((k) => before[k] !== after[k]);
    const result: ReloadResult = {
      added: [],
      removed: [],
      replaced: [],
      unchanged: 0,
      failed: [],
      needsRestart,
    };
    if (next.listenerSource === 'cli') {
      // --listener flags replace the file's listeners: they stand until a restart.
      result.unchanged = this.fromConfig.filter((e) => this.control.isListening(e.id)).length;
      return result;
    }
    // Checked whole before anything changes: an address an API listener holds is not the
    // config file's to take (DELETE that listener first).
    const apiHeld = new Map<string, Entry>();
    for (const e of this.fromApi.values()) {
      const k = addressKey(e.config);
      if (k && this.control.isListening(e.id)) apiHeld.set(k, e);
    }
    next.listeners.forEach((c, i) => {
      const k = addressKey(c);
      const held = k ? apiHeld.get(k) : undefined;
      if (held) {
        throw new ReloadError(
          400,
          `config file ${next.configPath}: /listeners/${i}/address: ${shown(c)} is held by listener ${held.id}, created over the API${this.settings.stateFile ? ' (and kept in the state file)' : ''}; DELETE /listeners/${held.id} first, or leave it out of the config file`,
        );
      }
    });

    // Match the new entries to the running ones: by fixed address, or (port 0) by equal options.
    const live = this.fromConfig.filter((e) => this.control.isListening(e.id));
    const taken = new Set<Entry>();
    const plan: Array<{ input: ListenerInput; config: ListenerConfig; old: Entry | null }> = [];
    next.listeners.forEach((config, i) => {
      const input = next.listenerInputs[i] as ListenerInput;
      const k = addressKey(config);
      const old =
        live.find(
          (e) =>
            !taken.has(e) &&
            (k
              ? addressKey(e.config) === k
              : addressKey(e.config) === null && canonical(e.config) === canonical(config)),
        ) ?? null;
      if (old) taken.add(old);
      plan.push({ input, config, old });
    });
    const deadline = this.settings.shutdownDeadlineMs;
    const kept: Entry[] = [];
    // Removed first (frees their addresses), then replaced, then added.
    for (const e of live) {
      if (taken.has(e)) continue;
      this.control.closeListener(e.id, 'drain', deadline);
      result.removed.push({ id: e.id, address: shown(e.config), mode: e.config.mode });
    }
    for (const p of plan) {
      if (!p.old) continue;
      if (canonical(p.old.config) === canonical(p.config)) {
        result.unchanged++;
        kept.push({ id: p.old.id, input: p.input, config: p.config });
        continue;
      }
      try {
        const l = await this.control.replaceListener(p.old.id, p.config, deadline);
        kept.push({ id: l.id, input: p.input, config: p.config });
        result.replaced.push({
          id: l.id,
          address: l.address,
          mode: p.config.mode,
          previousId: p.old.id,
        });
      } catch (err) {
        result.failed.push({ address: shown(p.config), error: (err as Error).message });
      }
    }
    for (const p of plan) {
      if (p.old) continue;
      try {
        const l = await this.control.createListener(p.config);
        kept.push({ id: l.id, input: p.input, config: p.config });
        result.added.push({ id: l.id, address: l.address, mode: p.config.mode });
      } catch (err) {
        result.failed.push({ address: shown(p.config), error: (err as Error).message });
      }
    }
    // The file's order, for GET /config.
    const order = new Map(plan.map((p, i) => [p.config, i]));
    kept.sort((a, b) => (order.get(a.config) ?? 0) - (order.get(b.config) ?? 0));
    this.fromConfig = kept;
    // Only the listeners are applied: the rest of the running settings stay as they were.
    this.settings = {
      ...this.settings,
      listeners: next.listeners,
      listenerInputs: next.listenerInputs,
    };
    return result;
  }
}
