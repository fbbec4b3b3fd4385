/**
 * Learned affinity state: `createAffinityStore` builds a route's store with the
 * tiers the process has — always the local table, the worker tier with a ClusterBus, the
 * instance tier with a SharedRedis.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../clock.js';
import type { ClusterBus } from '../../state/cluster.js';
import type { SharedRedis } from '../../state/redis.js';
import { LocalAffinityTable } from './local.js';
import type { AffinityMetrics } from './metrics.js';
import { SharedAffinityStore } from './shared.js';
import { AffinityTableStore } from './store.js';

export { LocalAffinityTable, type LocalAffinityOptions, type Learned } from './local.js';
export { AffinityMetrics, RouteAffinityMetrics, type RouteLike } from './metrics.js';
export { SharedAffinityStore, type SharedKV, type SharedAffinityStoreOptions } from './shared.js';
export { AffinityTableStore, type AffinityStore, type OwnerAnswer, type ReplicaChannel, type ReplicaOp } from './store.js';

export interface CreateAffinityStoreOptions {
  /** Route name: labels metrics, names the Redis keys and the cluster channel. */
  route: string;
  /** Entry lifetime, ms (config `affinity.ttl`). */
  ttl: number;
  /** Most entries held locally (config `affinity.capacity`). */
  capacity: number;
  clock?: Clock;
  /** The process's shared Redis (one per process, for every route), when `shared.redis` is set. */
  redis?: SharedRedis;
  /** The process's cluster bus (one per process), when running as a node:cluster worker. */
  cluster?: ClusterBus;
  metrics?: AffinityMetrics;
  log: Logger;
  /** How long a local miss waits for the next tier, ms (default: Redis 50, the primary 20). */
  missTimeout?: number;
}

/** The one function the runtime calls per route with `affinity`. */
export function createAffinityStore(opts: CreateAffinityStoreOptions): AffinityTableStore {
  const table = new LocalAffinityTable({ ttl: opts.ttl, capacity: opts.capacity, clock: opts.clock });
  const cluster = opts.cluster?.attach(opts.route, table, { queryTimeout: opts.missTimeout });
  const metrics = opts.metrics?.forRoute(opts.route);
  const base = { route: opts.route, table, cluster, metrics, log: opts.log };
  const store = opts.redis
    ? new SharedAffinityStore({ ...base, redis: opts.redis, clock: opts.clock, readTimeout: opts.missTimeout })
    : new AffinityTableStore(base);
  if (opts.metrics) store.addCloseHook(opts.metrics.trackEntries(opts.route, () => table.size));
  return store;
}
