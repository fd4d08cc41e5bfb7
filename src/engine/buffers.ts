// I/O data buffers: fixed-size blocks of pinned memory, lent to one op at a time and returned to
// the pool only with that op's record, after its completion was dequeued.
import type { PinnedAllocator, PinnedBlock } from './pinned.js';

const BLOCKS_PER_SLAB = 64;

export class BufferPool {
  private readonly slabs: PinnedBlock[] = [];
  private readonly free: PinnedBlock[] = [];
  private lent = 0;

  constructor(
    private readonly alloc: PinnedAllocator,
    readonly blockSize: number,
  ) {}

  acquire(): PinnedBlock {
    let block = this.free.pop();
    if (!block) {
      const slab = this.alloc.allocPinned(this.blockSize * BLOCKS_PER_SLAB);
      this.slabs.push(slab);
      for (let i = BLOCKS_PER_SLAB - 1; i >= 0; i--) {
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

  release(block: PinnedBlock): void {
    this.lent--;
    this.free.push(block);
  }

  get inUse(): number {
    return this.lent;
  }

  get allocatedBytes(): number {
    return this.slabs.length * BLOCKS_PER_SLAB * this.blockSize;
  }

  destroy(): void {
    if (this.lent > 0) throw new Error(`${this.lent} buffers still lent`);
    for (const s of this.slabs) this.alloc.freePinned(s);
    this.slabs.length = 0;
    this.free.length = 0;
  }
}
