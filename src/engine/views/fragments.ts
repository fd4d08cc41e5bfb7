// Pages of the views are built from JSON fragments: the part of an item that cannot change
// while its table slot keeps one occupant (a key's owner, an op's kind and buffer, a
// connection's addresses) is serialised once and kept; each request adds only the few fields
// that move (counts, ages). At tens of thousands of connections this turns a 1 000-item page
// from milliseconds of JSON.stringify on the engine's thread into string concatenation.

/** `{…static…` (no closing brace) per slot, valid while the slot's stamp is unchanged. */
export class FragmentCache<Slot extends object> {
  private readonly texts = new WeakMap<Slot, { stamp: unknown; text: string }>();

  /** The item as JSON: the cached static part (made by `make` when stale) + `dynamic`. */
  json(slot: Slot, stamp: unknown, make: () => object, dynamic: object): string {
    let hit = this.texts.get(slot);
    if (hit === undefined || hit.stamp !== stamp) {
      hit = { stamp, text: JSON.stringify(make()).slice(0, -1) };
      this.texts.set(slot, hit);
    }
    return `${hit.text},${JSON.stringify(dynamic).slice(1)}`;
  }
}

/**
 * A page being walked: matches are counted, those in [offset, offset + limit) rendered as
 * JSON. The walk may span event-loop turns (the API writes each step's items before the next),
 * so a page of 1 000 never holds the engine's thread at once; each entry is read when the walk
 * reaches it, and the iterators it walks (Map/Set iterators, slot-order generators) stay valid
 * while the tables change.
 */
export interface PageWalk {
  /** Walks on until `deadline` (a performance.now() time) or the end; the items found. */
  step(deadline: number): string[];
  readonly done: boolean;
  /** Every match: known from the start when `knownTotal` was given, else once done. */
  readonly total: number;
}

export function pageWalk<T>(
  source: Iterator<T>,
  o: {
    offset: number;
    limit: number;
    /** The match count when known without walking (no filter): the walk then ends early. */
    knownTotal: number | null;
    matches: (item: T) => boolean;
    render: (item: T) => string;
  },
): PageWalk {
  const end = o.offset + o.limit;
  let count = 0;
  let done = o.knownTotal !== null && o.offset >= o.knownTotal;
  return {
    get done() {
      return done;
    },
    get total() {
      return o.knownTotal ?? count;
    },
    step(deadline) {
      const items: string[] = [];
      let n = 0;
      while (!done) {
        const r = source.next();
        if (r.done) {
          done = true;
          break;
        }
        if (o.matches(r.value)) {
          if (count >= o.offset && count < end) items.push(o.render(r.value));
          count++;
          if (o.knownTotal !== null && count >= end) done = true;
        }
        if ((++n & 31) === 0 && performance.now() > deadline) break;
      }
      return items;
    },
  };
}
