/**
 * The in-memory response store: bounded by bytes (`cache.memory`), least recently used evicted
 * first, with the indexes purges need — resource → its variants (and the `Vary` name lists its
 * responses gave), tag → entries. A resource keeps at most `maxVariants` variants; a new one past
 * that evicts its oldest.
 */
import { LRUCache } from 'lru-cache';
import type { HomingPolicy } from './policy.js';

export interface StoredResponse {
  /** The variant's key (keys.ts). */
  readonly key: string;
  /** The resource's key. */
  readonly primary: string;
  /** Authority (no default port) + request target: what purges by prefix match. */
  readonly url: string;
  /** The names the response varies on (lower-case, sorted). */
  readonly vary: readonly string[];
  status: number;
  /** The head for clients: [name, value…], without Set-Cookie, Age or framing headers. */
  headers: string[];
  /** Set-Cookie lines, given only to the principal that filled the entry (or to all when `public`). */
  readonly cookies: readonly string[];
  readonly body: Buffer;
  policy: HomingPolicy;
  /** Cache-Tag / Surrogate-Key values. */
  readonly tags: readonly string[];
  /** The principal whose request filled it. */
  readonly principal: string | undefined;
  /** Bytes it is counted for. */
  readonly size: number;
}

interface Resource {
  readonly url: string;
  /** Distinct Vary name lists seen for the resource, by their joined form. */
  readonly varies: Map<string, readonly string[]>;
  /** Variant keys, oldest first. */
  readonly keys: Set<string>;
}

export interface StoreEvents {
  evicted?(e: StoredResponse): void;
}

export class MemoryStore {
  private readonly lru: LRUCache<string, StoredResponse>;
  private readonly resources = new Map<string, Resource>();
  private readonly tagged = new Map<string, Set<string>>();
  private bytesHeld = 0;

  constructor(
    readonly memory: number,
    private readonly maxVariants: number,
    private readonly events: StoreEvents = {},
  ) {
    this.lru = new LRUCache<string, StoredResponse>({
      maxSize: memory,
      maxEntrySize: memory,
      sizeCalculation: (e) => e.size,
      dispose: (e, _k, reason) => {
        this.unindex(e);
        if (reason === 'evict') this.events.evicted?.(e);
      },
    });
  }

  /** The Vary name lists responses for the resource gave (usually one; none when nothing is stored). */
  varies(primary: string): Iterable<readonly string[]> | undefined {
    return this.resources.get(primary)?.varies.values();
  }

  get(key: string): StoredResponse | undefined {
    return this.lru.get(key);
  }

  /** Store (replacing the variant if present). */
  put(e: StoredResponse): void {
    if (e.size > this.memory) return;
    this.lru.delete(e.key);
    let r = this.resources.get(e.primary);
    if (r === undefined) {
      r = { url: e.url, varies: new Map(), keys: new Set() };
      this.resources.set(e.primary, r);
    }
    while (r.keys.size >= this.maxVariants) {
      const oldest = r.keys.values().next().value as string;
      this.lru.delete(oldest);
      if (!this.resources.has(e.primary)) this.resources.set(e.primary, r);
    }
    r.varies.set(e.vary.join(','), e.vary);
    r.keys.add(e.key);
    for (const t of e.tags) {
      let s = this.tagged.get(t);
      if (s === undefined) this.tagged.set(t, (s = new Set()));
      s.add(e.key);
    }
    this.bytesHeld += e.size;
    this.lru.set(e.key, e);
  }

  /** A stored response's head changed (a 304 freshened it): same key, same size. */
  touch(e: StoredResponse): void {
    this.lru.get(e.key);
  }

  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  /** Remove `e` if it is still what its key holds (not an answer stored or refreshed since). */
  drop(e: StoredResponse): void {
    if (this.lru.peek(e.key) === e) this.lru.delete(e.key);
  }

  private unindex(e: StoredResponse): void {
    this.bytesHeld -= e.size;
    const r = this.resources.get(e.primary);
    if (r !== undefined) {
      r.keys.delete(e.key);
      if (r.keys.size === 0) this.resources.delete(e.primary);
    }
    for (const t of e.tags) {
      const s = this.tagged.get(t);
      if (s === undefined) continue;
      s.delete(e.key);
      if (s.size === 0) this.tagged.delete(t);
    }
  }

  /** Every variant of a resource. Returns how many entries went. */
  purgeResource(primary: string): number {
    const r = this.resources.get(primary);
    if (r === undefined) return 0;
    const keys = [...r.keys];
    for (const k of keys) this.lru.delete(k);
    this.resources.delete(primary);
    return keys.length;
  }

  /** Every entry whose URL (authority + target) starts with `prefix`. */
  purgePrefix(prefix: string): number {
    let n = 0;
    for (const [p, r] of [...this.resources]) if (r.url.startsWith(prefix)) n += this.purgeResource(p);
    return n;
  }

  purgeTag(tag: string): number {
    const s = this.tagged.get(tag);
    if (s === undefined) return 0;
    const keys = [...s];
    for (const k of keys) this.lru.delete(k);
    return keys.length;
  }

  clear(): number {
    const n = this.lru.size;
    this.lru.clear();
    this.resources.clear();
    this.tagged.clear();
    return n;
  }

  get bytes(): number {
    return this.bytesHeld;
  }

  get entries(): number {
    return this.lru.size;
  }
}
