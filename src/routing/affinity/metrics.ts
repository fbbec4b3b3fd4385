/**
 * Metrics of learned affinity on a prom-client Registry (`Metrics.registry`).
 *
 * The per-request counts are plain numbers per route, turned into Prometheus values only when
 * scraped (prom-client hashes the labels on every `inc()`, even on a labelled child): a request
 * costs one Map look-up and an addition.
 *
 * AffinityMetrics has the shape of the proxy's `AffinityObserver` (hit, miss, redirect with a
 * route), so the runtime can pass it as is.
 *
 * In a node:cluster, the primary sums counters from the workers (prom-client's aggregators); the
 * entries gauge takes the max (every worker holds the whole box's table) and the Redis up gauge
 * the min (1 only when every worker reaches Redis).
 */
import { Counter, Gauge, type MetricObjectWithValues, type MetricValueWithName, type Registry } from 'prom-client';
import type { SharedRedisObserver } from '../../state/redis.js';

/** Anything with a route name (a Route). */
export interface RouteLike {
  readonly name: string;
}

/** Redirect hops a histogram bucket bounds (le). */
const HOP_BUCKETS = [1, 2, 3, 4, 8, 16];

/** One route's counts. Methods are the hot path: additions only. */
export class RouteAffinityMetrics {
  hits = 0;
  misses = 0;
  /** ranks[k] = redirects followed as the k-th hop of their request (ranks[0] unused). */
  readonly ranks: number[] = [0];
  sharedHits = 0;
  sharedMisses = 0;

  constructor(readonly route: string) {}

  /** A request was sent to its key's learned owner. */
  hit(): void {
    this.hits++;
  }

  /** A request with a key had no (live) learned owner: the route guessed. */
  miss(): void {
    this.misses++;
  }

  /**
   * One backend redirect followed; `hop` is its rank within the request (1 for the first).
   * Call it once per hop: the per-request hop histogram is derived from the ranks at scrape.
   */
  redirect(hop: number): void {
    const k = hop >= 1 ? Math.floor(hop) : 1;
    while (this.ranks.length <= k) this.ranks.push(0);
    this.ranks[k]!++;
  }

  /** A local miss was read through Redis: `found` an owner there or not; `n` look-ups shared the read. */
  sharedRead(found: boolean, n = 1): void {
    if (found) this.sharedHits += n;
    else this.sharedMisses += n;
  }

  get redirects(): number {
    let n = 0;
    for (let k = 1; k < this.ranks.length; k++) n += this.ranks[k]!;
    return n;
  }
}

type Values = MetricValueWithName<string>[];

/** `homing_redirect_hops`: requests that followed ≥ 1 redirect, by how many they followed. */
class HopsHistogram {
  readonly name = 'homing_redirect_hops';
  readonly help = 'Backend redirects a request followed before its answer (requests with at least one).';
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(private readonly routes: Map<string, RouteAffinityMetrics>) {}

  get(): Promise<Omit<MetricObjectWithValues<MetricValueWithName<string>>, 'collect'>> {
    const values: Values = [];
    for (const [route, m] of this.routes) {
      const r = m.ranks;
      // Requests with ≥ k hops = redirects of rank k; with ≤ k hops = rank[1] − rank[k+1].
      const requests = r[1] ?? 0;
      if (requests === 0) continue;
      for (const le of HOP_BUCKETS) values.push({ metricName: `${this.name}_bucket`, labels: { le, route }, value: requests - (r[le + 1] ?? 0) });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', route }, value: requests });
      values.push({ metricName: `${this.name}_sum`, labels: { route }, value: m.redirects });
      values.push({ metricName: `${this.name}_count`, labels: { route }, value: requests });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type as never, values, aggregator: this.aggregator });
  }

  reset(): void {
    for (const m of this.routes.values()) m.ranks.length = 1;
  }
}

export class AffinityMetrics {
  readonly hits: Counter<'route'>;
  readonly misses: Counter<'route'>;
  readonly entries: Gauge<'route'>;
  readonly redirects: Counter<'route'>;
  readonly sharedReads: Counter<'route' | 'result'>;
  readonly redisErrors: Counter<'op'>;
  readonly redisUp: Gauge;
  /** Feeds `homing_shared_redis_*` from a SharedRedis (pass it as its observer). */
  readonly redis: SharedRedisObserver;
  private readonly routes = new Map<string, RouteAffinityMetrics>();
  private readonly sizes = new Map<string, () => number>();

  /** One AffinityMetrics per registry (a second would register the same names twice). */
  static of(registry: Registry): AffinityMetrics {
    let m = byRegistry.get(registry);
    if (!m) byRegistry.set(registry, (m = new AffinityMetrics(registry)));
    return m;
  }

  constructor(registry: Registry) {
    const registers = [registry];
    const routes = this.routes;
    const sizes = this.sizes;
    const sumOf = (f: (m: RouteAffinityMetrics) => number) =>
      function (this: Counter<'route'>): void {
        this.reset();
        for (const [route, m] of routes) {
          const n = f(m);
          if (n > 0) this.inc({ route }, n);
        }
      };
    this.hits = new Counter({ name: 'homing_affinity_hits_total', help: "Requests sent to their key's learned owner.", labelNames: ['route'], registers, collect: sumOf((m) => m.hits) });
    this.misses = new Counter({ name: 'homing_affinity_misses_total', help: 'Requests with a key but no live learned owner (the route guessed).', labelNames: ['route'], registers, collect: sumOf((m) => m.misses) });
    this.redirects = new Counter({ name: 'homing_redirects_total', help: 'Backend redirects followed (each hop counts).', labelNames: ['route'], registers, collect: sumOf((m) => m.redirects) });
    this.sharedReads = new Counter({
      name: 'homing_affinity_shared_reads_total',
      help: 'Local misses read through Redis, by result (hit: an owner was found there).',
      labelNames: ['route', 'result'],
      registers,
      collect() {
        this.reset();
        for (const [route, m] of routes) {
          if (m.sharedHits > 0) this.inc({ route, result: 'hit' }, m.sharedHits);
          if (m.sharedMisses > 0) this.inc({ route, result: 'miss' }, m.sharedMisses);
        }
      },
    });
    this.entries = new Gauge({
      name: 'homing_affinity_entries',
      help: 'Entries in the local affinity table (expired ones count until touched or evicted).',
      labelNames: ['route'],
      aggregator: 'max',
      registers,
      collect() {
        for (const [route, size] of sizes) this.labels(route).set(size());
      },
    });
    registry.registerMetric(new HopsHistogram(routes) as never);
    this.redisErrors = new Counter({ name: 'homing_shared_redis_errors_total', help: 'Failed or timed-out Redis commands and connection errors of the shared tier.', labelNames: ['op'], registers });
    this.redisUp = new Gauge({ name: 'homing_shared_redis_up', help: '1 while the shared tier reaches Redis, 0 while it runs on local state only.', aggregator: 'min', registers });
    const errors = this.redisErrors;
    const up = this.redisUp;
    this.redis = {
      error: (op: string) => errors.inc({ op }),
      up: (isUp: boolean) => up.set(isUp ? 1 : 0),
    };
  }

  /** The route's counts (created on first use; keep the result on hot paths). */
  forRoute(route: string): RouteAffinityMetrics {
    let m = this.routes.get(route);
    if (!m) this.routes.set(route, (m = new RouteAffinityMetrics(route)));
    return m;
  }

  // The proxy's AffinityObserver: one Map look-up per call.

  hit(route: RouteLike): void {
    this.forRoute(route.name).hits++;
  }

  miss(route: RouteLike): void {
    this.forRoute(route.name).misses++;
  }

  /** One redirect followed; `hops` is its rank in the request (1, then 2, …). */
  redirect(route: RouteLike, hops: number): void {
    this.forRoute(route.name).redirect(hops);
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

const byRegistry = new WeakMap<Registry, AffinityMetrics>();
