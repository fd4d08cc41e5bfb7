// I/O data buffers: blocks of pinned memory, lent to one op at a time and returned only with that
// op's record, after its completion was dequeued. Each block is its own allocation, and at most
// `keepFree` returned blocks are kept for reuse, so memory goes back after a burst of traffic
// (idle connections hold no buffer at all: see pipe.ts).
import type { PinnedAllocator, PinnedBlock } from './pinned.js';

export class BufferPool {
  private readonly free: PinnedBlock[] = [];
  private lent = 0;

  constructor(
    private readonly alloc: PinnedAllocator,
    readonly blockSize: number,
    private readonly keepFree = 256,
  ) {}

  acquire(): PinnedBlock {
    this.lent++;
    return this.free.pop() ?? this.alloc.allocPinned(this.blockSize);
  }

  release(block: PinnedBlock): void {
    this.lent--;
    if (this.free.length < this.keepFree) this.free.push(block);
    else this.alloc.freePinned(block);
  }

  get inUse(): number {
    return this.lent;
  }

  /** Bytes held: lent out plus kept for reuse. */
  get allocatedBytes(): number {
    return (this.lent + this.free.length) * this.blockSize;
  }

  destroy(): void {
    if (this.lent > 0) throw new Error(`${this.lent} buffers still lent`);
    for (const b of this.free) this.alloc.freePinned(b);
    this.free.length = 0;
  }
}
