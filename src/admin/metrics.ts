/**
 * Prometheus metrics (prom-client). Hot-path counters cache their labelled children in nested
 * maps, so a request costs a few map look-ups, not a label hash.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type Child = { inc(n?: number): void };
type HistChild = { observe(v: number): void };

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'member' | 'status'>;
  readonly upstreamLatency: Histogram<'route' | 'member'>;
  readonly errors: Counter<'route' | 'code'>;
  readonly memberUp: Gauge<'pool' | 'member'>;
  readonly pickerRebuilds: Counter<'route'>;
  readonly retries: Counter<'route'>;
  private readonly reqChildren = new Map<string, Map<string, Map<number, Child>>>();
  private readonly latChildren = new Map<string, Map<string, HistChild>>();

  constructor(defaults = true) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'homing_requests_total', help: 'Proxied requests by route, member and upstream status.', labelNames: ['route', 'member', 'status'], registers });
    this.upstreamLatency = new Histogram({
      name: 'homing_upstream_latency_seconds',
      help: 'Time from dispatch to the upstream response head.',
      labelNames: ['route', 'member'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.errors = new Counter({ name: 'homing_errors_total', help: 'Errors homing answered itself, by route and code.', labelNames: ['route', 'code'], registers });
    this.memberUp = new Gauge({ name: 'homing_member_up', help: '1 when the member is live (health), else 0.', labelNames: ['pool', 'member'], registers });
    this.pickerRebuilds = new Counter({ name: 'homing_ring_rebuilds_total', help: 'Strategy (ring, table, balancer) rebuilds after member or health changes.', labelNames: ['route'], registers });
    this.retries = new Counter({ name: 'homing_retries_total', help: 'Requests re-sent to another member after a connect failure.', labelNames: ['route'], registers });
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'homing_' });
  }

  request(route: string, member: string, status: number): void {
    let byMember = this.reqChildren.get(route);
    if (!byMember) this.reqChildren.set(route, (byMember = new Map()));
    let byStatus = byMember.get(member);
    if (!byStatus) byMember.set(member, (byStatus = new Map()));
    let c = byStatus.get(status);
    if (!c) byStatus.set(status, (c = this.requests.labels(route, member, String(status))));
    c.inc();
  }

  latency(route: string, member: string, seconds: number): void {
    let byMember = this.latChildren.get(route);
    if (!byMember) this.latChildren.set(route, (byMember = new Map()));
    let h = byMember.get(member);
    if (!h) byMember.set(member, (h = this.upstreamLatency.labels(route, member)));
    h.observe(seconds);
  }
}
