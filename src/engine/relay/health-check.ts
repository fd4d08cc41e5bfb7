// Active health checks of a forward listener's targets: every intervalMs, a TCP connect to each
// (through the engine, like any op: a key of its own owned by `check`, a connect op in /ops),
// closed with FIN as soon as it connects. `fall` failed checks in a row take a target down,
// `rise` good ones bring it up (upstreams.ts). A check that has not connected by timeoutMs is
// cancelled and counts as failed; a round skips a target whose last check is still in flight.
import { BackendError, type SocketAddress } from '../backend.js';
import type { EngineCore, OpOwner } from '../core.js';
import { literalAddress, upstreamAddresses } from '../net/upstream-addresses.js';
import type { OpRecord } from '../tables/ops.js';
import { connectedToItself, type Endpoint, openConnectEndpoint } from './endpoint.js';
import type { Upstream, Upstreams } from './upstreams.js';

interface Probe {
  readonly upstream: Upstream;
  readonly ep: Endpoint;
  readonly timer: NodeJS.Timeout;
  timedOut: boolean;
}

export interface CheckEvents {
  changed(u: Upstream, up: boolean, error: string | null): void;
}

export class HealthChecks implements OpOwner {
  private timer: NodeJS.Timeout | null = null;
  private readonly probes = new Map<OpRecord, Probe>();
  /** Targets with a check under way (resolving or connecting). */
  private readonly busy = new Set<Upstream>();
  private stopped = false;

  constructor(
    private readonly core: EngineCore,
    private readonly listenerId: string,
    private readonly upstreams: Upstreams,
    private readonly events: CheckEvents | null = null,
  ) {}

  start(): void {
    const cfg = this.upstreams.checks;
    if (!cfg || this.timer) return;
    this.timer = setInterval(() => this.round(), cfg.intervalMs);
    this.timer.unref();
    this.round();
  }

  /** No more rounds; checks in flight are cancelled (their completions still come). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const p of this.probes.values()) this.core.cancelAll(p.ep.keyEntry);
  }

  private round(): void {
    for (const u of this.upstreams.list) if (!this.busy.has(u)) void this.probe(u);
  }

  private async probe(u: Upstream): Promise<void> {
    this.busy.add(u);
    const { host, port } = u.target;
    let addr: SocketAddress | undefined;
    try {
      addr = literalAddress(host, port) ?? (await upstreamAddresses(host, port))[0];
      if (!addr) throw Object.assign(new Error('no address'), { code: 'ENOTFOUND' });
    } catch (err) {
      this.busy.delete(u);
      if (!this.stopped) this.record(u, false, (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND');
      return;
    }
    if (this.stopped) {
      this.busy.delete(u);
      return;
    }
    let ep: Endpoint;
    try {
      ep = openConnectEndpoint(this.core, addr.family, {
        kind: 'check',
        id: this.listenerId,
        target: u.label,
      });
    } catch (err) {
      this.busy.delete(u);
      this.record(u, false, err instanceof BackendError ? err.errorName : 'UNKNOWN');
      return;
    }
    ep.remote = addr;
    const rec = this.core.newOp('connect', ep.keyEntry, this);
    rec.peer = addr;
    const timeoutMs = this.upstreams.checks?.timeoutMs ?? 2000;
    const probe: Probe = {
      upstream: u,
      ep,
      timedOut: false,
      timer: setTimeout(() => {
        probe.timedOut = true;
        this.core.cancelAll(probe.ep.keyEntry);
      }, timeoutMs),
    };
    this.probes.set(rec, probe);
    this.core.submit(rec);
  }

  complete(rec: OpRecord, code: number): void {
    const probe = this.probes.get(rec);
    if (!probe) return;
    this.probes.delete(rec);
    clearTimeout(probe.timer);
    const { ep, upstream } = probe;
    let error: string | null = null;
    if (probe.timedOut) error = 'CHECK_TIMEOUT';
    else if (code !== 0) error = this.core.errorName(code);
    else if (connectedToItself(this.core.backend, ep)) error = 'SELF_CONNECT';
    ep.closed = true;
    // A check that connected ends with FIN, as a polite client would; a failed one has no peer.
    this.core.backend.closeSocket(ep.sock, error !== null);
    this.core.releaseKey(ep.keyEntry);
    this.busy.delete(upstream);
    if (!this.stopped || error === null) this.record(upstream, error === null, error);
  }

  private record(u: Upstream, ok: boolean, error: string | null): void {
    const c = u.check;
    const cfg = this.upstreams.checks;
    if (!c || !cfg) return;
    c.checksTotal++;
    c.lastCheckAt = Date.now();
    if (!ok) {
      c.failuresTotal++;
      c.lastError = error;
    }
    // The streak of the same outcome; the state turns when it is long enough.
    c.streak = c.lastOk === ok ? c.streak + 1 : 1;
    c.lastOk = ok;
    const before = c.up;
    // The first answer decides at once (a target starts unknown, and is sent traffic meanwhile).
    if (before === null) c.up = ok;
    else if (ok && !before && c.streak >= cfg.rise) c.up = true;
    else if (!ok && before && c.streak >= cfg.fall) c.up = false;
    if (c.up !== before && before !== null) this.events?.changed(u, c.up === true, error);
    else if (before === null && c.up === false) this.events?.changed(u, false, error);
  }
}
