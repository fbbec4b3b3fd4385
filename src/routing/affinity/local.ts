/**
 * The process tier of the affinity table (state lives in three tiers: process, box, instances): key → owner
 * (`host:port`) with a TTL and a capacity (least recently used goes first), answered
 * synchronously in O(1).
 *
 * Memory is the design constraint (1 M entries under 200 MB RSS, measured by
 * bench/affinity-memory.ts). lru-cache plus an owner → Set<key> reverse index cost 138 B per
 * entry (242 MB RSS at 1 M in plain node), so this table keeps everything but the key strings in
 * typed arrays indexed by slot:
 *
 * - an open-addressing hash index (linear probing, load ≤ 0.5, backward-shift deletion, so no
 *   tombstones) from a seeded hash of the key to its slot; a probe compares the key strings
 *   themselves (no stored hashes: the hash is recomputed only when entries move);
 * - per slot: key string, interned owner index, expiry, LRU links, and links in its owner's
 *   list, so `dropOwner` walks only that owner's keys.
 *
 * ≈ 38 B per entry plus the key string (56 B for a 40-char token): 95 B at 1 M in all. Arrays
 * grow by doubling up to `capacity` (the index is rebuilt then, O(n), at each doubling), so a
 * large configured capacity costs nothing until it is used. Probe chains are
 * capped: keys chosen to collide (hash flooding) can at worst fail to be learned, never make a
 * look-up slow; the hash is seeded per table so such keys cannot be precomputed.
 */
import { randomInt } from 'node:crypto';
import { systemClock, type Clock } from '../../clock.js';

export interface LocalAffinityOptions {
  /** Lifetime of a learned entry in ms (config `affinity.ttl`, default 1 h; at most ~24.8 days). */
  ttl: number;
  /** Most entries kept (config `affinity.capacity`, default 1 M); the least recently used goes first. */
  capacity: number;
  /** Time source; tests pass a ManualClock. Default: the system clock. */
  clock?: Clock;
}

/**
 * What `learn` changed, so the caller knows whether other tiers must hear of it:
 * `unchanged` same owner, still fresh · `added` a new key, or the same owner with its lease
 * renewed (past half its life) · `moved` the key now names a different owner than before.
 */
export type Learned = 'unchanged' | 'added' | 'moved';

/**
 * Longest TTL, ms (~24.8 days; longer ones are capped): with expiries counted from an epoch
 * rebased after another 2^31 ms, they always fit 32 bits.
 */
const MAX_TTL = 2 ** 31 - 1;
const REBASE_AFTER = 2 ** 31;

/** Longest probe sequence: far beyond what load ≤ 0.5 produces by chance (≈ 20 at 1 M). */
const MAX_PROBE = 128;
const MIN_SLOTS = 1024;

export class LocalAffinityTable {
  readonly ttl: number;
  readonly capacity: number;
  private readonly clock: Clock;
  private readonly seed = randomInt(0x7fffffff);

  // Slots are 1-based: 0 means "none" in every link and in the index. Arrays have `slots` cells.
  private slots: number;
  private keys: (string | undefined)[];
  /** Owner index per slot (≤ 65 535 distinct owners at a time). */
  private ownerOf: Uint16Array;
  /** Expiry per slot: ms after `epoch` (32 bits; rebased before they could overflow). */
  private expires: Uint32Array;
  /** Clock time that `expires` counts from. */
  private epoch: number;
  /** LRU list: `head` is the least recently used, `tail` the most. */
  private prev: Uint32Array;
  private next: Uint32Array;
  /** Per-owner lists. */
  private oprev: Uint32Array;
  private onext: Uint32Array;
  private head = 0;
  private tail = 0;
  /** Freed slots, chained through `next`. */
  private freeHead = 0;
  /** Slots ever handed out (high-water mark). */
  private used = 0;
  private count = 0;

  /** bucket → slot (0 empty); length a power of two ≥ 2 × slots. */
  private index: Uint32Array;
  private mask: number;

  /** Interned owners: one string per member, its list head and size. Indices are recycled. */
  private readonly ownerIds: (string | undefined)[] = [];
  private readonly ownerHead: number[] = [];
  private readonly ownerCount: number[] = [];
  private readonly ownerByName = new Map<string, number>();
  private readonly freeOwners: number[] = [];

  /** Keys refused because their probe chain was full (see MAX_PROBE); should stay 0. */
  rejected = 0;

  constructor(opts: LocalAffinityOptions) {
    if (!Number.isInteger(opts.ttl) || opts.ttl < 1) throw new TypeError(`affinity ttl must be a positive integer of ms, got ${opts.ttl}`);
    if (!Number.isInteger(opts.capacity) || opts.capacity < 1 || opts.capacity > 0x3fffffff) {
      throw new TypeError(`affinity capacity must be an integer from 1 to ${0x3fffffff}, got ${opts.capacity}`);
    }
    this.ttl = Math.min(opts.ttl, MAX_TTL);
    this.capacity = opts.capacity;
    this.clock = opts.clock ?? systemClock;
    this.epoch = Math.floor(this.clock.now());
    const n = Math.min(opts.capacity, MIN_SLOTS) + 1;
    this.slots = n;
    this.keys = filledArray(n);
    this.ownerOf = new Uint16Array(n);
    this.expires = new Uint32Array(n);
    this.prev = new Uint32Array(n);
    this.next = new Uint32Array(n);
    this.oprev = new Uint32Array(n);
    this.onext = new Uint32Array(n);
    this.index = new Uint32Array(indexSizeFor(n));
    this.mask = this.index.length - 1;
  }

  /** Owner of `key`, or undefined (unknown or expired). Marks the key recently used. */
  get(key: string): string | undefined {
    const h = this.hash(key);
    const b = this.find(key, h);
    if (b < 0) return undefined;
    const s = this.index[b]!;
    // now() first: it may rebase the expiries.
    const now = this.now();
    if (this.expires[s]! <= now) {
      this.removeAt(b, s);
      return undefined;
    }
    this.touch(s);
    return this.ownerIds[this.ownerOf[s]!];
  }

  /** Owner of `key` without touching its recency. */
  peek(key: string): string | undefined {
    const s = this.liveSlot(key);
    return s === 0 ? undefined : this.ownerIds[this.ownerOf[s]!];
  }

  has(key: string): boolean {
    return this.liveSlot(key) !== 0;
  }

  /** Milliseconds left for `key` (0 when absent or expired). */
  remainingTtl(key: string): number {
    const s = this.liveSlot(key);
    if (s === 0) return 0;
    const now = this.now();
    return this.expires[s]! - now;
  }

  /**
   * Store key → owner for `ttl` ms (default the table's), unconditionally. Returns false only
   * when the key could not be placed (probe chain full) or `ttl` ≤ 0.
   */
  set(key: string, owner: string, ttl: number = this.ttl): boolean {
    if (!(ttl > 0)) return false;
    const h = this.hash(key);
    const expires = Math.max(0, Math.ceil(this.now() + Math.min(ttl, MAX_TTL)));
    let b = this.find(key, h);
    if (b >= 0) {
      const s = this.index[b]!;
      this.expires[s] = expires;
      this.touch(s);
      if (this.ownerIds[this.ownerOf[s]!] !== owner) {
        const o = this.intern(owner);
        if (o < 0) {
          this.rejected++;
          this.removeAt(b, s);
          return false;
        }
        this.unlinkOwner(s);
        this.linkOwner(s, o);
      }
      return true;
    }
    if (this.count >= this.capacity) this.evictOne();
    else if (this.count + 1 > this.index.length >>> 1) this.growIndex();
    b = this.emptyBucket(h);
    // Intern after evicting: the eviction may free the owner's index.
    const o = b < 0 ? -1 : this.intern(owner);
    if (o < 0) {
      this.rejected++;
      return false;
    }
    const s = this.allocSlot();
    // A key cut out of a larger string (a cookie value is a slice of the Cookie header) would
    // keep that string alive for the entry's life: store a copy that owns its characters.
    this.keys[s] = flatten(key);
    this.expires[s] = expires;
    this.index[b] = s;
    this.linkLru(s);
    this.linkOwner(s, o);
    this.count++;
    return true;
  }

  /**
   * Record what a response taught: key → owner. Renews the lease only when more than half of it
   * has gone, so a key in use never expires while writes to the other tiers stay ≤ 2 per TTL.
   */
  learn(key: string, owner: string): Learned {
    const h = this.hash(key);
    const b = this.find(key, h);
    if (b >= 0) {
      const s = this.index[b]!;
      const now = this.now();
      const left = this.expires[s]! - now;
      if (left > 0 && this.ownerIds[this.ownerOf[s]!] === owner) {
        this.touch(s);
        if (left > this.ttl / 2) return 'unchanged';
        this.expires[s] = Math.max(0, Math.ceil(now + this.ttl));
        return 'added';
      }
      const moved = left > 0;
      this.set(key, owner);
      return moved ? 'moved' : 'added';
    }
    return this.set(key, owner) ? 'added' : 'unchanged';
  }

  delete(key: string): boolean {
    const b = this.find(key, this.hash(key));
    if (b < 0) return false;
    this.removeAt(b, this.index[b]!);
    return true;
  }

  /** Forget every key naming `owner` (a dead or ejected member). O(its keys). Returns how many. */
  dropOwner(owner: string): number {
    const o = this.ownerByName.get(owner);
    if (o === undefined) return 0;
    let n = 0;
    // removeAt unlinks the slot from the owner's list and frees the owner with its last key.
    for (let s = this.ownerHead[o]!; s !== 0; s = this.ownerHead[o]!) {
      this.removeAt(this.bucketOf(s), s);
      n++;
      if (this.ownerIds[o] !== owner) break;
    }
    return n;
  }

  /** Keys naming `owner`, expired ones included until touched. A snapshot, O(its keys). */
  keysOf(owner: string): string[] {
    const o = this.ownerByName.get(owner);
    const out: string[] = [];
    if (o === undefined) return out;
    for (let s = this.ownerHead[o]!; s !== 0; s = this.onext[s]!) out.push(this.keys[s]!);
    return out;
  }

  /** Number of owners with at least one entry. */
  get owners(): number {
    return this.ownerByName.size;
  }

  /** Entries held, counting expired ones not yet touched or evicted. */
  get size(): number {
    return this.count;
  }

  /** Live entries, least recently used first: [key, owner, ms left]. */
  *entries(): IterableIterator<[string, string, number]> {
    const now = this.now();
    for (let s = this.head; s !== 0; s = this.next[s]!) {
      const left = this.expires[s]! - now;
      if (left > 0) yield [this.keys[s]!, this.ownerIds[this.ownerOf[s]!]!, left];
    }
  }

  /** Remove expired entries now: O(n), for tests and quiet moments, never per request. */
  purgeExpired(): number {
    const now = this.now();
    let n = 0;
    for (let s = this.head; s !== 0; ) {
      const nx = this.next[s]!;
      if (this.expires[s]! <= now) {
        this.removeAt(this.bucketOf(s), s);
        n++;
      }
      s = nx;
    }
    return n;
  }

  clear(): void {
    for (let s = 1; s <= this.used; s++) this.keys[s] = undefined;
    this.index.fill(0);
    this.prev.fill(0);
    this.next.fill(0);
    this.head = this.tail = this.freeHead = this.used = this.count = 0;
    this.ownerIds.length = this.ownerHead.length = this.ownerCount.length = this.freeOwners.length = 0;
    this.ownerByName.clear();
  }

  /** Check every internal invariant (tests): index ↔ slots, LRU list, owner lists, counts. */
  verify(): void {
    const fail = (m: string): never => {
      throw new Error(`LocalAffinityTable invariant: ${m}`);
    };
    let inIndex = 0;
    for (let b = 0; b < this.index.length; b++) {
      const s = this.index[b]!;
      if (s === 0) continue;
      inIndex++;
      const key = this.keys[s];
      if (key === undefined) fail(`bucket ${b} names free slot ${s}`);
      if (this.find(key!, this.hash(key!)) !== b) fail(`key ${key} not found at its bucket ${b}`);
    }
    if (inIndex !== this.count) fail(`index holds ${inIndex}, count ${this.count}`);
    let n = 0;
    for (let s = this.head, p = 0; s !== 0; p = s, s = this.next[s]!) {
      if (this.prev[s] !== p) fail(`lru prev of ${s}`);
      if (++n > this.count) fail('lru list longer than count');
      if (this.next[s] === 0 && this.tail !== s) fail('lru tail');
    }
    if (n !== this.count) fail(`lru list has ${n}, count ${this.count}`);
    let owned = 0;
    for (const [name, o] of this.ownerByName) {
      if (this.ownerIds[o] !== name) fail(`owner ${name} index`);
      let c = 0;
      for (let s = this.ownerHead[o]!, p = 0; s !== 0; p = s, s = this.onext[s]!) {
        if (this.oprev[s] !== p) fail(`owner list prev of ${s}`);
        if (this.ownerOf[s] !== o) fail(`slot ${s} in list of ${name} names ${this.ownerIds[this.ownerOf[s]!]}`);
        c++;
      }
      if (c === 0 || c !== this.ownerCount[o]) fail(`owner ${name} count ${this.ownerCount[o]} vs list ${c}`);
      owned += c;
    }
    if (owned !== this.count) fail(`owner lists hold ${owned}, count ${this.count}`);
  }

  // ——— internals ———

  /**
   * Clock time in ms after `epoch`, rebasing first when 32-bit expiries could overflow. Call it
   * before reading `expires`: a rebase rewrites them.
   */
  private now(): number {
    const t = this.clock.now() - this.epoch;
    if (t < REBASE_AFTER) return t;
    this.rebase(Math.floor(this.clock.now()));
    return this.clock.now() - this.epoch;
  }

  /** Move `epoch` to `to`: O(slots), once every ~24.8 days of uptime. */
  private rebase(to: number): void {
    const delta = to - this.epoch;
    const expires = this.expires;
    for (let s = 1; s <= this.used; s++) expires[s] = Math.max(0, expires[s]! - delta);
    this.epoch = to;
  }

  private hash(s: string): number {
    // Seeded multiply-xorshift over UTF-16 units, two at a time, with murmur3's finaliser.
    let h = this.seed ^ s.length;
    const n = s.length;
    let i = 0;
    for (; i + 1 < n; i += 2) {
      h = Math.imul(h ^ (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)), 0x5bd1e995);
      h ^= h >>> 15;
    }
    if (i < n) {
      h = Math.imul(h ^ s.charCodeAt(i), 0x5bd1e995);
      h ^= h >>> 15;
    }
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }

  /** Bucket holding `key`, or -1. */
  private find(key: string, h: number): number {
    const index = this.index;
    const mask = this.mask;
    let b = h & mask;
    for (let p = 0; p < MAX_PROBE; p++) {
      const s = index[b]!;
      if (s === 0) return -1;
      if (this.keys[s] === key) return b;
      b = (b + 1) & mask;
    }
    return -1;
  }

  private emptyBucket(h: number): number {
    let b = h & this.mask;
    for (let p = 0; p < MAX_PROBE; p++) {
      if (this.index[b] === 0) return b;
      b = (b + 1) & this.mask;
    }
    return -1;
  }

  private bucketOf(s: number): number {
    let b = this.hash(this.keys[s]!) & this.mask;
    while (this.index[b] !== s) b = (b + 1) & this.mask;
    return b;
  }

  private liveSlot(key: string): number {
    const b = this.find(key, this.hash(key));
    if (b < 0) return 0;
    const s = this.index[b]!;
    const now = this.now();
    return this.expires[s]! > now ? s : 0;
  }

  /** Remove the entry in bucket `b` / slot `s` from the index and every list; free the slot. */
  private removeAt(b: number, s: number): void {
    this.deleteBucket(b);
    this.unlinkLru(s);
    this.unlinkOwner(s);
    this.keys[s] = undefined;
    this.next[s] = this.freeHead;
    this.freeHead = s;
    this.count--;
  }

  /** Backward-shift deletion (Knuth's algorithm R): later entries of the run move up. */
  private deleteBucket(i: number): void {
    const index = this.index;
    const mask = this.mask;
    index[i] = 0;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const s = index[j]!;
      if (s === 0) return;
      const home = this.hash(this.keys[s]!) & mask;
      // The entry at j may fill the hole at i if its home is not cyclically in (i, j].
      if (((j - home) & mask) >= ((j - i) & mask)) {
        index[i] = s;
        index[j] = 0;
        i = j;
      }
    }
  }

  private evictOne(): void {
    // The least recently used, preferring nothing else: at capacity, expired entries have
    // usually drifted to the head anyway, since reads never extend a lease.
    const s = this.head;
    this.removeAt(this.bucketOf(s), s);
  }

  private allocSlot(): number {
    if (this.freeHead !== 0) {
      const s = this.freeHead;
      this.freeHead = this.next[s]!;
      return s;
    }
    const s = ++this.used;
    if (s >= this.slots) this.growSlots();
    return s;
  }

  private growSlots(): void {
    const n = Math.min(this.capacity + 1, this.slots * 2);
    const keys = filledArray(n);
    for (let s = 1; s < this.slots; s++) keys[s] = this.keys[s];
    this.keys = keys;
    this.slots = n;
    this.ownerOf = grow(this.ownerOf, new Uint16Array(n));
    this.expires = grow(this.expires, new Uint32Array(n));
    this.prev = grow(this.prev, new Uint32Array(n));
    this.next = grow(this.next, new Uint32Array(n));
    this.oprev = grow(this.oprev, new Uint32Array(n));
    this.onext = grow(this.onext, new Uint32Array(n));
  }

  private growIndex(): void {
    const index = new Uint32Array(this.index.length * 2);
    const mask = index.length - 1;
    for (let s = this.head; s !== 0; s = this.next[s]!) {
      let b = this.hash(this.keys[s]!) & mask;
      while (index[b] !== 0) b = (b + 1) & mask;
      index[b] = s;
    }
    this.index = index;
    this.mask = mask;
  }

  private linkLru(s: number): void {
    this.prev[s] = this.tail;
    this.next[s] = 0;
    if (this.tail !== 0) this.next[this.tail] = s;
    else this.head = s;
    this.tail = s;
  }

  private unlinkLru(s: number): void {
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p !== 0) this.next[p] = n;
    else this.head = n;
    if (n !== 0) this.prev[n] = p;
    else this.tail = p;
  }

  private touch(s: number): void {
    if (this.tail === s) return;
    this.unlinkLru(s);
    this.linkLru(s);
  }

  /** The owner's index, made on first use; -1 when 65 536 owners hold entries already. */
  private intern(owner: string): number {
    let o = this.ownerByName.get(owner);
    if (o !== undefined) return o;
    o = this.freeOwners.pop() ?? this.ownerIds.length;
    if (o > 0xffff) return -1;
    const id = flatten(owner);
    this.ownerIds[o] = id;
    this.ownerHead[o] = 0;
    this.ownerCount[o] = 0;
    this.ownerByName.set(id, o);
    return o;
  }

  private linkOwner(s: number, o: number): void {
    const h = this.ownerHead[o]!;
    this.ownerOf[s] = o;
    this.oprev[s] = 0;
    this.onext[s] = h;
    if (h !== 0) this.oprev[h] = s;
    this.ownerHead[o] = s;
    this.ownerCount[o]!++;
  }

  private unlinkOwner(s: number): void {
    const o = this.ownerOf[s]!;
    const p = this.oprev[s]!;
    const n = this.onext[s]!;
    if (p !== 0) this.onext[p] = n;
    else this.ownerHead[o] = n;
    if (n !== 0) this.oprev[n] = p;
    if (--this.ownerCount[o]! === 0) this.freeOwner(o);
  }

  private freeOwner(o: number): void {
    this.ownerByName.delete(this.ownerIds[o]!);
    this.ownerIds[o] = undefined;
    this.freeOwners.push(o);
  }
}

function indexSizeFor(slots: number): number {
  let n = 16;
  while (n < slots * 2) n *= 2;
  return n;
}

/** A packed array of `n` undefined (exactly n cells: `push` growth would leave up to 50 % spare). */
function filledArray(n: number): (string | undefined)[] {
  return Array.from<string | undefined>({ length: n });
}

function grow<T extends Uint16Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/**
 * A copy of `s` that owns its characters (V8 keeps strings of ≥ 13 chars cut from another as a
 * view of it). Runs once per new entry, never per look-up.
 */
function flatten(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
}
