// The op table: one extended record per in-flight operation, carved from pinned slabs. A record
// starts with the backend's header (the OVERLAPPED on Windows) followed by keyport's own fields,
// so the address a completion carries identifies the op, and reading the record tells which.
// A record goes back to the pool only after its completion was dequeued (DESIGN §1.4).
import {
  OP_KIND_CODE,
  type OpData,
  type OpKind,
  type Sock,
  type SocketAddress,
} from '../backend.js';
import type { BufferPool } from './buffers.js';
import { hex64, type KeyEntry, type OpRecordLike } from './keys.js';
import type { PinnedAllocator, PinnedBlock } from './pinned.js';

/** keyport's fields, right after the backend header. */
export const FIELD_OP_ID = 0; // u32: slot number
export const FIELD_GENERATION = 4; // u32: bumped on each reuse, catches stale completions
export const FIELD_KIND = 8; // u32: OP_KIND_CODE
export const FIELD_KEY_INDEX = 12; // u32: key slot of the socket the op runs on
export const ENGINE_FIELDS_SIZE = 16;

const RECORDS_PER_SLAB = 256;

export class OpRecord implements OpData {
  generation = 0;
  /** Links of its key's list of ops in flight (keys.ts OpList). */
  prevOnKey: OpRecordLike | null | undefined = undefined;
  nextOnKey: OpRecordLike | null | undefined = undefined;
  kind: OpKind = 'recv';
  inFlight = false;
  /** performance.now() when the op was issued. */
  issuedAt = 0;
  /** Wall-clock ms when issued, for the API (derived: no clock read on the hot path). */
  get issuedAtWall(): number {
    return performance.timeOrigin + this.issuedAt;
  }
  key = 0n;
  /** The key-table entry of the socket the op runs on. */
  keyEntry: KeyEntry | null = null;
  // ---- the op's arguments (what the backend submits) ----
  sock: Sock = -1;
  /** For accepts on IOCP: the pre-created socket. */
  acceptSock: Sock = -1;
  /** Data buffer lent to the op; returned to its pool with the record (one release site). */
  buffer: PinnedBlock | null = null;
  /** Where in the buffer the op starts, and how many bytes it moves. */
  offset = 0;
  length = 0;
  peer: SocketAddress | null = null;
  /** recv: the kernel picks the buffer when data arrives (provided buffers). */
  selectBuffer = false;
  /** recv/send through this pipe fd (splice) instead of a buffer; -1: none. */
  splice: Sock = -1;
  // ---- what the engine knows of it ----
  /** Finished inline and waiting in the engine's queue: no packet may come for it. */
  inlineQueued = false;
  /** Result of an op that finished inline, until the engine completes it from its queue. */
  inlineCode = 0;
  inlineBytes = 0;
  /** Cancelled by the engine to give its buffer back (an idle read), not by anyone else. */
  parking = false;
  /** A cancel was asked of the kernel (by the engine or the API). */
  cancelRequested = false;
  /** Who started the op; the engine's object (listener or connection side). */
  owner: unknown = null;
  /** While its owner handles the completion: the key the packet carried (null: inline). */
  dequeuedKey: bigint | null = null;
  readonly addrNum: number;
  /** The record (OVERLAPPED) address as a hex pointer. */
  readonly addressHex: string;

  constructor(
    readonly slot: number,
    readonly addr: bigint,
    readonly view: DataView,
    private readonly fieldsAt: number,
  ) {
    this.addrNum = Number(addr);
    this.addressHex = hex64(addr);
  }

  get bufAddr(): bigint {
    return this.buffer ? this.buffer.addr + BigInt(this.offset) : 0n;
  }

  /** Hands the buffer on (to the next op of the same relay direction); the record lets go. */
  takeBuffer(): PinnedBlock | null {
    const b = this.buffer;
    this.buffer = null;
    return b;
  }

  /** Stamps keyport's fields into the pinned record. */
  stamp(keyIndex: number): void {
    const v = this.view;
    v.setUint32(this.fieldsAt + FIELD_OP_ID, this.slot, true);
    v.setUint32(this.fieldsAt + FIELD_GENERATION, this.generation, true);
    v.setUint32(this.fieldsAt + FIELD_KIND, OP_KIND_CODE[this.kind], true);
    v.setUint32(this.fieldsAt + FIELD_KEY_INDEX, keyIndex, true);
  }

  /** The op id as stored in native memory (what a completion's record address leads to). */
  storedOpId(): number {
    return this.view.getUint32(this.fieldsAt + FIELD_OP_ID, true);
  }

  storedGeneration(): number {
    return this.view.getUint32(this.fieldsAt + FIELD_GENERATION, true);
  }
}

export class OpPool {
  private readonly slabs: PinnedBlock[] = [];
  private readonly all: OpRecord[] = [];
  private readonly free: OpRecord[] = [];
  private readonly byAddr = new Map<number, OpRecord>();
  readonly recordSize: number;
  private inFlightCount = 0;
  /** Ops in flight by kind, kept as they start and end so views and scrapes need no walk. */
  private readonly byKind: Record<OpKind, number> = {
    accept: 0,
    connect: 0,
    recv: 0,
    send: 0,
    nop: 0,
  };
  /** Records never reused: a packet for them came with the wrong key (DESIGN §1.8). */
  private quarantinedCount = 0;

  constructor(
    private readonly alloc: PinnedAllocator,
    private readonly headerSize: number,
    /** Where a record's buffer goes back when the record is released. */
    private readonly buffers: BufferPool | null = null,
  ) {
    // 16-byte aligned records keep every OVERLAPPED naturally aligned.
    this.recordSize = Math.ceil((headerSize + ENGINE_FIELDS_SIZE) / 16) * 16;
  }

  private grow(): void {
    const slab = this.alloc.allocPinned(this.recordSize * RECORDS_PER_SLAB);
    this.slabs.push(slab);
    const base = this.all.length;
    for (let i = 0; i < RECORDS_PER_SLAB; i++) {
      const off = i * this.recordSize;
      const view = new DataView(slab.bytes.buffer, slab.bytes.byteOffset + off, this.recordSize);
      const rec = new OpRecord(base + i, slab.addr + BigInt(off), view, this.headerSize);
      this.all.push(rec);
      this.byAddr.set(rec.addrNum, rec);
    }
    // Lowest slots first, so a quiet engine reuses the same few records.
    for (let i = RECORDS_PER_SLAB - 1; i >= 0; i--) this.free.push(this.all[base + i] as OpRecord);
  }

  /** Takes a record for a new op; the caller fills in its arguments and submits it. */
  acquire(kind: OpKind, keyEntry: KeyEntry, owner: unknown): OpRecord {
    if (this.free.length === 0) this.grow();
    const rec = this.free.pop() as OpRecord;
    rec.generation = (rec.generation + 1) >>> 0;
    rec.kind = kind;
    rec.key = keyEntry.key;
    rec.keyEntry = keyEntry;
    rec.sock = keyEntry.sock;
    rec.owner = owner;
    rec.inFlight = true;
    rec.issuedAt = performance.now();
    rec.stamp(keyEntry.index);
    this.inFlightCount++;
    this.byKind[kind]++;
    return rec;
  }

  /**
   * Returns a record whose completion has been dequeued and handled (or which never reached the
   * kernel), with the buffer it still holds: the one place either goes back.
   */
  release(rec: OpRecord): void {
    this.retire(rec);
    if (rec.buffer) this.buffers?.release(rec.buffer);
    rec.buffer = null;
    this.free.push(rec);
  }

  /**
   * Takes a record out of use for good, buffer and all: a packet named it with a key that is
   * not its owner's, so whether the kernel is done with its memory cannot be known.
   */
  quarantine(rec: OpRecord): void {
    this.retire(rec);
    this.quarantinedCount++;
  }

  private retire(rec: OpRecord): void {
    if (!rec.inFlight) throw new Error(`op record ${rec.slot} released twice`);
    rec.inFlight = false;
    rec.owner = null;
    rec.keyEntry = null;
    rec.sock = -1;
    rec.acceptSock = -1;
    rec.offset = 0;
    rec.length = 0;
    rec.peer = null;
    rec.selectBuffer = false;
    rec.splice = -1;
    rec.parking = false;
    rec.cancelRequested = false;
    rec.inlineQueued = false;
    rec.dequeuedKey = null;
    this.inFlightCount--;
    this.byKind[rec.kind]--;
  }

  get quarantined(): number {
    return this.quarantinedCount;
  }

  byAddress(addr: number): OpRecord | undefined {
    return this.byAddr.get(addr);
  }

  *inFlight(): IterableIterator<OpRecord> {
    for (const rec of this.all) if (rec.inFlight) yield rec;
  }

  /**
   * Every record in slot order, in flight or free (check `inFlight`): views walk it with a
   * plain loop, which costs a fraction of the generator above at tens of thousands of records.
   */
  get records(): readonly OpRecord[] {
    return this.all;
  }

  get inFlightTotal(): number {
    return this.inFlightCount;
  }

  inFlightOfKind(kind: OpKind): number {
    return this.byKind[kind];
  }

  /** Frees the slabs; only legal when nothing is in flight. */
  destroy(): void {
    if (this.inFlightCount > 0) throw new Error(`${this.inFlightCount} ops still in flight`);
    for (const slab of this.slabs) this.alloc.freePinned(slab);
    this.slabs.length = 0;
  }
}
