/**
 * Prometheus metrics (prom-client). The per-request counters and the latency histogram are plain
 * numbers in nested maps, turned into prom-client values only when scraped: a request costs a few
 * map look-ups and additions, never a label hash (prom-client hashes labels on every inc()).
 *
 * A member that leaves its pool takes its series with it (`retainMembers`): `homing_member_up`,
 * and the request and latency series of every route over that pool. A request still in flight
 * when its member left records after the removal; the scrape drops it again, so a departed
 * member never comes back as a series that stays forever.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** route → member → status → count */
type RequestCounts = Map<string, Map<string, Map<number, number>>>;

interface LatencyCell {
  /** counts[i] = observations ≤ LATENCY_BUCKETS[i] (non-cumulative); last slot = +Inf only. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** route → the members its series may name (absent: any); see Metrics.retainMembers. */
type Retained = Map<string, ReadonlySet<string>>;

/** Drop from `byRoute` (route → member → …) every member `retained` no longer allows. */
function prune(byRoute: Map<string, Map<string, unknown>>, retained: Retained): void {
  for (const [route, byMember] of byRoute) {
    const keep = retained.get(route);
    if (keep) for (const member of byMember.keys()) if (!keep.has(member)) byMember.delete(member);
  }
}

/** A histogram registered directly with the registry; values live in plain arrays until scraped. */
class LatencyHistogram {
  readonly name = 'homing_upstream_latency_seconds';
  readonly help = 'Time from dispatch to the upstream response head.';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly cells = new Map<string, Map<string, LatencyCell>>();

  constructor(private readonly retained: Retained) {}

  observe(route: string, member: string, v: number): void {
    let byMember = this.cells.get(route);
    if (!byMember) this.cells.set(route, (byMember = new Map()));
    let c = byMember.get(member);
    if (!c) byMember.set(member, (c = { counts: new Float64Array(LATENCY_BUCKETS.length + 1), sum: 0, count: 0 }));
    let i = 0;
    while (i < LATENCY_BUCKETS.length && v > LATENCY_BUCKETS[i]!) i++;
    c.counts[i]!++;
    c.sum += v;
    c.count++;
  }

  get(): Promise<Omit<MetricObjectWithValues<MetricValueWithName<string>>, 'collect'>> {
    prune(this.cells, this.retained);
    const values: MetricValueWithName<string>[] = [];
    for (const [route, byMember] of this.cells) {
      for (const [member, c] of byMember) {
        let acc = 0;
        for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
          acc += c.counts[i]!;
          values.push({ metricName: `${this.name}_bucket`, labels: { le: LATENCY_BUCKETS[i]!, route, member }, value: acc });
        }
        values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', route, member }, value: c.count });
        values.push({ metricName: `${this.name}_sum`, labels: { route, member }, value: c.sum });
        values.push({ metricName: `${this.name}_count`, labels: { route, member }, value: c.count });
      }
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type as never, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.cells.clear();
  }
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'member' | 'status'>;
  readonly errors: Counter<'route' | 'code'>;
  readonly memberUp: Gauge<'pool' | 'member'>;
  readonly pickerRebuilds: Counter<'route'>;
  readonly retries: Counter<'route'>;
  readonly inflight: Gauge<'pool' | 'member'>;
  /** What `homing_member_inflight` reports at each scrape (set by the runtime: its pools). */
  private inflightSource: () => Iterable<{ pool: string; member: string; inflight: number }> = () => [];
  private readonly requestCounts: RequestCounts = new Map();
  private readonly retained: Retained = new Map();
  private readonly latencyHist = new LatencyHistogram(this.retained);
  /** pool → the members whose homing_member_up was last retained. */
  private readonly upMembers = new Map<string, ReadonlySet<string>>();
  private reloadCounter: Counter<'result'> | undefined;

  constructor(defaults = true) {
    const registers = [this.registry];
    const counts = this.requestCounts;
    const retained = this.retained;
    this.requests = new Counter({
      name: 'homing_requests_total',
      help: 'Proxied requests by route, member and upstream status.',
      labelNames: ['route', 'member', 'status'],
      registers,
      collect() {
        prune(counts, retained);
        this.reset();
        for (const [route, byMember] of counts) for (const [member, byStatus] of byMember) for (const [status, n] of byStatus) this.inc({ route, member, status: String(status) }, n);
      },
    });
    this.registry.registerMetric(this.latencyHist as never);
    this.errors = new Counter({ name: 'homing_errors_total', help: 'Errors homing answered itself, by route and code.', labelNames: ['route', 'code'], registers });
    this.memberUp = new Gauge({ name: 'homing_member_up', help: '1 when the member is live (health), else 0.', labelNames: ['pool', 'member'], registers });
    this.pickerRebuilds = new Counter({ name: 'homing_ring_rebuilds_total', help: 'Strategy (ring, table, balancer) rebuilds after member or health changes.', labelNames: ['route'], registers });
    this.retries = new Counter({ name: 'homing_retries_total', help: 'Requests re-sent after a connect failure or a stale keep-alive socket.', labelNames: ['route'], registers });
    const inflightOf = (): Iterable<{ pool: string; member: string; inflight: number }> => this.inflightSource();
    this.inflight = new Gauge({
      name: 'homing_member_inflight',
      help: 'Requests in flight to the member right now (summed over workers).',
      labelNames: ['pool', 'member'],
      registers,
      collect() {
        this.reset();
        for (const m of inflightOf()) this.set({ pool: m.pool, member: m.member }, m.inflight);
      },
    });
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'homing_' });
  }

  /** One proxied response (hot path). */
  request(route: string, member: string, status: number): void {
    let byMember = this.requestCounts.get(route);
    if (!byMember) this.requestCounts.set(route, (byMember = new Map()));
    let byStatus = byMember.get(member);
    if (!byStatus) byMember.set(member, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  }

  /** Upstream latency to the response head, in seconds (hot path). */
  latency(route: string, member: string, seconds: number): void {
    this.latencyHist.observe(route, member, seconds);
  }

  /**
   * Pool `pool` now has exactly the members `ids`, and `routes` are the routes over it: the series
   * of every member that left (its `homing_member_up`, its request and latency series on those
   * routes) are removed. Call it whenever a pool's member list changes.
   */
  retainMembers(pool: string, routes: readonly string[], ids: ReadonlySet<string>): void {
    for (const id of this.upMembers.get(pool) ?? []) if (!ids.has(id)) this.memberUp.remove({ pool, member: id });
    this.upMembers.set(pool, ids);
    for (const route of routes) this.retained.set(route, ids);
    prune(this.requestCounts, this.retained);
    prune(this.latencyHist.cells, this.retained);
  }

  /**
   * `homing_config_reloads_total{result}`, registered on first use: by the process that reloads
   * the config file (a lone process, or a cluster primary, which adds it to the workers' sum), so
   * a box never reports it twice.
   */
  reloads(): Counter<'result'> {
    if (!this.reloadCounter) {
      this.reloadCounter = new Counter({ name: 'homing_config_reloads_total', help: 'Config reloads (SIGHUP, POST /api/v1/reload, reload.watch) by result: ok, or error (invalid, or not applied).', labelNames: ['result'], registers: [this.registry] });
      for (const result of ['ok', 'error']) this.reloadCounter.labels(result).inc(0);
    }
    return this.reloadCounter;
  }

  /**
   * Series of routes and pools a reload removed: their request and latency series and their
   * members' `homing_member_up`.
   */
  forget(routes: Iterable<string>, pools: Iterable<string>): void {
    // Retained with no member, not forgotten: a request of the old config still in flight may
    // record after this, and the next scrape drops that too.
    for (const route of routes) this.retained.set(route, new Set());
    prune(this.requestCounts, this.retained);
    prune(this.latencyHist.cells, this.retained);
    for (const pool of pools) this.retainMembers(pool, [], new Set());
  }

  /** Read in-flight requests per pool member from `source` at each scrape (the runtime's pools). */
  trackInflight(source: () => Iterable<{ pool: string; member: string; inflight: number }>): void {
    this.inflightSource = source;
  }

  /** Requests per member of a route so far (dashboard, tests). */
  requestsByMember(route: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const [member, byStatus] of this.requestCounts.get(route) ?? []) {
      let n = 0;
      for (const v of byStatus.values()) n += v;
      out.set(member, n);
    }
    return out;
  }
}
