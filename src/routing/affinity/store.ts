/**
 * Learned affinity state for one route: key → owner (`host:port`), in three tiers:
 * the process (LocalAffinityTable) → every worker on the box (a ReplicaChannel, node:cluster
 * IPC) → every instance (SharedAffinityStore, Redis). This file holds the contract and the store
 * for the first two tiers; shared.ts adds the third.
 */
import type { Logger } from 'pino';
import { SingleFlight } from '../../state/singleflight.js';
import type { LocalAffinityTable } from './local.js';
import type { RouteAffinityMetrics } from './metrics.js';

/** An owner, nothing known, or — only on a local miss with a shared tier — a promise of either. */
export type OwnerAnswer = string | undefined | Promise<string | undefined>;

export interface AffinityStore {
  /**
   * The owner of `key`. Answers synchronously from the local table (hot path: no promise on a
   * hit, nor on a miss without a shared tier or while Redis is down); a local miss with Redis
   * returns a promise that settles within the read timeout (never rejects). Marks the key used.
   */
  get(key: string): OwnerAnswer;
  /** Learn key → owner (from a response). Cheap when nothing changed: call it freely. */
  set(key: string, owner: string): void;
  /** Forget `key` on every tier. */
  delete(key: string): void;
  /** Forget every key naming `ownerId` (dead or ejected member). Returns how many were local. */
  dropOwner(ownerId: string): number;
  /** Local entries (expired ones count until touched or evicted). */
  readonly size: number;
  /** Detach from the worker and instance tiers; the local table stays readable. */
  close(): Promise<void>;
}

/** An operation one tier tells the others: learn, forget a key, forget an owner. */
export type ReplicaOp = 'set' | 'del' | 'drop';

/**
 * The worker tier as a store sees it (ClusterBus.attach returns one). `publish` sends an op to
 * sibling workers, which apply it to their tables without sending it on.
 */
export interface ReplicaChannel {
  /** `key` is the key for set/del and unused ('') for drop; `owner` is set for set/drop. */
  publish(op: ReplicaOp, key: string, owner?: string): void;
  detach(): void;
  /** Ask the sibling tier for a key this process does not know (workers only). */
  query?(key: string): Promise<string | undefined>;
}

export interface AffinityTableStoreOptions {
  route: string;
  table: LocalAffinityTable;
  cluster?: ReplicaChannel;
  metrics?: RouteAffinityMetrics;
  log?: Logger;
}

/** The process and worker tiers: a local table whose changes reach sibling workers. */
export class AffinityTableStore implements AffinityStore {
  readonly route: string;
  readonly table: LocalAffinityTable;
  protected readonly channel: ReplicaChannel | undefined;
  protected readonly metrics: RouteAffinityMetrics | undefined;
  protected readonly log: Logger | undefined;
  private closed = false;
  private readonly onClose: (() => void)[] = [];

  constructor(opts: AffinityTableStoreOptions) {
    this.route = opts.route;
    this.table = opts.table;
    this.channel = opts.cluster;
    this.metrics = opts.metrics;
    this.log = opts.log;
  }

  get(key: string): OwnerAnswer {
    // Hits and misses are counted by the caller (the proxy knows whether the owner was live).
    const owner = this.table.get(key);
    return owner !== undefined ? owner : this.miss(key);
  }

  private readonly asking = new SingleFlight<string, string | undefined>();

  /**
   * Local miss: in a worker, ask the primary, which mirrors what every sibling learned (a sibling
   * may have learned the key a moment ago, its op still in flight); concurrent misses of one key
   * share one question. Outside a cluster: nothing more to ask.
   */
  protected miss(key: string): OwnerAnswer {
    const query = this.channel?.query;
    if (!query) return undefined;
    return this.asking.run(key, () =>
      query(key).then((owner) => {
        // Learned from a sibling: keep it here, without telling the siblings again.
        if (owner !== undefined && this.table.peek(key) === undefined) this.table.learn(key, owner);
        return owner;
      }),
    );
  }

  /** Local owner without counting a look-up or touching recency (admin, tests). */
  peek(key: string): string | undefined {
    return this.table.peek(key);
  }

  set(key: string, owner: string): void {
    const what = this.table.learn(key, owner);
    if (what === 'unchanged') return;
    this.channel?.publish('set', key, owner);
    this.learned(key, owner, what === 'moved');
  }

  /** Hook for the shared tier: key → owner is new, renewed or `moved` from another owner. */
  protected learned(_key: string, _owner: string, _moved: boolean): void {}

  delete(key: string): void {
    this.table.delete(key);
    this.channel?.publish('del', key);
    this.deleted(key);
  }

  protected deleted(_key: string): void {}

  dropOwner(ownerId: string): number {
    const n = this.table.dropOwner(ownerId);
    this.channel?.publish('drop', '', ownerId);
    this.dropped(ownerId);
    return n;
  }

  protected dropped(_ownerId: string): void {}

  get size(): number {
    return this.table.size;
  }

  /** Run `fn` on close (unregister gauges, unsubscribe). */
  addCloseHook(fn: () => void): void {
    this.onClose.push(fn);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.channel?.detach();
    for (const fn of this.onClose.splice(0)) fn();
  }
}
