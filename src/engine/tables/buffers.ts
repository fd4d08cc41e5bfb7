// I/O data buffers: fixed-size blocks of pinned memory, lent to one op at a time and returned
// only with that op's record, after its completion was dequeued. Blocks are carved from slabs
// large enough that the allocator maps them fresh (zero pages, not resident until the kernel
// writes into them), so a buffer an idle connection once used for a 64-byte message costs one
// resident page, not 64 KiB; returned blocks are reused most-recent first (idle connections
// hold no buffer at all: see relay/direction.ts).
//
// Where the backend provides buffers (io_uring), a recv's buffer is picked by the kernel from
// its own ring when data arrives; such a block comes back here with its record like any other
// and goes back to the kernel.
import type { ProvidedBufferPool, RecordMemory } from '../backend.js';
import type { PinnedAllocator, PinnedBlock } from './pinned.js';

/** Slabs of at least 1 MiB: above glibc's mmap threshold, so they come from fresh pages. */
const SLAB_BYTES = 1024 * 1024;

export class BufferPool {
  private readonly slabs: PinnedBlock[] = [];
  private readonly free: PinnedBlock[] = [];
  private lent = 0;
  /** Provided blocks the kernel filled that the engine holds (until their send completed). */
  private providedLent = 0;
  private readonly perSlab: number;

  constructor(
    private readonly alloc: PinnedAllocator,
    readonly blockSize: number,
    /** The backend's provided buffers (io_uring), or null. */
    readonly provided: ProvidedBufferPool | null = null,
  ) {
    this.perSlab = Math.max(1, Math.floor(SLAB_BYTES / blockSize));
  }

  acquire(): PinnedBlock {
    let block = this.free.pop();
    if (!block) {
      const slab = this.alloc.allocPinned(this.blockSize * this.perSlab);
      this.slabs.push(slab);
      for (let i = this.perSlab - 1; i >= 0; i--) {
        const off = i * this.blockSize;
        this.free.push({
          addr: slab.addr + BigInt(off),
          bytes: slab.bytes.subarray(off, off + this.blockSize),
        });
      }
      block = this.free.pop() as PinnedBlock;
    }
    this.lent++;
    return block;
  }

  /** After a selected recv completed: the block the kernel filled, now the engine's. */
  takeProvided(rec: RecordMemory): PinnedBlock | null {
    const block = this.provided?.taken(rec) ?? null;
    if (block) this.providedLent++;
    return block;
  }

  release(block: PinnedBlock): void {
    if (this.provided?.isProvided(block)) {
      this.providedLent--;
      this.provided.give(block);
      return;
    }
    this.lent--;
    this.free.push(block);
  }

  get inUse(): number {
    return this.lent + this.providedLent;
  }

  destroy(): void {
    if (this.lent > 0) throw new Error(`${this.lent} buffers still lent`);
    for (const s of this.slabs) this.alloc.freePinned(s);
    this.slabs.length = 0;
    this.free.length = 0;
  }
}
