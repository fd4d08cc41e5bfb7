// Pinned native memory: allocated outside the JS heap, never moved or collected, so the
// kernel may write into it while an operation is in flight (DESIGN §1.4).

/** A block of pinned memory: `addr` is what the kernel sees, `bytes` the zero-copy JS view. */
export interface PinnedBlock {
  readonly addr: bigint;
  readonly bytes: Uint8Array;
}

/** Supplied by the backend, which is the only layer allowed to call FFI. */
export interface PinnedAllocator {
  allocPinned(size: number): PinnedBlock;
  freePinned(block: PinnedBlock): void;
}
