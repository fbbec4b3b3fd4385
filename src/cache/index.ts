/**
 * The shared response cache (RFC 9111), placed before resolution: a fresh hit is answered without
 * choosing a member or touching a backend.
 *
 * - `ResponseCache` is the process's cache: one byte-bounded store (store.ts), the principal table
 *   (principal.ts), the fills in progress, purges, metrics.
 * - `RouteCache` is a route's view of it (its heuristic lifetime, object limit, lock wait): `lookup`
 *   says what to do with a request (serve a stored answer, fetch — conditionally when a stale one
 *   has validators — or bypass), `invalidate` applies a successful unsafe request.
 * - `Fill` stores an answer while it streams to the client that asked for it; concurrent misses of
 *   the same variant wait for it (herd control) rather than each going to the backend.
 *
 * Keys (keys.ts): a resource is scheme + authority (those the member is told) + target; a variant
 * adds the names its response varies on and this request's values for them. A value of a trusted header
 * (`cache.principal.headers`) comes only from the principal table or, when storing, from the
 * response itself: never from the client, whose copies are removed before anything reads them.
 */
import { LRUCache } from 'lru-cache';
import type { Registry } from 'prom-client';
import type { Config, RouteConfig } from '../config/schema.js';
import type { KeyFn, RequestView } from '../routing/keys.js';
import { compileKey } from '../routing/keys.js';
import type { ClusterBus, ClusterChannel } from '../state/cluster.js';
import type { SharedRedis } from '../state/redis.js';
import { parseTarget, routingHost } from '../proxy/path.js';
import { Directives } from './directives.js';
import { keyAuthority, normaliseValue, primaryKey, principalId, variantKey, varyNames } from './keys.js';
import { CacheMetrics, type CacheOutcome } from './metrics.js';
import { HomingPolicy, judge, staleIfError, type Headers, type WallClock } from './policy.js';
import { PrincipalTable, type PrincipalValues } from './principal.js';
import { MemoryStore, type StoredResponse } from './store.js';
import { RedisResponseStore, type RemoteEntry } from './redis-store.js';

export type { CacheOutcome } from './metrics.js';
export type { StoredResponse } from './store.js';

/** What the cache reads of a request. */
export interface CacheRequest {
  readonly method: string;
  /** The scheme the member is told the request came by (X-Forwarded-Proto). */
  readonly proto: string;
  /** Routing host (lower-case, no port): what purges by URL prefix match. */
  readonly host: string;
  /**
   * The authority the member is told it serves (X-Forwarded-Host: the Host header's, port and all,
   * or a trusted proxy's), as `keyAuthority` holds it. An answer may name it, so it is part of the
   * key: a client naming another port, or another host through a trusted proxy, has its own entry.
   */
  readonly authority: string;
  /** Normalised path + query. */
  readonly uri: string;
  /** The head as forwarded ([name, value…]): trusted headers already removed. */
  readonly headers: readonly string[];
  /** The caller's principal id (hashed key), when the principal key is configured and present. */
  readonly principal: string | undefined;
}

/** What to do with a request. */
export type Lookup =
  | { readonly kind: 'bypass'; readonly invalidates: boolean }
  | { readonly kind: 'hit'; readonly entry: StoredResponse; readonly outcome: 'hit' | 'stale'; readonly ctx: Context; readonly refresh: Fill | undefined }
  | { readonly kind: 'fetch'; readonly entry: StoredResponse | undefined; readonly fill: Fill | undefined; readonly ctx: Context }
  | { readonly kind: 'unsatisfiable' };

/** A request as the cache sorted it out once: its headers by name, its directives, what is known of its principal. */
export interface Context {
  readonly q: CacheRequest;
  /** Lower-case name → normalised value (repeated lines joined). */
  readonly headers: ReadonlyMap<string, string>;
  readonly cc: Directives;
  readonly pragmaNoCache: boolean;
  readonly primary: string;
  readonly known: PrincipalValues | undefined;
}

const BYPASS: Lookup = { kind: 'bypass', invalidates: false };
const BYPASS_INVALIDATE: Lookup = { kind: 'bypass', invalidates: true };
const UNSATISFIABLE: Lookup = { kind: 'unsatisfiable' };
/**
 * Methods defined as safe (RFC 9110 §9.2.1, and WebDAV's read-only ones). Every other method's
 * success invalidates, those whose safety homing does not know included (RFC 9111 §4.4).
 */
/** How long an answer that could not be stored keeps its misses from waiting on one another, ms. */
const PASS_TTL = 30_000;
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'REPORT', 'SEARCH', 'QUERY']);

/** Headers a stored answer never keeps (framing, recomputed, or homing's own). */
const NOT_STORED = new Set(['content-length', 'transfer-encoding', 'age', 'set-cookie', 'homing-cache-control', 'x-homing']);
/** Headers a 304 may not change in the stored head (the stored body stays). */
const NOT_REFRESHED = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'content-range', 'set-cookie', 'homing-cache-control', 'x-homing']);
/** Headers a 304 to the client carries (RFC 9110 §15.4.5), with Age and homing's debug header. */
const IN_304 = new Set(['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified']);

function headerMap(flat: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i]!.toLowerCase();
    const v = flat[i + 1]!;
    const prev = m.get(k);
    m.set(k, prev === undefined ? v : `${prev}, ${v}`);
  }
  for (const [k, v] of m) m.set(k, normaliseValue(v));
  return m;
}

/** The same as a record, for http-cache-semantics. */
function record(m: ReadonlyMap<string, string>): Headers {
  const r: Headers = {};
  for (const [k, v] of m) r[k] = v;
  return r;
}

/** Response head → record; Set-Cookie lines apart; repeated Expires that disagree become invalid (stale). */
function responseRecord(flat: readonly string[]): { h: Headers; cookies: string[] } {
  const h: Headers = {};
  const cookies: string[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i]!.toLowerCase();
    const v = flat[i + 1]!;
    if (k === 'set-cookie') {
      cookies.push(v);
      continue;
    }
    const prev = h[k];
    if (prev === undefined) h[k] = v;
    else if (k === 'expires') h[k] = prev === v ? v : '0';
    else h[k] = `${prev}, ${v}`;
  }
  return { h, cookies };
}

/** Weak comparison of entity tags (RFC 9110 §8.8.3.2). */
function weakEqual(a: string, b: string): boolean {
  const strip = (s: string): string => (s.startsWith('W/') ? s.slice(2) : s);
  return strip(a.trim()) === strip(b.trim());
}

export interface ResponseCacheOptions {
  config: NonNullable<Config['cache']>;
  registry: Registry;
  cluster?: ClusterBus;
  /** With `shared.redis`: principals are shared and purges published to every instance. */
  redis?: SharedRedis;
  /** Longest wait for a Redis read, ms. */
  redisTimeout?: number;
  /** Wall clock (tests move it). */
  clock?: WallClock;
}

/** A purge: one resource (all its variants), a URL prefix, a tag, or everything. */
export type PurgeSpec = { url: string } | { prefix: string } | { tag: string } | { all: true };
/** What instances tell each other: a purge, or one resource an unsafe request changed (its key). */
type SharedPurge = PurgeSpec | { resource: string };

export class ResponseCache {
  readonly store: MemoryStore;
  /** The shared tier (`cache.store: redis`). */
  readonly remote: RedisResponseStore | undefined;
  readonly principals: PrincipalTable | undefined;
  readonly principalKey: KeyFn | undefined;
  readonly clock: WallClock;
  readonly metrics: CacheMetrics;
  readonly maxObject: number;
  /** Fills in progress, by lock key (the variant, or the resource before any variant is known). */
  readonly fills = new Map<string, Fill>();
  /**
   * Lock keys whose last answer could not be stored (no-store, private, too large…): their
   * concurrent misses go to the backend side by side rather than one after another, for a while
   * (Varnish's hit-for-miss). A later storable answer clears the mark.
   */
  readonly passes = new LRUCache<string, true>({ max: 100_000, ttl: PASS_TTL });
  private readonly purges: ClusterChannel | undefined;
  private readonly redis: SharedRedis | undefined;
  private readonly unsubscribe: (() => void) | undefined;

  constructor(o: ResponseCacheOptions) {
    const c = o.config;
    this.clock = o.clock ?? Date.now;
    this.maxObject = c.maxObject;
    this.store = new MemoryStore(c.memory, c.maxVariants, { evicted: () => this.metrics.evictions.inc() });
    this.remote = c.store === 'redis' && o.redis !== undefined ? new RedisResponseStore(o.redis, o.redisTimeout ?? 250) : undefined;
    const p = c.principal;
    this.principals = p ? new PrincipalTable({ headers: p.headers, ttl: p.ttl, capacity: p.capacity, cluster: o.cluster, redis: o.redis, readTimeout: o.redisTimeout }) : undefined;
    this.principalKey = p ? compileKey(p.key) : undefined;
    this.metrics = CacheMetrics.of(o.registry);
    // Purges made in one process (the admin API lives in the primary) reach every worker.
    this.purges = o.cluster?.attach(' cache', {
      set: () => undefined,
      delete: (spec: string) => this.applyPurge(JSON.parse(spec) as SharedPurge),
      dropOwner: () => undefined,
    });
    // …and every instance sharing the Redis (each applies what another instance published).
    const redis = (this.redis = o.redis);
    this.unsubscribe = redis?.subscribe(`${redis.prefix}cache:purge`, (m) => {
      try {
        const msg = JSON.parse(m) as { from: string; spec: SharedPurge };
        if (msg.from !== redis.instanceId) this.applyPurge(msg.spec);
      } catch {
        // Not a message of ours.
      }
    });
  }

  /** The caller's principal id, when the principal key is configured and the request has it. */
  principalOf(view: RequestView): string | undefined {
    const k = this.principalKey?.(view);
    return k === undefined || k === '' ? undefined : principalId(k);
  }

  /** Learn the trusted headers a response carries (any route, any status, any directives). */
  learn(principal: string | undefined, head: readonly string[]): void {
    if (principal !== undefined) this.principals?.learn(principal, head);
  }

  route(rc: RouteConfig): RouteCache | undefined {
    const c = rc.cache;
    if (c === undefined || c === false) return undefined;
    const o = c === true ? {} : c;
    return new RouteCache(this, rc.name, { heuristicTtl: (o.ttl ?? 0) / 1000, maxObject: Math.min(o.maxObject ?? this.maxObject, this.maxObject), lock: o.lock ?? 5000 });
  }

  /** Purge here, in sibling processes, other instances and the shared store. Returns how many entries went here. */
  purge(spec: PurgeSpec): number {
    this.purges?.publish('del', JSON.stringify(spec));
    this.redis?.publish(`${this.redis.prefix}cache:purge`, JSON.stringify({ from: this.redis.instanceId, spec }));
    const r = this.remote;
    if (r !== undefined) {
      if ('all' in spec) void r.clear();
      else if ('tag' in spec) void r.purgeTag(spec.tag);
      else if ('prefix' in spec) void r.purgePrefix(spec.prefix);
      else {
        const u = parseUrl(spec.url);
        if (u !== undefined) for (const proto of ['http', 'https']) void r.purgeResource(primaryKey(proto, keyAuthority(proto, u.authority), u.uri));
      }
    }
    return this.applyPurge(spec);
  }

  /** Keep an answer in the memory store and, with `store: redis`, the shared one. */
  keep(e: StoredResponse): void {
    this.store.put(e);
    this.remote?.write(e, e.policy.keepFor() * 1000);
  }

  /** A resource changed (an unsafe request succeeded): gone here, from the shared store, and from the other instances' memory. */
  forget(primary: string): number {
    const n = this.store.purgeResource(primary);
    if (this.remote !== undefined) {
      void this.remote.purgeResource(primary);
      const spec: SharedPurge = { resource: primary };
      this.redis?.publish(`${this.redis.prefix}cache:purge`, JSON.stringify({ from: this.redis.instanceId, spec }));
    }
    return n;
  }

  /** One stored answer is superseded (a newer answer replaced it, or a 304 forbade keeping it): gone here and from the shared store. */
  drop(e: StoredResponse): void {
    this.store.drop(e);
    this.remote?.remove(e);
  }

  private applyPurge(spec: SharedPurge): number {
    let n: number;
    if ('resource' in spec) n = this.store.purgeResource(spec.resource);
    else if ('all' in spec) n = this.store.clear();
    else if ('tag' in spec) n = this.store.purgeTag(spec.tag);
    else if ('prefix' in spec) n = this.store.purgePrefix(spec.prefix);
    else {
      const u = parseUrl(spec.url);
      n = 0;
      if (u !== undefined) for (const proto of ['http', 'https']) n += this.store.purgeResource(primaryKey(proto, keyAuthority(proto, u.authority), u.uri));
    }
    this.metrics.purged.inc(n);
    return n;
  }

  close(): void {
    this.unsubscribe?.();
    this.purges?.detach();
    this.principals?.close();
  }
}

/** `http://host[:port]/path?q` or `host[:port]/path?q` → authority and normalised target. */
export function parseUrl(url: string): { authority: string; uri: string } | undefined {
  const m = /^(?:https?:\/\/)?([^/?#]+)(\/[^#]*)?$/i.exec(url.trim());
  if (!m) return undefined;
  const t = parseTarget(m[2] ?? '/');
  if (routingHost(m[1]!) === undefined || t === undefined) return undefined;
  return { authority: m[1]!, uri: t.uri };
}

/** What purges by prefix match: the authority as keys hold it (no default port) + target. */
function urlOf(authority: string, uri: string): string {
  return authority + uri;
}

export interface RouteCacheOptions {
  /** Lifetime in seconds for answers that may have a heuristic one and give no Last-Modified. */
  heuristicTtl: number;
  maxObject: number;
  /** Longest wait for a concurrent fill of the same variant, ms. */
  lock: number;
}

export class RouteCache {
  constructor(
    readonly cache: ResponseCache,
    readonly route: string,
    readonly o: RouteCacheOptions,
  ) {}

  /** What to do with `q`: synchronous but when a worker asks the primary for a principal, or waits for a fill. */
  lookup(q: CacheRequest): Lookup | Promise<Lookup> {
    const m = q.method;
    if (m !== 'GET' && m !== 'HEAD') return SAFE.has(m) ? BYPASS : BYPASS_INVALIDATE;
    const headers = headerMap(q.headers);
    // Partial content is not combined from the store: ranges go to the backend.
    if (headers.has('range')) return BYPASS;
    // What the backend said of the caller is looked up only when it can matter: a stored answer
    // of this resource varies on a trusted header, or the shared store may hold one that does.
    const primary = primaryKey(q.proto, q.authority, q.uri);
    const known = q.principal !== undefined && this.needsPrincipal(primary) ? this.cache.principals?.lookup(q.principal) : undefined;
    const build = (k: PrincipalValues | undefined): Context => {
      const ccv = headers.get('cache-control');
      return {
        q,
        headers,
        cc: Directives.parse(ccv),
        pragmaNoCache: ccv === undefined && /no-cache/i.test(headers.get('pragma') ?? ''),
        primary,
        known: k,
      };
    };
    if (known instanceof Promise) return known.then((k) => this.decide(build(k), false));
    return this.decide(build(known), false);
  }

  private needsPrincipal(primary: string): boolean {
    const trusted = this.cache.principals?.headers;
    if (trusted === undefined) return false;
    if (this.cache.remote !== undefined) return true;
    const varies = this.cache.store.varies(primary);
    if (varies !== undefined) for (const names of varies) for (const n of names) if (trusted.has(n)) return true;
    return false;
  }

  /** A variant's values for `names` as this request selects them; undefined when a trusted one is not known. */
  private values(ctx: Context, names: readonly string[]): (string | undefined)[] | undefined {
    const trusted = this.cache.principals?.headers;
    const out: (string | undefined)[] = [];
    for (const n of names) {
      if (trusted?.has(n)) {
        const v = ctx.known?.get(n);
        if (v === undefined) return undefined;
        out.push(v);
      } else out.push(ctx.headers.get(n));
    }
    return out;
  }

  private decide(ctx: Context, waited: boolean, remoteRead = false): Lookup | Promise<Lookup> {
    const store = this.cache.store;
    let entry: StoredResponse | undefined;
    // Before anything is known of the resource, concurrent misses wait on the resource itself.
    let lock: string | undefined = ctx.primary;
    const varies = store.varies(ctx.primary);
    if (varies !== undefined) {
      lock = undefined;
      for (const names of varies) {
        const vals = this.values(ctx, names);
        if (vals === undefined) continue;
        const key = variantKey(ctx.primary, names, vals);
        lock ??= key;
        entry = store.get(key);
        if (entry !== undefined) {
          lock = key;
          break;
        }
      }
    }
    const remote = this.cache.remote;
    if (entry === undefined && remote !== undefined && !remoteRead) {
      // Not in this process: what another instance stored, before the backend is asked.
      return remote
        .read(ctx.primary, (names) => {
          const vals = this.values(ctx, names);
          return vals === undefined ? undefined : variantKey(ctx.primary, names, vals);
        })
        .then((e) => {
          if (e !== undefined) store.put(this.restore(e));
          return this.decide(ctx, waited, true);
        });
    }
    const onlyIfCached = ctx.cc.has('only-if-cached');
    if (entry !== undefined) {
      const use = judge(entry.policy, ctx.cc, ctx.pragmaNoCache);
      if (use === 'fresh' || use === 'stale') return { kind: 'hit', entry, outcome: use === 'fresh' ? 'hit' : 'stale', ctx, refresh: undefined };
      if (use === 'swr') {
        // Serve it, and refresh it in the background unless a fill of it is under way.
        const refresh = this.cache.fills.has(entry.key) ? undefined : new Fill(this, ctx, entry.key);
        return { kind: 'hit', entry, outcome: 'stale', ctx, refresh };
      }
      if (onlyIfCached) return UNSATISFIABLE;
    } else if (onlyIfCached) return UNSATISFIABLE;
    // A HEAD answer has no body to store (a stale entry is still refreshed by a 304).
    if (ctx.q.method === 'HEAD') return { kind: 'fetch', entry, fill: undefined, ctx };
    // Known not to be storable lately: nobody waits on it (its answer may still be stored).
    const passing = lock !== undefined && this.cache.passes.has(lock);
    if (lock !== undefined && !passing) {
      const running = this.cache.fills.get(lock);
      if (running !== undefined && !waited) return running.wait(this.o.lock).then(() => this.decide(ctx, true, remoteRead));
      if (running !== undefined) lock = undefined; // waited long enough: on its own, not a fill others wait for
    }
    const fill = ctx.cc.has('no-store') ? undefined : new Fill(this, ctx, lock, !passing);
    return { kind: 'fetch', entry, fill, ctx };
  }

  /** An answer read from the shared store, its policy bound to this cache's clock. */
  private restore(e: RemoteEntry): StoredResponse {
    return { ...e, policy: HomingPolicy.restore(e.policy, { clock: this.cache.clock, heuristicTtl: this.o.heuristicTtl }) };
  }

  /** The head a stored answer is given with to this request: trusted headers its principal's own, cookies only to its filler, Age. */
  answerHead(e: StoredResponse, ctx: Context): string[] {
    const trusted = this.cache.principals?.headers;
    const out: string[] = [];
    let given: Set<string> | undefined;
    for (let i = 0; i < e.headers.length; i += 2) {
      const name = e.headers[i]!;
      const lower = name.toLowerCase();
      if (trusted?.has(lower)) {
        // The filler's value never goes to another caller: this caller's own, or nothing.
        const own = ctx.known?.get(lower);
        if (own !== undefined && !(given ??= new Set()).has(lower)) {
          given.add(lower);
          out.push(name, own);
        }
        continue;
      }
      out.push(name, e.headers[i + 1]!);
    }
    if (e.cookies.length > 0 && (e.policy.cc.has('public') || (e.principal !== undefined && e.principal === ctx.q.principal))) {
      for (const c of e.cookies) out.push('set-cookie', c);
    }
    out.push('age', String(Math.max(0, Math.floor(e.policy.age()))));
    return out;
  }

  /** Whether the client's own conditional headers make the answer a 304 (RFC 9110 §13.2.2). */
  notModified(e: StoredResponse, ctx: Context): boolean {
    if (e.status !== 200) return false;
    const inm = ctx.headers.get('if-none-match');
    const h = e.policy.headers;
    if (inm !== undefined) {
      if (inm.trim() === '*') return true;
      const etag = h.etag;
      return etag !== undefined && inm.split(',').some((t) => weakEqual(t, etag));
    }
    const ims = ctx.headers.get('if-modified-since');
    if (ims !== undefined && h['last-modified'] !== undefined) {
      const a = Date.parse(h['last-modified']);
      const b = Date.parse(ims);
      return Number.isFinite(a) && Number.isFinite(b) && a <= b;
    }
    return false;
  }

  /** Keep only what a 304 carries of a full head. */
  static notModifiedHead(head: readonly string[]): string[] {
    const out: string[] = [];
    for (let i = 0; i < head.length; i += 2) {
      const k = head[i]!.toLowerCase();
      if (IN_304.has(k) || k === 'age' || k === 'x-homing') out.push(head[i]!, head[i + 1]!);
    }
    return out;
  }

  /**
   * Validators to ask the backend with for a stale stored answer (they replace the client's own):
   * its entity tag, and its Last-Modified as well (RFC 9111 §4.3.1; a backend that knows no entity
   * tags still answers If-Modified-Since, one that does ignores it).
   */
  static conditional(e: StoredResponse, forwarded: string[]): string[] {
    const out: string[] = [];
    for (let i = 0; i < forwarded.length; i += 2) {
      const k = forwarded[i]!.toLowerCase();
      if (k === 'if-none-match' || k === 'if-modified-since' || k === 'if-match' || k === 'if-unmodified-since' || k === 'if-range') continue;
      out.push(forwarded[i]!, forwarded[i + 1]!);
    }
    const h = e.policy.headers;
    if (h.etag !== undefined) out.push('if-none-match', h.etag);
    if (h['last-modified'] !== undefined) out.push('if-modified-since', h['last-modified']);
    return out;
  }

  /** A 304 for a stored answer: its head refreshed (RFC 9111 §4.3.4); the entry to serve. */
  refresh(e: StoredResponse, ctx: Context, head304: readonly string[]): StoredResponse {
    const { h } = responseRecord(head304);
    const stored = e.policy.headers;
    // A strong validator that names another representation selects nothing to update.
    if (h.etag !== undefined && !h.etag.startsWith('W/') && stored.etag !== undefined && stored.etag.replace(/^W\//, '') !== h.etag) return e;
    const headers: string[] = [];
    for (let i = 0; i < e.headers.length; i += 2) {
      const k = e.headers[i]!.toLowerCase();
      if (h[k] !== undefined && !NOT_REFRESHED.has(k)) continue;
      headers.push(e.headers[i]!, e.headers[i + 1]!);
    }
    for (let i = 0; i < head304.length; i += 2) {
      const k = head304[i]!.toLowerCase();
      if (NOT_REFRESHED.has(k) || NOT_STORED.has(k)) continue;
      headers.push(head304[i]!, head304[i + 1]!);
    }
    const { h: merged } = responseRecord(headers);
    if (h.age !== undefined) merged.age = h.age;
    const policy = new HomingPolicy({ url: ctx.q.uri, method: 'GET', headers: { ...record(ctx.headers), host: ctx.q.host } }, { status: e.status, headers: merged }, { clock: this.cache.clock, heuristicTtl: this.o.heuristicTtl });
    const next: StoredResponse = { ...e, headers, policy };
    // Validated for this request; kept only if the refreshed head still allows storing (no-store, private…).
    if (policy.storable()) this.cache.keep(next);
    else this.cache.drop(e);
    return next;
  }

  /**
   * The backend gave a full answer (`status`, not a 304) to the validation of `e`: `e` is not to be
   * used again (RFC 9111 §4.3.3), whether or not the answer is stored in its place (it may vary
   * differently, or not be storable). A server error is a failure to answer: `e` stays.
   */
  superseded(e: StoredResponse, status: number): void {
    if (status < 500) this.cache.drop(e);
  }

  /**
   * Whether a stored answer may never be served without a backend's confirmation (must-revalidate,
   * proxy-revalidate, s-maxage, no-cache): when none can be reached, the answer is a 504 (RFC 9111
   * §5.2.2.2), never the stored one.
   */
  needsConfirmation(e: StoredResponse): boolean {
    return e.policy.neverStale;
  }

  /** Whether a stored answer may stand in for a failed backend (stale-if-error). */
  staleIfError(e: StoredResponse, ctx: Context): boolean {
    return staleIfError(e.policy, ctx.cc);
  }

  /**
   * A successful unsafe request invalidates its URL and the same-origin URLs its Location and
   * Content-Location name (RFC 9111 §4.4).
   */
  invalidate(q: CacheRequest, status: number, head: readonly string[]): void {
    if (status < 200 || status >= 400) return;
    const cache = this.cache;
    let n = cache.forget(primaryKey(q.proto, q.authority, q.uri));
    for (let i = 0; i < head.length; i += 2) {
      const k = head[i]!.toLowerCase();
      if (k !== 'location' && k !== 'content-location') continue;
      let u: URL;
      try {
        u = new URL(head[i + 1]!, `${q.proto}://${q.authority}${q.uri}`);
      } catch {
        continue;
      }
      if (u.protocol !== `${q.proto}:` || keyAuthority(q.proto, u.host) !== q.authority) continue;
      const t = parseTarget(u.pathname + u.search);
      if (t !== undefined) n += cache.forget(primaryKey(q.proto, q.authority, t.uri));
    }
    this.cache.metrics.purged.inc(n);
  }

  count(outcome: CacheOutcome): void {
    this.cache.metrics.requests.labels(this.route, outcome).inc();
  }
}

/**
 * One answer on its way into the store: judged at its head, gathered as it streams to the client,
 * stored when complete and within the object limit. Concurrent misses of its lock key wait for it.
 */
export class Fill {
  private chunks: Buffer[] = [];
  private size = 0;
  private pending: Omit<StoredResponse, 'body' | 'size'> | undefined;
  private declared: number | undefined;
  private settled = false;
  private waiters: (() => void)[] = [];

  constructor(
    readonly rc: RouteCache,
    readonly ctx: Context,
    /** The key concurrent misses wait on (undefined: nobody waits). */
    private readonly lock: string | undefined,
    /** Whether concurrent misses wait for this one (not while the key is known not to be storable). */
    waitedOn = true,
  ) {
    if (lock !== undefined && waitedOn) rc.cache.fills.set(lock, this);
  }

  /** Resolves when this fill is stored or given up, or after `ms`. */
  wait(ms: number): Promise<void> {
    if (this.settled) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** The backend's final answer head ([name, value…] as delivered): whether it will be stored. */
  head(status: number, head: readonly string[]): boolean {
    const rc = this.rc;
    const ctx = this.ctx;
    const { h, cookies } = responseRecord(head);
    const vary = varyNames(h.vary);
    if (vary[0] === '*') return this.giveUp(true);
    const policy = new HomingPolicy({ url: ctx.q.uri, method: 'GET', headers: { ...record(ctx.headers), host: ctx.q.host } }, { status, headers: h }, { clock: rc.cache.clock, heuristicTtl: rc.o.heuristicTtl });
    if (!policy.storable()) return this.giveUp(true);
    const validators = h.etag !== undefined || h['last-modified'] !== undefined;
    if (policy.maxAge() <= 0 && !validators) return this.giveUp(true);
    const cl = h['content-length'] === undefined ? undefined : Number(h['content-length']);
    if (cl !== undefined && (!Number.isSafeInteger(cl) || cl > rc.o.maxObject)) return this.giveUp(true);
    // A trusted header's value: what the backend just said about this caller, else what it said before.
    const trusted = rc.cache.principals?.headers;
    const values: (string | undefined)[] = [];
    for (const n of vary) {
      if (trusted?.has(n)) {
        const v = h[n]?.trim() ?? ctx.known?.get(n);
        if (v === undefined) return this.giveUp(true);
        values.push(v);
      } else values.push(ctx.headers.get(n));
    }
    const headers: string[] = [];
    for (let i = 0; i < head.length; i += 2) if (!NOT_STORED.has(head[i]!.toLowerCase())) headers.push(head[i]!, head[i + 1]!);
    const tags: string[] = [];
    if (h['cache-tag'] !== undefined) for (const t of h['cache-tag'].split(',')) if (t.trim() !== '') tags.push(t.trim());
    if (h['surrogate-key'] !== undefined) for (const t of h['surrogate-key'].split(/\s+/)) if (t !== '') tags.push(t);
    const key = variantKey(ctx.primary, vary, values);
    this.pending = { key, primary: ctx.primary, url: urlOf(ctx.q.authority, ctx.q.uri), vary, status, headers, cookies, policy, tags, principal: ctx.q.principal };
    this.declared = cl;
    // Others may start on their own variant at once when this one is not theirs.
    return true;
  }

  data(chunk: Buffer): void {
    if (this.pending === undefined) return;
    this.size += chunk.length;
    if (this.size > this.rc.o.maxObject) {
      this.giveUp(true);
      return;
    }
    this.chunks.push(chunk);
  }

  /** The whole answer arrived: store it (unless cut short), then release the waiters. */
  complete(): void {
    const p = this.pending;
    if (p !== undefined && (this.declared === undefined || this.declared === this.size)) {
      const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
      let hs = 0;
      for (const s of p.headers) hs += s.length;
      this.rc.cache.keep({ ...p, body, size: this.size + hs + 256 });
      this.rc.cache.metrics.stores.labels(this.rc.route).inc();
      if (this.lock !== undefined) this.rc.cache.passes.delete(this.lock);
    }
    this.release();
  }

  /**
   * Not stored (not storable, too large, cut short, or the request failed). `uncacheable`: the
   * answer itself cannot be stored, so concurrent misses of it stop waiting for one another.
   */
  giveUp(uncacheable = false): false {
    if (uncacheable && this.lock !== undefined) this.rc.cache.passes.set(this.lock, true);
    this.pending = undefined;
    this.chunks = [];
    this.release();
    return false;
  }

  private release(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.lock !== undefined && this.rc.cache.fills.get(this.lock) === this) this.rc.cache.fills.delete(this.lock);
    for (const w of this.waiters.splice(0)) w();
  }
}
