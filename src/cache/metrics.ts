/** Cache metrics: look-ups by outcome, stores, evictions, purges, and the store's size. */
import { Counter, Gauge, type Registry } from 'prom-client';

export type CacheOutcome = 'hit' | 'miss' | 'stale' | 'revalidated' | 'bypass';

export interface CacheSizes {
  bytes: number;
  entries: number;
  principals: number;
}

const byRegistry = new WeakMap<Registry, CacheMetrics>();

/** One set per registry (a reload's new cache counts on the same series); the gauges read `sizes`. */
export class CacheMetrics {
  readonly requests: Counter<'route' | 'outcome'>;
  readonly stores: Counter<'route'>;
  readonly evictions: Counter;
  readonly purged: Counter;
  /** What the gauges report: the cache in force (the runtime sets it). */
  sizes: () => CacheSizes = () => ({ bytes: 0, entries: 0, principals: 0 });

  static of(registry: Registry): CacheMetrics {
    let m = byRegistry.get(registry);
    if (m === undefined) byRegistry.set(registry, (m = new CacheMetrics(registry)));
    return m;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    const sizes = (): CacheSizes => this.sizes();
    this.requests = new Counter({ name: 'homing_cache_requests_total', help: 'Cache look-ups by route and outcome (hit, miss, stale, revalidated, bypass).', labelNames: ['route', 'outcome'], registers });
    this.stores = new Counter({ name: 'homing_cache_stores_total', help: 'Responses stored in the cache.', labelNames: ['route'], registers });
    this.evictions = new Counter({ name: 'homing_cache_evictions_total', help: 'Stored responses evicted to stay within cache.memory.', registers });
    this.purged = new Counter({ name: 'homing_cache_purged_total', help: 'Stored responses removed by purges and invalidations.', registers });
    new Gauge({ name: 'homing_cache_bytes', help: 'Bytes held by the response cache.', registers, collect() { this.set(sizes().bytes); } });
    new Gauge({ name: 'homing_cache_entries', help: 'Responses held by the cache.', registers, collect() { this.set(sizes().entries); } });
    new Gauge({ name: 'homing_cache_principals', help: 'Principals whose trusted headers are known.', registers, collect() { this.set(sizes().principals); } });
  }
}
