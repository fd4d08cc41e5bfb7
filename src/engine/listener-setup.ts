// What a new listener is made of before it opens: its address resolved (a name, once, at
// creation), its settings with the defaults of src/engine/options.ts filled in, and every
// refusal that can be told before a socket exists, each as a ListenError naming the cause.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { BackendError } from './backend.js';
import type { ResolvedListenerConfig } from './core.js';
import { SourceRules } from './net/sources.js';
import { LISTENER_DEFAULTS, type ListenerConfig } from './options.js';

export class ListenError extends Error {
  constructor(
    message: string,
    /** The address is taken (by keyport or another process). */
    readonly inUse = false,
    /** engine.maxListeners listeners exist already. */
    readonly atLimit = false,
  ) {
    super(message);
  }
}

export interface ListenerPlan {
  config: ResolvedListenerConfig;
  /** The address to bind: an IP literal. */
  host: string;
  family: 4 | 6;
}

/** Checks and completes a listener's config; `existing` listeners exist already. */
export async function planListener(
  config: ListenerConfig,
  existing: number,
  maxListeners: number,
): Promise<ListenerPlan> {
  if (existing >= maxListeners) {
    throw new ListenError(
      `engine.maxListeners (${maxListeners}) reached: ${existing} listeners exist (closing and draining ones count until they are gone); stop one first, or raise engine.maxListeners in the config file`,
      false,
      true,
    );
  }
  try {
    new SourceRules(config.allow ?? [], config.deny ?? []);
  } catch (err) {
    throw new ListenError(`allow/deny: ${(err as Error).message}`);
  }
  let host = config.host;
  if (!isIP(host)) {
    try {
      host = (await lookup(host)).address;
    } catch (err) {
      throw new ListenError(
        `cannot resolve listener address ${config.host}: ${(err as NodeJS.ErrnoException).code}`,
      );
    }
  }
  const resolved: ResolvedListenerConfig = {
    ...LISTENER_DEFAULTS,
    ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
    host,
  } as ResolvedListenerConfig;
  if (resolved.mode === 'forward' && !resolved.target && !resolved.targets?.length)
    throw new ListenError('a forward listener needs a target');
  return { config: resolved, host, family: isIP(host) === 6 ? 6 : 4 };
}

/** The error of a listener that could not open its socket (bind, listen, the first accepts). */
export function openFailed(err: unknown, plan: ListenerPlan, port: number): ListenError {
  const inUse = err instanceof BackendError && err.errorName.endsWith('ADDRINUSE');
  const where = plan.family === 6 ? `[${plan.host}]:${port}` : `${plan.host}:${port}`;
  return new ListenError(
    inUse
      ? `${where} is already in use (another listener or process holds it)`
      : `cannot listen on ${where}: ${(err as Error).message}`,
    inUse,
  );
}
