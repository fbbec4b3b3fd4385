/**
 * The principal table: what the backend said about a caller — the `cache.principal.headers` its
 * responses carried (region, corporation, …) — by the caller's principal key (a hash of the
 * `cache.principal.key` value, so no token is kept). Values are learned from every response that
 * carries them, on any route and whatever its cache directives (a `private` `/me` answer teaches
 * as well as any), and are the only source of those headers' values when a stored response varies
 * on them: a client's own copy of such a header never reaches homing's cache or a backend.
 *
 * Tiers as for affinity: this process (LRU with TTL) → sibling workers (the cluster bus; a worker
 * missing a principal asks the primary, which mirrors every worker) → every instance (with
 * `shared.redis`: written through, read on a local miss within the shared command timeout; Redis
 * down means only what this box learned is known, never a failed request).
 */
import { LRUCache } from 'lru-cache';
import type { ClusterBus, ClusterChannel } from '../state/cluster.js';
import type { SharedRedis } from '../state/redis.js';

/** Header name (lower-case) → the value the backend gave. */
export type PrincipalValues = ReadonlyMap<string, string>;

export interface PrincipalTableOptions {
  /** The trusted header names (any case). */
  headers: readonly string[];
  ttl: number;
  capacity: number;
  cluster?: ClusterBus;
  redis?: SharedRedis;
  /** Longest wait for Redis on a local miss, ms. */
  readTimeout?: number;
}

/** The cluster-bus name the table is mirrored under (route names cannot contain a space). */
const CHANNEL = ' principal';

function encode(v: PrincipalValues): string {
  return JSON.stringify([...v]);
}

function decode(s: string): Map<string, string> | undefined {
  try {
    const a = JSON.parse(s) as unknown;
    if (!Array.isArray(a)) return undefined;
    const m = new Map<string, string>();
    for (const p of a) if (Array.isArray(p) && typeof p[0] === 'string' && typeof p[1] === 'string') m.set(p[0], p[1]);
    return m;
  } catch {
    return undefined;
  }
}

export class PrincipalTable {
  /** The trusted header names, lower-case. */
  readonly headers: ReadonlySet<string>;
  private readonly lru: LRUCache<string, Map<string, string>>;
  private readonly channel: ClusterChannel | undefined;
  private readonly redis: SharedRedis | undefined;
  private readonly ttl: number;
  private readonly readTimeout: number;

  constructor(o: PrincipalTableOptions) {
    this.redis = o.redis;
    this.ttl = o.ttl;
    this.readTimeout = o.readTimeout ?? 250;
    this.headers = new Set(o.headers.map((h) => h.toLowerCase()));
    this.lru = new LRUCache({ max: o.capacity, ttl: o.ttl, updateAgeOnGet: false });
    this.channel = o.cluster?.attach(CHANNEL, {
      set: (k: string, v: string) => {
        const m = decode(v);
        if (m) this.lru.set(k, m);
      },
      delete: (k: string) => this.lru.delete(k),
      dropOwner: () => undefined,
      peek: (k: string) => {
        const m = this.lru.get(k);
        return m === undefined ? undefined : encode(m);
      },
    });
  }

  /** What is known of principal `id` (synchronous; undefined when nothing). */
  get(id: string): PrincipalValues | undefined {
    return this.lru.get(id);
  }

  /** As `get`, and on a local miss what the primary (in a worker), then Redis, knows. */
  lookup(id: string): PrincipalValues | undefined | Promise<PrincipalValues | undefined> {
    const m = this.lru.get(id);
    if (m !== undefined) return m;
    const query = this.channel?.query;
    if (query === undefined && this.redis === undefined) return undefined;
    const keep = (s: string | undefined): Map<string, string> | undefined => {
      const v = s === undefined ? undefined : decode(s);
      if (v !== undefined && !this.lru.has(id)) this.lru.set(id, v);
      return v;
    };
    const fromRedis = (): Promise<Map<string, string> | undefined> =>
      this.redis === undefined ? Promise.resolve(undefined) : this.redis.read(this.redisKey(id), this.readTimeout).then((r) => keep(r?.value));
    if (query === undefined) return fromRedis();
    return query(id).then((s) => keep(s) ?? fromRedis());
  }

  private redisKey(id: string): string {
    return `${this.redis!.prefix}principal:${id}`;
  }

  /**
   * Learn from a response head ([name, value…]): the trusted headers it carries replace what was
   * known of them; the others are kept. Cheap when nothing changed.
   */
  learn(id: string, head: readonly string[]): void {
    let next: Map<string, string> | undefined;
    let seen = false;
    const known = this.lru.get(id);
    for (let i = 0; i < head.length; i += 2) {
      const name = head[i]!.toLowerCase();
      if (!this.headers.has(name)) continue;
      seen = true;
      const v = head[i + 1]!.trim();
      if ((next ?? known)?.get(name) === v) continue;
      next ??= new Map(known);
      next.set(name, v);
    }
    if (next === undefined) {
      // Same values: renew the lease.
      if (seen && known !== undefined) this.lru.set(id, known);
      return;
    }
    this.lru.set(id, next);
    const text = encode(next);
    this.channel?.publish('set', id, text);
    this.redis?.write(this.redisKey(id), text, this.ttl);
  }

  delete(id: string): void {
    this.lru.delete(id);
    this.channel?.publish('del', id);
    this.redis?.remove(this.redisKey(id));
  }

  get size(): number {
    return this.lru.size;
  }

  close(): void {
    this.channel?.detach();
  }
}
