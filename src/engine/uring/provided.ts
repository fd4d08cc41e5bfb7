// io_uring provided buffers (a PBUF_RING, kernel 5.19+): the kernel takes a buffer for a recv
// only when data arrives, so a connection waiting to read holds no buffer at all, and one op
// per read still suffices (no wait-then-read as on IOCP). Buffers are pinned blocks carved from
// slabs; the id in a CQE's flags names the block; the engine gives a block back here once the
// send that carried its bytes has completed, and only then may the kernel fill it again.
import type { ProvidedBufferPool, RecordMemory } from '../backend.js';
import type { PinnedAllocator, PinnedBlock } from '../tables/pinned.js';
import { ENOBUFS } from './errors.js';
import {
  BUF_ENTRY_SIZE,
  BUF_REG_SIZE,
  BUF_RING_TAIL,
  HDR_BUFFER,
  REGISTER_PBUF_RING,
} from './layout.js';
import type { Ring } from './ring.js';

const PAGE = 4096;

export interface ProvidedBlock extends PinnedBlock {
  /** The buffer id the kernel reports when it filled this block. */
  readonly bid: number;
}

export class ProvidedBuffers implements ProvidedBufferPool {
  readonly noBuffers = ENOBUFS;
  private readonly blocks: ProvidedBlock[] = [];
  private readonly memory: PinnedBlock[] = [];
  private readonly entries: DataView;
  private readonly tail: Uint16Array;
  private readonly mask: number;
  private tailValue = 0;
  /** Blocks the kernel holds (in the ring, not yet filled). */
  private inRing = 0;

  /**
   * Registers `count` (a power of two ≤ 32768) blocks of `blockSize` as buffer group `group`,
   * or throws the -errno the kernel answered (the caller falls back to its own buffers).
   */
  constructor(
    ring: Ring,
    private readonly alloc: PinnedAllocator,
    readonly group: number,
    readonly blockSize: number,
    readonly count: number,
  ) {
    // The ring of entries must be page-aligned: over-allocate one page and align inside it.
    const ringBytes = count * BUF_ENTRY_SIZE;
    const raw = alloc.allocPinned(ringBytes + PAGE);
    this.memory.push(raw);
    const skip = Number((BigInt(PAGE) - (raw.addr % BigInt(PAGE))) % BigInt(PAGE));
    const ringAddr = raw.addr + BigInt(skip);
    raw.bytes.fill(0);
    this.entries = new DataView(raw.bytes.buffer, raw.bytes.byteOffset + skip, ringBytes);
    this.tail = new Uint16Array(raw.bytes.buffer, raw.bytes.byteOffset + skip + BUF_RING_TAIL, 1);
    this.mask = count - 1;

    const reg = Buffer.alloc(BUF_REG_SIZE);
    reg.writeBigUInt64LE(ringAddr, 0);
    reg.writeUInt32LE(count, 8);
    reg.writeUInt16LE(group, 12);
    const rc = ring.register(REGISTER_PBUF_RING, reg, 1);
    if (rc < 0) {
      alloc.freePinned(raw);
      this.memory.length = 0;
      throw new ProvidedBuffersUnavailable(-rc);
    }
    const slab = alloc.allocPinned(blockSize * count);
    this.memory.push(slab);
    for (let bid = 0; bid < count; bid++) {
      const off = bid * blockSize;
      const block: ProvidedBlock = {
        addr: slab.addr + BigInt(off),
        bytes: slab.bytes.subarray(off, off + blockSize),
        bid,
      };
      this.blocks.push(block);
      this.give(block);
    }
  }

  /** Back into the ring: the kernel may fill it again. */
  give(block: PinnedBlock): void {
    const b = block as ProvidedBlock;
    const at = (this.tailValue & this.mask) * BUF_ENTRY_SIZE;
    this.entries.setBigUint64(at, b.addr, true);
    this.entries.setUint32(at + 8, this.blockSize, true);
    this.entries.setUint16(at + 12, b.bid, true);
    this.tailValue = (this.tailValue + 1) & 0xffff;
    this.inRing++;
    // The kernel reads the tail with acquire semantics: the entry's stores come first.
    Atomics.store(this.tail, 0, this.tailValue);
  }

  /** The block a completed recv was given (from the id its CQE named), now the engine's. */
  taken(rec: RecordMemory): PinnedBlock | null {
    const id = rec.view.getUint16(HDR_BUFFER, true);
    if (id === 0) return null;
    rec.view.setUint16(HDR_BUFFER, 0, true); // taken once: a duplicate packet takes nothing
    const block = this.blocks[id - 1];
    if (!block) return null;
    this.inRing--;
    return block;
  }

  isProvided(block: PinnedBlock): boolean {
    return (
      (block as ProvidedBlock).bid !== undefined &&
      this.blocks[(block as ProvidedBlock).bid] === block
    );
  }

  /** Blocks waiting in the ring for data. */
  get available(): number {
    return this.inRing;
  }

  /** After the ring is closed (which drops the registration): free the memory. */
  destroy(): void {
    for (const m of this.memory) this.alloc.freePinned(m);
    this.memory.length = 0;
  }
}

export class ProvidedBuffersUnavailable extends Error {
  constructor(readonly errno: number) {
    super(`io_uring provided-buffer ring refused (errno ${errno})`);
  }
}
