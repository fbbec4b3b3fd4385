/**
 * The process tier of the affinity table (DESIGN §2 "state lives in three tiers"): key → owner
 * (`host:port`) in an LRU with TTL and a capacity, answered synchronously in O(1).
 *
 * Memory is the design constraint (issue 3: 1 M entries under 200 MB RSS, measured by
 * bench/affinity-memory.ts). Per entry we keep the key string, lru-cache's slot (a Map entry plus
 * ~44 bytes of preallocated parallel arrays) and one entry in the owner's reverse-index Set.
 * Owner strings are interned: every entry naming a member points at one string.
 */
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../../clock.js';

export interface LocalAffinityOptions {
  /** Lifetime of a learned entry in ms (config `affinity.ttl`, default 1 h). */
  ttl: number;
  /**
   * Most entries kept (config `affinity.capacity`, default 1 M); the least recently used goes
   * first. lru-cache preallocates its index arrays for `capacity` up front (~44 B per slot), so
   * size it to need.
   */
  capacity: number;
  /** Time source; tests pass a ManualClock. Default: the system clock. */
  clock?: Clock;
}

/**
 * What `learn` changed, so the caller knows whether other tiers must hear of it:
 * `unchanged` same owner, still fresh · `added` a new key, or the same owner with its lease renewed
 * (past half its life) · `moved` the key now names a different owner than before.
 */
export type Learned = 'unchanged' | 'added' | 'moved';

/** One member as an owner: its interned id and the keys that name it (the reverse index). */
interface OwnerEntry {
  readonly id: string;
  readonly keys: Set<string>;
}

export class LocalAffinityTable {
  readonly ttl: number;
  readonly capacity: number;
  private readonly lru: LRUCache<string, string>;
  /** owner id → its interned string and keys. An owner leaves when its last key does. */
  private readonly owners = new Map<string, OwnerEntry>();

  constructor(opts: LocalAffinityOptions) {
    if (!Number.isInteger(opts.ttl) || opts.ttl < 1) throw new TypeError(`affinity ttl must be a positive integer of ms, got ${opts.ttl}`);
    if (!Number.isInteger(opts.capacity) || opts.capacity < 1) throw new TypeError(`affinity capacity must be a positive integer, got ${opts.capacity}`);
    this.ttl = opts.ttl;
    this.capacity = opts.capacity;
    const clock = opts.clock ?? systemClock;
    this.lru = new LRUCache<string, string>({
      max: opts.capacity,
      ttl: opts.ttl,
      // Expired entries are dropped when touched or evicted; timers per entry would cost far more.
      ttlAutopurge: false,
      // A read does not extend a lease; `learn` renews it (see there).
      updateAgeOnGet: false,
      allowStale: false,
      // lru-cache treats a start time of 0 as "no TTL"; the +1 keeps a ManualClock at 0 honest.
      perf: { now: () => clock.now() + 1 },
      // With an injected clock, read it on every check (lru-cache otherwise caches it for 1 ms
      // with a timer, which would hide a test's clock.advance()).
      ttlResolution: clock === systemClock ? 1 : 0,
      // Keeps the reverse index exact on every removal: evict, expire, delete, replace.
      dispose: (owner, key) => this.unindex(owner, key),
    });
  }

  /** Owner of `key`, or undefined (unknown or expired). Marks the key recently used. */
  get(key: string): string | undefined {
    return this.lru.get(key);
  }

  /** Owner of `key` without touching its recency. */
  peek(key: string): string | undefined {
    return this.lru.peek(key);
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }

  /** Milliseconds left for `key` (0 when absent). */
  remainingTtl(key: string): number {
    const r = this.lru.getRemainingTTL(key);
    return r === Infinity ? this.ttl : Math.max(0, r);
  }

  /** Store key → owner unconditionally, for `ttl` ms (default the table's). */
  set(key: string, owner: string, ttl: number = this.ttl): void {
    if (!(ttl > 0)) return;
    const opts = ttl === this.ttl ? undefined : { ttl };
    const prev = this.lru.peek(key);
    if (prev === owner) {
      // Same owner: renew in place; `prev` is already the interned string and indexed.
      this.lru.set(key, prev, opts);
      return;
    }
    // New, moved or expired: remove first, so lru-cache and the reverse index hold one and the
    // same key string (an in-place update would keep lru-cache's old copy next to ours).
    this.lru.delete(key);
    key = flatten(key);
    let o = this.owners.get(owner);
    if (o === undefined) o = { id: flatten(owner), keys: new Set() };
    this.lru.set(key, o.id, opts);
    o.keys.add(key);
    // (Re)register after set: at capacity, set() may have evicted this owner's last key and
    // with it the owner's entry.
    if (o.keys.size === 1) this.owners.set(owner, o);
  }

  /**
   * Record what a response taught: key → owner. Renews the lease when more than half of it has
   * gone, so a key in use never expires while writes to the other tiers stay at ≤ 2 per TTL.
   */
  learn(key: string, owner: string): Learned {
    const prev = this.lru.peek(key);
    if (prev === owner) {
      if (this.lru.getRemainingTTL(key) > this.ttl / 2) {
        this.lru.get(key); // recency only
        return 'unchanged';
      }
      this.set(key, owner);
      return 'added';
    }
    this.set(key, owner);
    return prev === undefined ? 'added' : 'moved';
  }

  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  /** Forget every key naming `owner` (a dead or ejected member). O(its keys). Returns how many. */
  dropOwner(owner: string): number {
    const o = this.owners.get(owner);
    if (!o) return 0;
    this.owners.delete(owner);
    let n = 0;
    // dispose() finds the owner gone and leaves the Set alone while we walk it.
    for (const key of o.keys) if (this.lru.delete(key)) n++;
    return n;
  }

  /** Keys naming `owner` (expired ones included until touched). */
  keysOf(owner: string): ReadonlySet<string> {
    return this.owners.get(owner)?.keys ?? EMPTY;
  }

  /** Owners with at least one entry. */
  get ownerCount(): number {
    return this.owners.size;
  }

  /** Entries held, counting expired ones not yet evicted or touched. */
  get size(): number {
    return this.lru.size;
  }

  clear(): void {
    this.lru.clear();
    this.owners.clear();
  }

  /** Remove expired entries now: O(n), for tests and quiet moments, never per request. */
  purgeExpired(): number {
    const before = this.lru.size;
    this.lru.purgeStale();
    return before - this.lru.size;
  }

  private unindex(owner: string, key: string): void {
    const o = this.owners.get(owner);
    if (o === undefined) return;
    o.keys.delete(key);
    if (o.keys.size === 0) this.owners.delete(owner);
  }
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * A copy of `s` that owns its characters. A key cut out of a larger string (a cookie value is a
 * slice of the whole Cookie header) would otherwise keep that header alive for the entry's life.
 * Runs once per new entry, never per look-up.
 */
function flatten(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
}
