/** Cache metrics: look-ups by outcome, stores, evictions, purges, and the store's size. */
import { Counter, Gauge, type Registry } from 'prom-client';

export type CacheOutcome = 'hit' | 'miss' | 'stale' | 'revalidated' | 'bypass';

export class CacheMetrics {
  readonly requests: Counter<'route' | 'outcome'>;
  readonly stores: Counter<'route'>;
  readonly evictions: Counter;
  readonly purged: Counter;

  constructor(registry: Registry, sizes: () => { bytes: number; entries: number; principals: number }) {
    const registers = [registry];
    this.requests = new Counter({ name: 'homing_cache_requests_total', help: 'Cache look-ups by route and outcome (hit, miss, stale, revalidated, bypass).', labelNames: ['route', 'outcome'], registers });
    this.stores = new Counter({ name: 'homing_cache_stores_total', help: 'Responses stored in the cache.', labelNames: ['route'], registers });
    this.evictions = new Counter({ name: 'homing_cache_evictions_total', help: 'Stored responses evicted to stay within cache.memory.', registers });
    this.purged = new Counter({ name: 'homing_cache_purged_total', help: 'Stored responses removed by purges and invalidations.', registers });
    new Gauge({ name: 'homing_cache_bytes', help: 'Bytes held by the response cache.', registers, collect() { this.set(sizes().bytes); } });
    new Gauge({ name: 'homing_cache_entries', help: 'Responses held by the cache.', registers, collect() { this.set(sizes().entries); } });
    new Gauge({ name: 'homing_cache_principals', help: 'Principals whose trusted headers are known.', registers, collect() { this.set(sizes().principals); } });
  }
}
