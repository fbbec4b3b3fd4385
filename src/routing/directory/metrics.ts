/**
 * Metrics of the directory tier, per route: look-ups by outcome, directory calls that failed by
 * reason, background refreshes, call latency and entries held. Counts are plain numbers on the
 * hot path (a hit is one addition), turned into Prometheus values when scraped.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { DirectoryFailure, DirectoryObserver, UnavailableReason } from './table.js';

/** What a look-up came to (each `get` counts one of the first four, then maybe one of the rest). */
const OUTCOMES = ['hit', 'miss', 'coalesced', 'backoff', 'negative', 'stale', 'unavailable'] as const;
type Outcome = (typeof OUTCOMES)[number];

/** One route's counts: plain fields, so a hit is one addition. */
class RouteCounts {
  hit = 0;
  miss = 0;
  coalesced = 0;
  backoff = 0;
  negative = 0;
  stale = 0;
  unavailable = 0;
  readonly errors = new Map<DirectoryFailure, number>();
  refreshes = 0;
  entries = 0;
}

const byRegistry = new WeakMap<Registry, DirectoryMetrics>();

export class DirectoryMetrics {
  /** The one DirectoryMetrics of `registry` (metric names register once per registry). */
  static of(registry: Registry): DirectoryMetrics {
    let m = byRegistry.get(registry);
    if (!m) byRegistry.set(registry, (m = new DirectoryMetrics(registry)));
    return m;
  }

  private readonly routes = new Map<string, RouteCounts>();
  private readonly latency: Histogram<'route'>;

  constructor(registry: Registry) {
    const routes = this.routes;
    new Counter({
      name: 'homing_directory_lookups_total',
      help: 'Directory look-ups by outcome: hit, miss (a directory call), coalesced (waited on one in flight), backoff (not asked: the directory is failing); then negative, stale or unavailable answers.',
      labelNames: ['route', 'outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [route, c] of routes) for (const outcome of OUTCOMES) if (c[outcome] > 0) this.inc({ route, outcome }, c[outcome]);
      },
    });
    new Counter({
      name: 'homing_directory_errors_total',
      help: 'Directory calls that failed, by reason: error, timeout, bad-answer, bad-key, invalid (names no pool or member of the route).',
      labelNames: ['route', 'reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [route, c] of routes) for (const [reason, n] of c.errors) this.inc({ route, reason }, n);
      },
    });
    new Counter({
      name: 'homing_directory_refreshes_total',
      help: 'Background refreshes of entries in use before they expire.',
      labelNames: ['route'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [route, c] of routes) if (c.refreshes > 0) this.inc({ route }, c.refreshes);
      },
    });
    new Gauge({
      name: 'homing_directory_entries',
      help: 'Keys the directory tier holds (answers, "no such key" answers, seed and manual entries).',
      labelNames: ['route'],
      registers: [registry],
      collect() {
        for (const [route, c] of routes) this.set({ route }, c.entries);
      },
    });
    this.latency = new Histogram({
      name: 'homing_directory_latency_seconds',
      help: 'Time a directory call took (or until it timed out).',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
  }

  /** The observer one route's table reports to; `onError` hears each failed call (for logs). */
  observer(route: string, onError?: (reason: DirectoryFailure, key: string, value?: string) => void): DirectoryObserver {
    const c = new RouteCounts();
    this.routes.set(route, c);
    const latency = this.latency.labels(route);
    return {
      hit: () => void c.hit++,
      miss: () => void c.miss++,
      coalesced: () => void c.coalesced++,
      backoff: () => void c.backoff++,
      negative: () => void c.negative++,
      stale: () => void c.stale++,
      unavailable: (_reason: UnavailableReason) => void c.unavailable++,
      refresh: () => void c.refreshes++,
      error: (reason, key, value) => {
        c.errors.set(reason, (c.errors.get(reason) ?? 0) + 1);
        onError?.(reason, key, value);
      },
      latency: (s) => latency.observe(s),
      entries: (n) => void (c.entries = n),
    };
  }

  /** Hit ratio material for the dashboard: look-ups by outcome per route. */
  counts(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [route, c] of this.routes) out[route] = Object.fromEntries(OUTCOMES.map((o: Outcome) => [o, c[o]]));
    return out;
  }
}
