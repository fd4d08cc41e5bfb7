// Pages of the collections (connections, keys, ops), filtered: each a walk over the engine's
// table in a stable order that renders the items of the page as JSON, from fragments cached
// per table entry (fragments.ts) plus the fields that move.
import type { OpKind } from '../backend.js';
import type { Engine } from '../engine.js';
import type { Connection } from '../relay/connection.js';
import type { KeyEntry } from '../tables/keys.js';
import type { OpRecord } from '../tables/ops.js';
import { FragmentCache, type PageWalk, pageWalk } from './fragments.js';
import {
  connectionFixed,
  connectionMoving,
  keyFixed,
  keyMoving,
  type OwnerIds,
  opFixed,
  opMoving,
} from './snapshots.js';

export interface Page {
  offset: number;
  limit: number;
}

export interface ConnectionFilter extends Page {
  listener?: string;
  state?: string;
}

export interface OpFilter {
  kind?: string;
  minAgeMs?: number;
  connection?: string;
}

/** The engine's tables as the pages read them. */
type Tables = Pick<Engine, 'connections' | 'listeners' | 'keys' | 'ops'>;

export class Pages {
  // Keyed by the table entry itself: an entry that leaves the table takes its text with it.
  private readonly keyTexts = new FragmentCache<KeyEntry>();
  private readonly opTexts = new FragmentCache<OpRecord>();
  private readonly connectionTexts = new FragmentCache<Connection>();

  constructor(
    private readonly tables: Tables,
    private readonly ownerIds: OwnerIds,
  ) {}

  /**
   * A page of connections in the order they opened (the engine's Map and each listener's Set
   * keep insertion order, so a page boundary never moves while the set does not change).
   * Without a state filter the total is a size and the walk ends with the page.
   */
  connections(filter: ConnectionFilter): PageWalk {
    const now = performance.now();
    let source: Iterable<Connection> = this.tables.connections.values();
    let size = this.tables.connections.size;
    if (filter.listener) {
      const l = this.tables.listeners.get(filter.listener);
      source = l ? l.connections : [];
      size = l ? l.connections.size : 0;
    }
    return pageWalk(source[Symbol.iterator](), {
      ...filter,
      knownTotal: filter.state ? null : size,
      matches: (c) => !filter.state || c.state === filter.state,
      render: (c) => this.connectionJson(c, now),
    });
  }

  /** Stamped with the upstream and the state: the upstream's key and address come later. */
  private connectionJson(c: Connection, now: number): string {
    const stamp = c.upstream ? `${c.state}:${c.upstream.keyEntry.keyHex}` : c.state;
    return this.connectionTexts.json(c, stamp, () => connectionFixed(c), connectionMoving(c, now));
  }

  /** A page of the completion-key table in slot order (index ascending). */
  keys(page: Page): PageWalk {
    return pageWalk(this.tables.keys.live(), {
      ...page,
      knownTotal: this.tables.keys.size,
      matches: () => true,
      render: (k) => this.keyTexts.json(k, k.generation, () => keyFixed(k), keyMoving(k)),
    });
  }

  /**
   * A page of the in-flight ops matching the filter, in record-pool slot order (stable while
   * the set of ops does not change; not by age: the oldest are in the ops summary). A
   * connection filter walks only that connection's sockets; without an age filter the total
   * comes from the pool's counts and the walk ends with the page.
   */
  ops(filter: OpFilter & Page): PageWalk {
    const now = Date.now();
    const matches = (rec: OpRecord) =>
      (!filter.kind || rec.kind === filter.kind) &&
      (filter.minAgeMs === undefined || now - rec.issuedAtWall >= filter.minAgeMs);
    const render = (rec: OpRecord) =>
      this.opTexts.json(rec, rec.generation, () => opFixed(rec, this.ownerIds), opMoving(rec, now));
    if (filter.connection) {
      const c = this.tables.connections.get(filter.connection);
      const mine: OpRecord[] = [];
      for (const side of c ? [c.client, c.upstream] : [])
        for (const rec of side?.keyEntry.ops ?? []) mine.push(rec as OpRecord);
      mine.sort((a, b) => a.slot - b.slot);
      return pageWalk(mine.values(), { ...filter, knownTotal: null, matches, render });
    }
    const pool = this.tables.ops;
    const knownTotal =
      filter.minAgeMs !== undefined
        ? null
        : filter.kind
          ? pool.inFlightOfKind(filter.kind as OpKind)
          : pool.inFlightTotal;
    return pageWalk(pool.inFlight(), { ...filter, knownTotal, matches, render });
  }
}
