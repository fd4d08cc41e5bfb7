// The completion-key table (DESIGN §1.1). A key is a pointer-sized integer fixed when a socket is
// associated with the port and returned verbatim by every completion on that socket. keyport's
// keys are (generation << 32 | index), never JS object addresses; a slot is reused only after
// its socket is closed and nothing that could complete with its key is still in flight.

/** A 64-bit value as a hex ULONG_PTR, the way keys and record addresses are shown. */
export function hex64(v: bigint): string {
  // join() builds one flat string; a template would keep a rope of three parts alive (keys and
  // records are pooled and keep their hex for life: at 20 000 connections that adds up).
  return ['0x', v.toString(16).padStart(16, '0')].join('');
}

export type KeyOwner =
  | { kind: 'listener'; id: string }
  | { kind: 'connection'; id: string; side: 'client' | 'upstream' }
  | { kind: 'engine'; id: string }
  /** An active health check's connect: `id` is its listener, `target` the upstream checked. */
  | { kind: 'check'; id: string; target: string };

/** What the key table needs of an op record (tables/ops.ts imports this file). */
export interface OpRecordLike {
  readonly addrNum: number;
  /** Links of the owning key's op list (kept on the record: a list allocates nothing). */
  prevOnKey?: OpRecordLike | null;
  nextOnKey?: OpRecordLike | null;
}

/**
 * The ops in flight on one socket: a list threaded through the records themselves, so a key
 * costs no hash table (a Set per key was ~180 B; at 20 000 sockets that is 3.5 MB).
 */
export class OpList {
  private head: OpRecordLike | null = null;
  private tail: OpRecordLike | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Appends: the list walks in the order the ops were started, as a Set would. */
  add(rec: OpRecordLike): void {
    rec.prevOnKey = this.tail;
    rec.nextOnKey = null;
    if (this.tail) this.tail.nextOnKey = rec;
    else this.head = rec;
    this.tail = rec;
    this.count++;
  }

  /** Removes `rec` if it is on this list (a record is on at most one). */
  delete(rec: OpRecordLike): boolean {
    if (rec.prevOnKey === undefined || (rec.prevOnKey === null && this.head !== rec)) return false;
    const prev = rec.prevOnKey;
    const next = rec.nextOnKey ?? null;
    if (prev) prev.nextOnKey = next;
    else this.head = next;
    if (next) next.prevOnKey = prev;
    else this.tail = prev;
    rec.prevOnKey = undefined;
    rec.nextOnKey = undefined;
    this.count--;
    return true;
  }

  clear(): void {
    while (this.head) this.delete(this.head);
  }

  /** A snapshot, so the caller may remove entries while it walks. */
  *[Symbol.iterator](): IterableIterator<OpRecordLike> {
    const all: OpRecordLike[] = [];
    for (let r = this.head; r; r = r.nextOnKey ?? null) all.push(r);
    yield* all;
  }
}

export class KeyEntry {
  generation = 0;
  key = 0n;
  /** The key as a hex ULONG_PTR, computed once per association. */
  keyHex = '';
  sock = -1;
  owner: KeyOwner | null = null;
  associatedAt = 0;
  completions = 0;
  /** Ops in flight on this socket: started, their completion not handled yet. */
  readonly ops = new OpList();
  live = false;

  get inFlight(): number {
    return this.ops.size;
  }

  constructor(readonly index: number) {}
}

export class KeyTable {
  private readonly slots: KeyEntry[] = [new KeyEntry(0)]; // index 0 is never used: key 0 wakes the loop
  private readonly free: number[] = [];
  private liveCount = 0;

  assign(sock: number, owner: KeyOwner): KeyEntry {
    let entry: KeyEntry;
    const index = this.free.pop();
    if (index === undefined) {
      entry = new KeyEntry(this.slots.length);
      this.slots.push(entry);
    } else {
      entry = this.slots[index] as KeyEntry;
    }
    entry.generation = (entry.generation + 1) >>> 0;
    entry.key = (BigInt(entry.generation) << 32n) | BigInt(entry.index);
    entry.keyHex = hex64(entry.key);
    entry.sock = sock;
    entry.owner = owner;
    entry.associatedAt = Date.now();
    entry.completions = 0;
    entry.ops.clear();
    entry.live = true;
    this.liveCount++;
    return entry;
  }

  /** Frees the slot; only legal once the socket is closed and no op of it is pending. */
  release(entry: KeyEntry): void {
    if (!entry.live) throw new Error(`key ${entry.keyHex} released twice`);
    if (entry.ops.size !== 0)
      throw new Error(`key ${entry.keyHex} released with ${entry.ops.size} ops in flight`);
    entry.live = false;
    entry.owner = null;
    entry.sock = -1;
    this.liveCount--;
    this.free.push(entry.index);
  }

  /** Whether keyport ever gave out this key (its slot, at this or an earlier generation). */
  issued(key: bigint): boolean {
    const index = Number(key & 0xffff_ffffn);
    const generation = Number(key >> 32n);
    const slot = this.slots[index];
    return index > 0 && slot !== undefined && generation >= 1 && generation <= slot.generation;
  }

  *live(): IterableIterator<KeyEntry> {
    for (const e of this.slots) if (e.live) yield e;
  }

  get size(): number {
    return this.liveCount;
  }
}
