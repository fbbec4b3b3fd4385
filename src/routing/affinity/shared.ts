/**
 * The instance tier of learned affinity: entries are written to
 * Redis, read through the local table (a near-cache), and deletions are published so every
 * instance drops them from its near-cache.
 *
 * Redis keys: `<prefix>aff:<route>:<key>` → owner (`host:port`), with PX = the route's TTL; the
 * value is the bare owner, so another tier (an nginx with lua-resty-redis) can read it too.
 * Channel: `<prefix>aff:<route>`, messages `["<instance>", "del", key]`,
 * `["<instance>", "drop", owner]`, `["<instance>", "set", key, owner]` (an owner that moved).
 *
 * Redis down → the local table alone answers (synchronously, no promise); writes and deletes
 * made meanwhile are kept in a bounded backlog and sent when Redis is back. Invalidations
 * published while an instance was cut off are lost to it: its near-cache may name an old owner
 * until the entry expires or a backend redirect corrects it (at most one hop).
 *
 * `dropOwner` cannot delete an owner's keys from Redis without a reverse index there (a set per
 * owner: more writes, and unbounded growth). Instead every instance remembers when it heard of
 * the drop (a tombstone per owner, kept one TTL); a read-through answer naming that owner that
 * was written before the drop is ignored and deleted from Redis (only if it is still the same).
 * Entries nobody reads expire with their TTL.
 */
import { systemClock, type Clock } from '../../clock.js';
import { SingleFlight, type Flight } from '../../state/singleflight.js';
import { AffinityTableStore, type AffinityTableStoreOptions, type OwnerAnswer } from './store.js';

/** What the shared tier needs from Redis; SharedRedis (src/state/redis.ts) provides it. */
export interface SharedKV {
  readonly prefix: string;
  /** Unique per process: pub/sub messages carry it, so a process skips its own. */
  readonly instanceId: string;
  /** False while Redis is unreachable: skip it and stay synchronous. */
  readonly up: boolean;
  /** Value and remaining TTL (ms), or undefined (missing, down, error, timeout). Never rejects. */
  read(key: string, timeoutMs: number): Promise<{ value: string; ttl: number } | undefined>;
  /** Fire and forget; false when skipped because Redis is down. */
  write(key: string, value: string, ttlMs: number): boolean;
  remove(key: string): boolean;
  removeIf(key: string, value: string): boolean;
  publish(channel: string, message: string): boolean;
  subscribe(channel: string, handler: (message: string) => void): () => void;
  onUpChange(fn: (up: boolean) => void): () => void;
}

export interface SharedAffinityStoreOptions extends AffinityTableStoreOptions {
  redis: SharedKV;
  clock?: Clock;
  /** How long a local miss waits for Redis before answering "unknown", ms (default 50). */
  readTimeout?: number;
  /** Writes and deletes kept while Redis is down, sent when it is back (default 10 000). */
  backlog?: number;
}

/** One read-through in flight for a key; concurrent misses of the key share it. */
type Read = Flight<string | undefined>;

/** Longest owner value taken from Redis (`[v6 address]:port` fits with room to spare). */
const MAX_OWNER_LENGTH = 256;

/**
 * Margin for how much later than its origin an instance hears of a drop (pub/sub latency), ms:
 * an entry written less than this before the drop was heard is taken as written after it. Either
 * misjudgement costs one guess (and the backend's redirect), never a wrong answer for long.
 */
const DROP_SLACK = 10;

export class SharedAffinityStore extends AffinityTableStore {
  private readonly kv: SharedKV;
  private readonly clock: Clock;
  private readonly keyPrefix: string;
  /** The pub/sub channel of this route's invalidations. */
  readonly channelName: string;
  private readonly readTimeout: number;
  private readonly backlogMax: number;
  /** Read-throughs in flight; a flight's waiters are counted in homing_affinity_shared_reads_total. */
  private readonly inflight = new SingleFlight<string, string | undefined>();
  /** Reads during which a local change to their key happened: the table's answer wins over Redis's. */
  private readonly stale = new WeakSet<Read>();
  /** owner → local time its drop was heard. */
  private readonly tombstones = new Map<string, number>();
  /** key → owner to write, or null to delete, once Redis is back. Oldest first. */
  private readonly backlog = new Map<string, string | null>();

  constructor(opts: SharedAffinityStoreOptions) {
    super(opts);
    this.kv = opts.redis;
    this.clock = opts.clock ?? systemClock;
    this.keyPrefix = `${this.kv.prefix}aff:${this.route}:`;
    this.channelName = `${this.kv.prefix}aff:${this.route}`;
    this.readTimeout = opts.readTimeout ?? 50;
    this.backlogMax = opts.backlog ?? 10_000;
    this.addCloseHook(this.kv.subscribe(this.channelName, this.onMessage));
    this.addCloseHook(
      this.kv.onUpChange((up) => {
        if (up) this.flushBacklog();
      }),
    );
  }

  /** The Redis key of `key`. */
  redisKey(key: string): string {
    return this.keyPrefix + key;
  }

  /** Writes and deletes waiting for Redis to come back. */
  get pending(): number {
    return this.backlog.size;
  }

  protected override miss(key: string): OwnerAnswer {
    if (!this.kv.up) return undefined;
    return this.inflight.run(key, (read) => this.kv.read(this.keyPrefix + key, this.readTimeout).then((v) => this.filled(key, read, v)));
  }

  private filled(key: string, read: Read, v: { value: string; ttl: number } | undefined): string | undefined {
    let owner: string | undefined;
    if (this.stale.has(read)) {
      owner = this.table.peek(key);
    } else if (v !== undefined && v.value.length <= MAX_OWNER_LENGTH) {
      const ttl = v.ttl > 0 ? Math.min(v.ttl, this.table.ttl) : this.table.ttl;
      if (this.droppedBefore(v.value, ttl)) {
        this.kv.removeIf(this.keyPrefix + key, v.value);
      } else {
        owner = v.value;
        this.table.set(key, owner, ttl);
      }
    }
    this.metrics?.sharedRead(owner !== undefined, read.waiters);
    return owner;
  }

  /** Was an entry naming `owner`, with `ttl` ms left, written before we heard `owner` dropped? */
  private droppedBefore(owner: string, ttl: number): boolean {
    if (this.tombstones.size === 0) return false;
    const t = this.tombstones.get(owner);
    if (t === undefined) return false;
    const now = this.clock.now();
    if (now - t > this.table.ttl) {
      // Every entry written before the drop has expired by now.
      this.tombstones.delete(owner);
      return false;
    }
    const writtenAt = now - (this.table.ttl - ttl);
    return writtenAt < t - DROP_SLACK;
  }

  private markStale(key: string): void {
    if (this.inflight.size === 0) return;
    const read = this.inflight.get(key);
    if (read) this.stale.add(read);
  }

  /** Every read in flight answers from the table (an owner was dropped meanwhile). */
  private allStale(): void {
    for (const read of this.inflight.values()) this.stale.add(read);
  }

  protected override learned(key: string, owner: string, moved: boolean): void {
    this.markStale(key);
    if (!this.kv.write(this.keyPrefix + key, owner, this.table.ttl)) {
      this.toBacklog(key, owner);
      return;
    }
    if (moved) this.kv.publish(this.channelName, JSON.stringify([this.kv.instanceId, 'set', key, owner]));
  }

  protected override deleted(key: string): void {
    this.markStale(key);
    if (!this.kv.remove(this.keyPrefix + key)) {
      this.toBacklog(key, null);
      return;
    }
    this.kv.publish(this.channelName, JSON.stringify([this.kv.instanceId, 'del', key]));
  }

  /** Remember when `owner`'s drop was heard; forget drops older than a TTL (nothing they cover is left). */
  private tombstone(owner: string): void {
    const now = this.clock.now();
    for (const [o, t] of this.tombstones) if (now - t > this.table.ttl) this.tombstones.delete(o);
    this.tombstones.set(owner, now);
  }

  protected override dropped(ownerId: string): void {
    this.tombstone(ownerId);
    this.allStale();
    this.kv.publish(this.channelName, JSON.stringify([this.kv.instanceId, 'drop', ownerId]));
  }

  private toBacklog(key: string, owner: string | null): void {
    if (this.backlogMax <= 0) return;
    this.backlog.delete(key);
    this.backlog.set(key, owner);
    if (this.backlog.size > this.backlogMax) {
      const oldest = this.backlog.keys().next();
      if (!oldest.done) this.backlog.delete(oldest.value);
    }
  }

  /** Redis is back: send what was learned or deleted meanwhile, if the table still says so. */
  private flushBacklog(): void {
    for (const [key, owner] of this.backlog) {
      if (owner === null) {
        if (!this.kv.remove(this.keyPrefix + key)) return;
        this.kv.publish(this.channelName, JSON.stringify([this.kv.instanceId, 'del', key]));
      } else if (this.table.peek(key) === owner) {
        if (!this.kv.write(this.keyPrefix + key, owner, this.table.remainingTtl(key))) return;
      }
      this.backlog.delete(key);
    }
  }

  /** Another instance published an invalidation. */
  private readonly onMessage = (message: string): void => {
    let m: unknown;
    try {
      m = JSON.parse(message);
    } catch {
      return;
    }
    if (!Array.isArray(m) || m[0] === this.kv.instanceId || typeof m[2] !== 'string') return;
    const op = m[1];
    const a = m[2] as string;
    if (op === 'del') {
      this.table.delete(a);
      this.markStale(a);
    } else if (op === 'drop') {
      this.table.dropOwner(a);
      this.tombstone(a);
      this.allStale();
    } else if (op === 'set' && typeof m[3] === 'string' && m[3].length <= MAX_OWNER_LENGTH) {
      // Update a near-cache entry that named the old owner; do not fill keys we never asked for.
      if (this.table.peek(a) !== undefined) this.table.set(a, m[3]);
      this.markStale(a);
    }
  };
}
