/**
 * Metrics of learned affinity (issue 3 item 6) on a prom-client Registry (`Metrics.registry`).
 *
 * Hot-path counters are labelled children cached per route (`forRoute`), so a request costs one
 * property read and an `inc()`, never a label hash. Registration is idempotent per registry:
 * a second AffinityMetrics on the same registry shares the same metrics.
 *
 * In a node:cluster, the primary sums counters from the workers (AggregatorRegistry); the
 * entries gauge takes the max (every worker holds the whole box's table) and the Redis up
 * gauge the min (1 only when every worker reaches Redis).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { SharedRedisObserver } from '../../shared/redis.js';

type Inc = { inc(n?: number): void };
type Observe = { observe(v: number): void };

/** One route's counters, resolved once. */
export class RouteAffinityMetrics {
  constructor(
    private readonly hits: Inc,
    private readonly misses: Inc,
    private readonly redirects: Inc,
    private readonly hopsHist: Observe,
  ) {}

  /** A key's owner was known (local table or the shared tier). */
  hit(n = 1): void {
    this.hits.inc(n);
  }

  /** A key had no known owner: the route guesses. */
  miss(n = 1): void {
    this.misses.inc(n);
  }

  /**
   * A request reached its owner after following `hops` ≥ 1 backend redirects: adds them to
   * `homing_redirects_total` and observes the hop count once.
   */
  redirected(hops: number): void {
    if (hops <= 0) return;
    this.redirects.inc(hops);
    this.hopsHist.observe(hops);
  }
}

export class AffinityMetrics {
  readonly hits: Counter<'route'>;
  readonly misses: Counter<'route'>;
  readonly entries: Gauge<'route'>;
  readonly redirects: Counter<'route'>;
  readonly hops: Histogram<'route'>;
  readonly redisErrors: Counter<'op'>;
  readonly redisUp: Gauge;
  /** Feeds `homing_shared_redis_*` from a SharedRedis (pass it as its observer). */
  readonly redis: SharedRedisObserver;
  private readonly routes = new Map<string, RouteAffinityMetrics>();
  private readonly sizes: Map<string, () => number>;

  constructor(registry: Registry) {
    const registers = [registry];
    // One size source map per registry, shared by every AffinityMetrics on it (the gauge's
    // collect() belongs to whichever registered it first).
    let sizes = sizeSources.get(registry);
    if (!sizes) sizeSources.set(registry, (sizes = new Map()));
    this.sizes = sizes;
    this.hits = once(registry, 'homing_affinity_hits_total', () => new Counter({ name: 'homing_affinity_hits_total', help: 'Look-ups that found the key\'s learned owner.', labelNames: ['route'], registers }));
    this.misses = once(registry, 'homing_affinity_misses_total', () => new Counter({ name: 'homing_affinity_misses_total', help: 'Look-ups of a key with no known owner (the route guessed).', labelNames: ['route'], registers }));
    this.entries = once(registry, 'homing_affinity_entries', () =>
      new Gauge({
        name: 'homing_affinity_entries',
        help: 'Entries in the local affinity table (expired ones count until touched or evicted).',
        labelNames: ['route'],
        aggregator: 'max',
        registers,
        collect() {
          for (const [route, size] of sizes) this.labels(route).set(size());
        },
      }),
    );
    this.redirects = once(registry, 'homing_redirects_total', () => new Counter({ name: 'homing_redirects_total', help: 'Backend redirects followed (each hop counts).', labelNames: ['route'], registers }));
    this.hops = once(registry, 'homing_redirect_hops', () =>
      new Histogram({ name: 'homing_redirect_hops', help: 'Redirects a request followed before reaching its owner (requests with at least one).', labelNames: ['route'], buckets: [1, 2, 3, 4, 8, 16], registers }),
    );
    this.redisErrors = once(registry, 'homing_shared_redis_errors_total', () =>
      new Counter({ name: 'homing_shared_redis_errors_total', help: 'Failed or timed-out Redis commands and connection errors of the shared tier.', labelNames: ['op'], registers }),
    );
    this.redisUp = once(registry, 'homing_shared_redis_up', () =>
      new Gauge({ name: 'homing_shared_redis_up', help: '1 while the shared tier reaches Redis, 0 while it runs on local state only.', aggregator: 'min', registers }),
    );
    const errChildren = new Map<string, Inc>();
    const errors = this.redisErrors;
    const up = this.redisUp;
    this.redis = {
      error(op: string): void {
        let c = errChildren.get(op);
        if (!c) errChildren.set(op, (c = errors.labels(op)));
        c.inc();
      },
      up(isUp: boolean): void {
        up.set(isUp ? 1 : 0);
      },
    };
  }

  /** The route's counters (cached: call once per route, keep the result). */
  forRoute(route: string): RouteAffinityMetrics {
    let m = this.routes.get(route);
    if (!m) {
      m = new RouteAffinityMetrics(this.hits.labels(route), this.misses.labels(route), this.redirects.labels(route), this.hops.labels(route));
      this.routes.set(route, m);
    }
    return m;
  }

  /** Report `size()` as the route's entries at each scrape. Returns the unregister function. */
  trackEntries(route: string, size: () => number): () => void {
    this.sizes.set(route, size);
    return () => {
      if (this.sizes.get(route) === size) {
        this.sizes.delete(route);
        this.entries.remove(route);
      }
    };
  }
}

const sizeSources = new WeakMap<Registry, Map<string, () => number>>();

function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}
