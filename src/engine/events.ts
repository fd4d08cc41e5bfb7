// What happens in the engine, as events for live views (GET /events). Built only while someone
// listens, so an engine nobody watches pays one boolean test per event site.

import type { UpstreamState } from './relay/upstreams.js';

export type EngineEvent =
  | {
      type: 'listener-up';
      at: number;
      listener: string;
      address: string;
      mode: 'echo' | 'forward';
      key: string;
    }
  | { type: 'listener-draining'; at: number; listener: string; connections: number }
  | { type: 'listener-down'; at: number; listener: string }
  | {
      type: 'connection-opened';
      at: number;
      connection: string;
      listener: string;
      key: string;
      /** The key the accept's completion packet carried (the listener's); null if inline. */
      acceptKey: string | null;
      remote: string | null;
    }
  | {
      type: 'connection-closed';
      at: number;
      connection: string;
      listener: string;
      reason: string;
      abortive: boolean;
      /** Bytes received from / sent to the client. */
      bytesIn: number;
      bytesOut: number;
      /** forward: bytes received from / sent to the upstream (null in echo mode). */
      upstreamBytesIn: number | null;
      upstreamBytesOut: number | null;
    }
  | {
      type: 'op-cancelled';
      at: number;
      record: string;
      op: string;
      key: string;
      connection: string | null;
      listener: string | null;
      status: string | null;
    }
  | {
      type: 'anomaly';
      at: number;
      kind: 'stray' | 'key-mismatch' | 'duplicate';
      /** The key as dequeued, and the key of the socket the record's op runs on. */
      key: string;
      expectedKey: string | null;
      record: string;
      op: string | null;
      connection: string | null;
      listener: string | null;
    }
  | {
      /** A forward target changed state: ejected (connect failures), up again, or checked down/up. */
      type: 'upstream';
      at: number;
      listener: string;
      target: string;
      state: UpstreamState;
      /** The error that took it out (null when it came back). */
      error: string | null;
      /** ejected: the cool-down. */
      forMs: number | null;
    }
  | {
      type: 'error';
      at: number;
      op: string;
      error: string;
      key: string;
      connection: string | null;
      listener: string | null;
    };

export type EventListener = (e: EngineEvent) => void;

export class EventBus {
  private readonly subscribers = new Set<EventListener>();

  /** True while anyone listens: event sites test this before building an event. */
  get active(): boolean {
    return this.subscribers.size > 0;
  }

  subscribe(fn: EventListener): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  emit(e: EngineEvent): void {
    for (const fn of this.subscribers) {
      try {
        fn(e);
      } catch {
        // A subscriber's failure is its own; the engine carries on.
      }
    }
  }
}
