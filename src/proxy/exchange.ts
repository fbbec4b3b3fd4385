/**
 * One request's state as it goes through the phases, whatever the transport (a plain request on
 * `node:http` + undici, or an upgrade): the route, the forwarded head, the resolution, attempts
 * and redirect hops. The transports (`forward.ts`, `upgrade.ts`) extend it; the phases
 * (`resolve.ts`, `response-head.ts`, `redirect.ts`, `log.ts`) read and update it.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ErrorCode } from '../errors.js';
import type { Metrics } from '../admin/metrics.js';
import type { CacheOutcome, ResponseCache } from '../cache/index.js';
import type { Member } from '../members/member.js';
import type { Pool } from '../members/pool.js';
import type { RequestView } from '../routing/keys.js';
import type { Route } from '../routing/route.js';
import type { Resolution } from '../routing/strategy.js';
import type { RequestHead } from './context.js';
import type { HygieneOptions } from './hygiene.js';
import type { AccessLog } from './access-log.js';
import type { Router } from './match.js';
import type { RedirectTarget } from './redirect.js';
import type { RequestSpan, SpanExporter } from './spans.js';
import type { UpstreamOptions, Upstreams } from './upstreams.js';

export interface HealthReporter {
  /** A request to `member` of `pool` failed at connect/reset/timeout (passive health). */
  failure(pool: Pool, member: Member): void;
  success(pool: Pool, member: Member): void;
}

/** Optional observers of the affinity protocol (metrics). */
export interface AffinityObserver {
  hit(route: Route): void;
  miss(route: Route): void;
  redirect(route: Route, hops: number): void;
}

/** What the phases need of the process: routes, upstream pools, health, metrics, logs. */
export interface PipelineDeps {
  readonly router: Router;
  readonly hygiene: HygieneOptions;
  readonly upstreams: Upstreams;
  upstreamOptions(route: Route, pool: Pool): UpstreamOptions;
  readonly metrics: Metrics;
  readonly health?: HealthReporter;
  readonly affinity?: AffinityObserver;
  readonly log: Logger;
  /** Backend-protocol headers (redirect, owner) no client ever sees, on any route. */
  readonly dropResponseHeaders: ReadonlySet<string>;
  /** The access log, when configured. */
  readonly access?: AccessLog;
  /** The span exporter, with `tracing.otlp`. */
  readonly spans?: SpanExporter;
  /** What a graceful shutdown changes (see `DrainState`). */
  readonly drain: DrainState;
  /** The response cache, when `cache` is configured (principal learning runs on every route). */
  readonly cache?: ResponseCache;
  /** Requests routed with these deps and not over yet (see `InFlight`). */
  readonly inflight: InFlight;
}

/**
 * The requests routed by one config generation (one PipelineDeps) that are not over yet. A reload
 * swaps the proxy's deps between requests; what only the old generation uses (a directory table
 * whose settings changed, a route's affinity store that started fresh) is closed once its
 * requests are over, so none of them meets a closed part.
 */
export class InFlight {
  private n = 0;
  private waiters: (() => void)[] = [];

  get count(): number {
    return this.n;
  }

  /** One more request, over when `closes` (its response, or an upgrade's socket) emits 'close'. */
  hold(closes: { on(event: 'close', fn: () => void): unknown }): void {
    this.n++;
    closes.on('close', this.release);
  }

  private readonly release = (): void => {
    if (--this.n === 0) for (const w of this.waiters.splice(0)) w();
  };

  /** Resolves once no request is held (at once when none is). */
  idle(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

/**
 * During a graceful shutdown every answer closes its connection (`Connection: close`), so clients
 * move to another instance as soon as their request is done; websocket tunnels are tracked so the
 * shutdown can end them after their grace period.
 */
export class DrainState {
  draining = false;
  readonly tunnels = new Set<{ destroy(): void }>();
}

export class Exchange {
  /** 0 for the first choice; n after n failures where nothing reached a member. */
  attempt = 0;
  /** Members tried for this request (built on the first retry only). */
  tried: Set<Member> | undefined;
  /** Backend redirects followed so far. */
  hops = 0;
  /** Members that redirected this request (a redirect back to one is a loop). */
  visited: Set<Member> | undefined;
  /** The member the request is with now. */
  resolution: Resolution | undefined;
  /** The request line's target: the client's, or the last redirect's. */
  uri: string;
  /** When the current upstream attempt began (performance.now()). */
  started = 0;
  /** The request's affinity key, when the route has affinity. */
  readonly affKey: string | undefined;
  /** performance.now() when the first attempt was sent, and when the last one ended (0: not yet). */
  sentAt = 0;
  endedAt = 0;
  /** Status of the member's last answer (0: none yet). */
  status = 0;
  /** The code of the answer homing gave itself, if it did. */
  errorCode: ErrorCode | undefined;
  /** This request's span, when it is sampled and spans are exported. */
  span: RequestSpan | undefined;
  /** What the route's cache did with the request (undefined: the route does not cache). */
  cacheOutcome: CacheOutcome | undefined;
  /** The caller's principal id (`cache.principal.key`, hashed), when configured and present. */
  readonly principal: string | undefined;

  constructor(
    readonly deps: PipelineDeps,
    readonly route: Route,
    readonly head: RequestHead,
    readonly view: RequestView,
    /** Whether the body can be sent again (absent or fully buffered). */
    public replayable: boolean,
  ) {
    this.uri = head.uri;
    this.affKey = route.affinityKey?.(view);
    this.principal = deps.cache?.principalKey === undefined ? undefined : deps.cache.principalOf(view);
    if (deps.spans !== undefined && head.sampled) this.span = deps.spans.request(this);
  }

  /** The upstream phase begins with `r`: counted in flight until `release`. */
  take(r: Resolution): void {
    this.resolution = r;
    r.member.inflight++;
    this.status = 0;
    const now = performance.now();
    this.started = now;
    if (this.sentAt === 0) this.sentAt = now;
    if (this.span !== undefined) this.traceAttempt(this.span.attempt(r, this.attempt, this.hops));
  }

  /** The attempt ended (`error`: why it failed, if it did). */
  release(error?: string): void {
    if (this.resolution) this.resolution.member.inflight--;
    this.endedAt = performance.now();
    this.span?.attemptEnd(this.status, error);
  }

  /** The member's parent in the traceparent is the attempt's span. */
  private traceAttempt(spanId: string): void {
    const h = this.head.headers;
    for (let i = h.length - 2; i >= 0; i -= 2) {
      if (h[i] === 'traceparent') {
        const v = h[i + 1]!;
        h[i + 1] = `${v.slice(0, 36)}${spanId}${v.slice(52)}`;
        return;
      }
    }
  }

  /** Nothing reached the member: mark it tried, so the next resolution picks another. */
  markTried(): void {
    (this.tried ??= new Set()).add(this.resolution!.member);
    this.attempt++;
    this.deps.metrics.retries.labels(this.route.name).inc();
  }

  /** The resolution a followed redirect leads to (same `by` as the first choice). */
  redirected(t: RedirectTarget): Resolution {
    this.uri = t.uri;
    return { member: t.member, pool: t.pool, by: this.resolution!.by };
  }

  /**
   * The member failed this request (connect, reset, timeout): passive health hears of it, and
   * when it could not even be connected to, keys it owns are guessed again.
   */
  memberFailed(connected: boolean): void {
    const r = this.resolution;
    if (!r) return;
    this.deps.health?.failure(r.pool, r.member);
    if (!connected && (r.by === 'affinity' || this.hops > 0)) this.route.affinity?.dropOwner(r.member.id);
  }
}
