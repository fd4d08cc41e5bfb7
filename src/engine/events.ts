// What happens in the engine, as events for live views (GET /events). Built only while someone
// listens, so an engine nobody watches pays one boolean test per event site.

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
      remote: string | null;
    }
  | {
      type: 'connection-closed';
      at: number;
      connection: string;
      listener: string;
      reason: string;
      abortive: boolean;
      bytesIn: number;
      bytesOut: number;
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
