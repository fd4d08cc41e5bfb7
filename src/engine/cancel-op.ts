// The API's cancel of one in-flight op (POST /ops/{record}/cancel): CancelIoEx on IOCP,
// IORING_OP_ASYNC_CANCEL on io_uring. The command waits (up to a bound) for the op's completion
// to be dequeued, so the answer says what the kernel did with it; several requests may wait on
// one record. The completion path settles the waiters as it applies each completion.
import type { Backend, OpKind } from './backend.js';
import type { EventBus } from './events.js';
import type { OpPool, OpRecord } from './tables/ops.js';
import type { OwnerIds } from './views/snapshots.js';

/** What happened to an op the API asked to cancel. */
export interface CancelOutcome {
  record: string;
  op: OpKind;
  key: string;
  connection: string | null;
  listener: string | null;
  /** CancelIoEx (or ASYNC_CANCEL) was accepted by the kernel. */
  cancelRequested: boolean;
  /** Why not, when it was not (e.g. ERROR_NOT_FOUND: it completed first). */
  cancelError: string | null;
  /** The op's completion was handled within the wait. */
  completed: boolean;
  status: string | null;
  bytes: number | null;
}

export class OpCancels {
  /** Waiters by record; `gen` tells a later op on the same record from the one cancelled. */
  private readonly waiters = new Map<
    OpRecord,
    { gen: number; done: Array<(s: string, bytes: number) => void> }
  >();

  constructor(
    private readonly ops: OpPool,
    private readonly backend: Backend,
    private readonly events: EventBus,
    private readonly ownerIds: OwnerIds,
  ) {}

  /** Whether any cancel waits: the completion path skips settle() when none does. */
  get waiting(): boolean {
    return this.waiters.size > 0;
  }

  /** Cancels one in-flight op by its record address and reports what became of it. */
  async cancel(
    recordAddr: number,
    waitMs = 2000,
  ): Promise<CancelOutcome | 'not-found' | 'not-cancellable'> {
    const rec = this.ops.byAddress(recordAddr);
    if (!rec?.inFlight || !rec.keyEntry) return 'not-found';
    const entry = rec.keyEntry;
    if (entry.sock < 0) return 'not-cancellable'; // the heartbeat is a posted packet, not I/O
    const { connection, listener } = this.ownerIds(entry);
    const outcome: CancelOutcome = {
      record: rec.addressHex,
      op: rec.kind,
      key: entry.keyHex,
      connection,
      listener,
      cancelRequested: false,
      cancelError: null,
      completed: false,
      status: null,
      bytes: null,
    };
    const gen = rec.generation;
    const settled = new Promise<boolean>((resolve) => {
      let w = this.waiters.get(rec);
      if (!w || w.gen !== gen) {
        w = { gen, done: [] };
        this.waiters.set(rec, w);
      }
      w.done.push((status, bytes) => {
        outcome.completed = true;
        outcome.status = status;
        outcome.bytes = bytes;
        resolve(true);
      });
      setTimeout(() => resolve(false), waitMs).unref();
    });
    // The API's cancel wins over the engine's own parking of an idle read: the read then ends
    // the connection, as any cancelled read does.
    rec.parking = false;
    const code = rec.inlineQueued
      ? this.backend.codes.notFound
      : rec.cancelRequested
        ? 0
        : this.backend.cancel(entry.sock, rec);
    if (code !== 0) {
      outcome.cancelError = this.backend.errorName(code);
      return outcome;
    }
    rec.cancelRequested = true;
    outcome.cancelRequested = true;
    await settled;
    const w = this.waiters.get(rec);
    if (w?.gen === gen && !rec.inFlight) this.waiters.delete(rec);
    if (this.events.active) {
      const { record, op, key: k, connection: c, listener: l, status } = outcome;
      this.events.emit({
        type: 'op-cancelled',
        at: Date.now(),
        record,
        op,
        key: k,
        connection: c,
        listener: l,
        status,
      });
    }
    return outcome;
  }

  /** The completion of `rec` was applied: answer whoever waits on it. */
  settle(rec: OpRecord, errorName: string | null, bytes: number): void {
    const w = this.waiters.get(rec);
    if (!w || w.gen !== rec.generation) return;
    this.waiters.delete(rec);
    for (const done of w.done) done(errorName ?? 'SUCCESS', bytes);
  }
}
