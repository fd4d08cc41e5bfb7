// Kernel pipes for bulk relay directions (io_uring): once a direction keeps filling whole
// buffers, its bytes move socket → pipe → socket with IORING_OP_SPLICE and never reach user
// memory (HAProxy splices the same way). Pipes cost two descriptors each, so only bulk
// directions get one, up to a bound; a direction keeps its pipe until its connection closes.
import type { Backend, KernelPipe } from '../backend.js';

/** Consecutive reads that filled a whole buffer before a direction switches to splicing. */
export const SPLICE_AFTER_FULL_READS = 2;

export class SplicePipes {
  private used = 0;
  /** Bytes moved by splice-outs (delivered to a peer without a copy to user memory). */
  bytes = 0;

  constructor(
    private readonly backend: Backend,
    /** Pipes open at once at most (each holds two descriptors). */
    readonly max: number,
  ) {}

  /** A pipe for a direction, or null: the backend cannot splice, or the bound is reached. */
  acquire(): KernelPipe | null {
    if (this.used >= this.max || !this.backend.createPipe) return null;
    const pipe = this.backend.createPipe();
    if (pipe) this.used++;
    return pipe;
  }

  /** After the last op that used it has completed. */
  release(pipe: KernelPipe): void {
    this.backend.closePipe?.(pipe);
    this.used--;
  }

  get inUse(): number {
    return this.used;
  }
}
