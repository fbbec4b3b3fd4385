/**
 * A route at run time: its matcher, its key expressions and its resolvers, tried in this order:
 * learned affinity → directory → hash → balance. `resolve` is the one entry the HTTP proxy
 * (plain requests and upgrades), the RESP router and the admin look-up use, so they can never
 * disagree.
 *
 * Two modes, one set of rules:
 * - `request`: a request being proxied. The balancer's choice is taken (its rotation moves);
 *   `attempt` > 0 asks for another member after a failure, skipping those in `tried`.
 * - `lookup`: a bare key (RESP `GET`, admin look-up). The same answer the next request with that
 *   key would get, and nothing moves: a balancer is peeked, never advanced.
 *
 * A key with no learned owner on an affinity route without `hash` is guessed by rendezvous
 * hashing of the affinity key: the same guess on every face and every homing instance (a request
 * without that key is balanced). Pools are tried in the order listed: the next one only while
 * those before it have no live member (failover, like nginx's and HAProxy's `backup` servers).
 *
 * The answer is synchronous whenever every tier it needs is local; a promise only when a shared
 * tier (Redis, the primary process) must be asked.
 */
import type { RouteCache } from '../cache/index.js';
import type { RouteConfig } from '../config/schema.js';
import type { Member } from '../members/member.js';
import type { Pool } from '../members/pool.js';
import type { BalancePicker, BalancerFactory } from './balance.js';
import { createHashPickerFactory } from './hash/index.js';
import { compileKey, type KeyFn, type RequestView } from './keys.js';
import type { Picker, PickerFactory, Resolution, ResolveResult, Unresolved } from './strategy.js';

/**
 * Learned key → owner id. `get` answers synchronously from the local tier; only a local miss with
 * a shared tier (Redis read-through, the primary) returns a promise.
 */
export interface AffinityLookup {
  get(key: string): string | undefined | Promise<string | undefined>;
  set(key: string, owner: string): void;
  delete(key: string): void;
  dropOwner(owner: string): number;
}

export type MaybePromise<T> = T | Promise<T>;

/** What the directory tier says of a key: a pool name or host:port, no such key, or no answer to be had. */
export type DirectoryAnswer =
  | { readonly kind: 'found'; readonly value: string; readonly stale: boolean }
  | { readonly kind: 'unknown' }
  /** `reason` 'bad-answer' or 'invalid': the directory answered something homing cannot use. */
  | { readonly kind: 'unavailable'; readonly reason: string; readonly message: string };

/**
 * The directory tier (a cache in front of an external directory). `get` answers synchronously
 * when a usable entry is cached; a promise only when the directory must be asked.
 */
export interface DirectoryLookup {
  get(key: string): DirectoryAnswer | Promise<DirectoryAnswer>;
}

export type ResolveMode = 'request' | 'lookup';

export interface RouteDeps {
  /** The route's pools, in failover order (at least one). */
  pools: readonly Pool[];
  hash?: PickerFactory;
  balance: BalancerFactory;
  affinity?: AffinityLookup;
  directory?: DirectoryLookup;
  /** The route's view of the response cache, when it caches. */
  cache?: RouteCache;
}

/** Name of the header a backend redirects with when the route does not configure one. */
export const DEFAULT_REDIRECT_HEADER = 'x-accel-redirect';

function compileHostMatcher(host: string | undefined): ((h: string) => boolean) | undefined {
  if (!host) return undefined;
  const h = host.toLowerCase();
  if (h.startsWith('*.')) {
    const suffix = h.slice(1);
    return (x) => x.endsWith(suffix) && x.length > suffix.length;
  }
  return (x) => x === h;
}

/** The strategies of one pool, rebuilt from its live snapshot when that changes. */
interface PoolStrategies {
  hash: Picker | undefined;
  balance: BalancePicker;
}

export class Route {
  readonly name: string;
  readonly config: RouteConfig;
  /** Pools in failover order. */
  readonly pools: readonly Pool[];
  /** The first pool (the only one of a single-pool route). */
  readonly pool: Pool;
  readonly hashKey: KeyFn | undefined;
  readonly affinityKey: KeyFn | undefined;
  readonly pathRegex: RegExp | undefined;
  private readonly hostMatch: ((h: string) => boolean) | undefined;
  private readonly pathPrefix: string | undefined;
  private readonly methods: ReadonlySet<string> | undefined;
  private readonly hashFactory: PickerFactory | undefined;
  private readonly balanceFactory: BalancerFactory;
  readonly affinity: AffinityLookup | undefined;
  readonly directory: DirectoryLookup | undefined;
  readonly directoryKey: KeyFn | undefined;
  /** The response cache's view for this route (looked up before resolution), when it caches. */
  readonly cache: RouteCache | undefined;
  private readonly poolByName: ReadonlyMap<string, Pool>;
  /** Lower-case name of the header a backend redirects with (consumed on every route). */
  readonly redirectHeader: string;
  /** Whether backend redirects are followed (affinity.redirect); elsewhere one is refused. */
  readonly followsRedirects: boolean;
  /** Lower-case name of the owner response header (affinity routes). */
  readonly ownerHeader: string | undefined;
  /** Methods re-sent after a member reset the connection before answering. */
  readonly retryMethods: ReadonlySet<string>;
  private readonly strategies = new Map<Pool, PoolStrategies>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(config: RouteConfig, deps: RouteDeps) {
    if (deps.pools.length === 0) throw new RangeError(`route "${config.name}" needs a pool`);
    this.name = config.name;
    this.config = config;
    this.pools = deps.pools;
    this.pool = deps.pools[0]!;
    this.cache = deps.cache;
    this.hostMatch = compileHostMatcher(config.match.host);
    this.pathPrefix = config.match.path && config.match.path !== '/' ? config.match.path : undefined;
    this.pathRegex = config.match.pathRegex !== undefined ? new RegExp(config.match.pathRegex) : undefined;
    const m = config.match.method;
    this.methods = m === undefined ? undefined : new Set((Array.isArray(m) ? m : [m]).map((x) => x.toUpperCase()));
    this.affinityKey = config.affinity ? compileKey(config.affinity.key) : undefined;
    if (config.hash) {
      this.hashKey = compileKey(config.hash.key);
      this.hashFactory = deps.hash;
    } else if (config.affinity) {
      // The guess for a key with no learned owner: deterministic, so every face and instance agree.
      this.hashKey = this.affinityKey;
      this.hashFactory = createHashPickerFactory({ algorithm: 'rendezvous' });
    }
    this.balanceFactory = deps.balance;
    this.affinity = deps.affinity;
    this.directory = deps.directory;
    this.directoryKey = config.directory ? compileKey(config.directory.key) : undefined;
    this.poolByName = new Map(this.pools.map((p) => [p.name, p]));
    this.redirectHeader = (config.affinity?.redirect?.header ?? DEFAULT_REDIRECT_HEADER).toLowerCase();
    this.followsRedirects = config.affinity?.redirect !== undefined;
    this.ownerHeader = config.affinity?.owner?.toLowerCase();
    this.retryMethods = new Set(config.retryMethods);
    for (const pool of this.pools) {
      this.rebuild(pool);
      this.unsubscribe.push(pool.onChange(() => this.rebuild(pool)));
    }
  }

  /** Rebuild one pool's pickers from its live snapshot: off the hot path, swapped atomically. */
  private rebuild(pool: Pool): void {
    const live = pool.live;
    try {
      const hash = this.hashFactory?.(live);
      const balance = this.balanceFactory(live);
      this.strategies.set(pool, { hash, balance });
    } catch (e) {
      // e.g. a Maglev table smaller than the member count: keep serving from the previous snapshot.
      if (!this.strategies.has(pool)) throw e;
      this.onRebuildError?.(e as Error);
    }
  }

  /** Told when a rebuild fails and the previous strategy snapshot stays in use. */
  onRebuildError: ((e: Error) => void) | undefined;

  close(): void {
    for (const u of this.unsubscribe) u();
  }

  /** Does this route take the request? `path` is the normalised path. Returns the regex match (or null). */
  matches(method: string, host: string, path: string): RegExpExecArray | null | false {
    if (this.methods && !this.methods.has(method)) return false;
    if (this.hostMatch && !this.hostMatch(host)) return false;
    if (this.pathPrefix && !path.startsWith(this.pathPrefix)) return false;
    if (this.pathRegex) {
      const m = this.pathRegex.exec(path);
      return m ?? false;
    }
    return null;
  }

  /**
   * Where a request (`mode` 'request', with its view) or a bare key (`mode` 'lookup') goes.
   * `attempt` > 0 asks for another member after a failure (learned owners are skipped then);
   * `tried` holds the members already tried for this request. `affinityKey` is the request's
   * affinity key when the caller computed it already (request mode).
   */
  resolve(q: RequestView | string, mode: ResolveMode, attempt = 0, tried?: ReadonlySet<Member>, affinityKey?: string): MaybePromise<ResolveResult> {
    const key = typeof q === 'string' ? q : affinityKey;
    if (attempt === 0 && key !== undefined && this.affinity) {
      const owned = this.owned(key, q, mode, tried);
      if (owned !== undefined) return owned;
    }
    return this.afterAffinity(q, mode, attempt, tried);
  }

  /** Directory (when the route has one and the request has its key), else hash and balance. */
  private afterAffinity(q: RequestView | string, mode: ResolveMode, attempt: number, tried: ReadonlySet<Member> | undefined): MaybePromise<ResolveResult> {
    if (this.directory) {
      const key = typeof q === 'string' ? q : this.directoryKey!(q);
      if (key !== undefined) {
        const a = this.directory.get(key);
        if (a instanceof Promise) return a.then((x) => this.fromDirectory(x, key, q, mode, attempt, tried));
        return this.fromDirectory(a, key, q, mode, attempt, tried);
      }
    }
    return this.unowned(q, mode, attempt, tried);
  }

  /**
   * The directory's answer as a resolution: a pool of the route (its hash or balance picks the
   * member), or a member of one of the route's pools. Anything else is a bad answer: homing never
   * connects to an address the directory names unless it is a member.
   */
  private fromDirectory(a: DirectoryAnswer, key: string, q: RequestView | string, mode: ResolveMode, attempt: number, tried: ReadonlySet<Member> | undefined): ResolveResult {
    if (a.kind === 'unknown') return { error: 'HOMING_ERR_DIRECTORY_UNKNOWN_KEY', message: 'the directory knows no such key' };
    // The table's message may name the directory's address or its error text: logged there, not told to clients.
    if (a.kind === 'unavailable') {
      if (a.reason === 'bad-answer' || a.reason === 'invalid') return DIRECTORY_BAD_ANSWER;
      if (a.reason === 'bad-key') return { error: 'HOMING_ERR_BAD_REQUEST', message: 'the key cannot be asked of the directory (empty, or longer than 1 KiB)' };
      return { error: 'HOMING_ERR_DIRECTORY_UNAVAILABLE', message: 'the directory did not answer, and nothing is cached for this key' };
    }
    const pool = this.poolByName.get(a.value);
    if (pool) {
      const r = this.pickIn(pool, q, mode, attempt, tried, true);
      return r ?? { error: 'HOMING_ERR_NO_LIVE_MEMBER', message: `pool "${pool.name}" (the directory's answer) has no live member` };
    }
    const owner = this.poolOf(a.value);
    if (!owner) return DIRECTORY_BAD_ANSWER;
    const m = owner.live.get(a.value);
    return m ? { member: m, pool: owner, by: 'directory' } : { error: 'HOMING_ERR_NO_LIVE_MEMBER', message: `${a.value} (the directory's answer) is not live` };
  }

  /** Whether the directory may answer `value`: a pool of this route, or a member of one. */
  allowsDirectoryAnswer(value: string): boolean {
    return this.poolByName.has(value) || this.poolOf(value) !== undefined;
  }

  /** Which of the route's pools holds `id` as a live member, with the Member. */
  liveMember(id: string): Resolution | undefined {
    for (const pool of this.pools) {
      const m = pool.live.get(id);
      if (m) return { member: m, pool, by: 'affinity' };
    }
    return undefined;
  }

  /** The route's pool that has `id` as a member (live or not), if any. */
  poolOf(id: string): Pool | undefined {
    for (const pool of this.pools) if (pool.members.has(id)) return pool;
    return undefined;
  }

  /**
   * The learned owner of `key` when it is live; a promise (settling on the owner or the unowned
   * answer) when a shared tier must be asked; undefined when no live owner is known locally.
   */
  private owned(key: string, q: RequestView | string, mode: ResolveMode, tried: ReadonlySet<Member> | undefined): MaybePromise<ResolveResult> | undefined {
    const owner = this.affinity!.get(key);
    if (typeof owner === 'string') return this.liveMember(owner);
    if (owner === undefined) return undefined;
    return owner.then((o) => (o === undefined ? undefined : this.liveMember(o)) ?? this.afterAffinity(q, mode, 0, tried));
  }

  /** The pool requests go to now: the first with a live member. */
  activePool(): Pool | undefined {
    for (const pool of this.pools) if (pool.live.size > 0) return pool;
    return undefined;
  }

  /** Hash, then balance, within the active pool. */
  private unowned(q: RequestView | string, mode: ResolveMode, attempt: number, tried: ReadonlySet<Member> | undefined): ResolveResult {
    const pool = this.activePool();
    if (pool === undefined) return this.noLiveMember();
    return this.pickIn(pool, q, mode, attempt, tried, false) ?? this.noLiveMember();
  }

  /** Hash (when the request has the key), else balance, within `pool`; `by` says which, or 'directory' when the directory chose the pool. */
  private pickIn(pool: Pool, q: RequestView | string, mode: ResolveMode, attempt: number, tried: ReadonlySet<Member> | undefined, viaDirectory: boolean): Resolution | undefined {
    const s = this.strategies.get(pool)!;
    const by = viaDirectory ? 'directory' : undefined;
    if (s.hash) {
      const k = typeof q === 'string' ? q : this.hashKey!(q);
      if (k !== undefined) {
        const m = pickUntried(s.hash, k, attempt, tried, pool.live.size);
        if (m) return { member: m, pool, by: by ?? 'hash' };
      }
    }
    const m = mode === 'lookup' ? s.balance.peek() : pickUntried(s.balance, undefined, attempt, tried, pool.live.size);
    return m ? { member: m, pool, by: by ?? 'balance' } : undefined;
  }

  private noLiveMember(): Unresolved {
    const names = this.pools.map((p) => `"${p.name}"`).join(', ');
    return { error: 'HOMING_ERR_NO_LIVE_MEMBER', message: `${this.pools.length > 1 ? 'pools' : 'pool'} ${names} ${this.pools.length > 1 ? 'have' : 'has'} no live member` };
  }

  /** Share of `sample` synthetic keys each live member gets from the hash strategy (dashboard). */
  hashShare(sample: number): Record<string, number> | null {
    const pool = this.activePool() ?? this.pool;
    const picker = this.strategies.get(pool)?.hash;
    if (!picker || !this.config.hash) return null;
    const counts: Record<string, number> = {};
    for (let i = 0; i < sample; i++) {
      const m = picker.pick(`sample-key-${i}`, 0);
      if (m) counts[m.id] = (counts[m.id] ?? 0) + 1;
    }
    for (const k of Object.keys(counts)) counts[k] = counts[k]! / sample;
    return counts;
  }
}

const DIRECTORY_BAD_ANSWER: Unresolved = { error: 'HOMING_ERR_DIRECTORY_BAD_ANSWER', message: 'the directory answered something that is not a pool or member of this route' };

/** The answer is a target (not an error). */
export function isResolution(r: ResolveResult): r is Resolution {
  return (r as Resolution).member !== undefined;
}

/** attempt-th choice of `picker`, skipping members in `tried` while untried ones remain. */
function pickUntried(picker: Picker, key: string | undefined, attempt: number, tried: ReadonlySet<Member> | undefined, size: number): Member | undefined {
  const first = picker.pick(key, attempt, tried);
  if (!first || !tried || tried.size === 0 || !tried.has(first)) return first;
  for (let a = attempt + 1; a < attempt + size + 1; a++) {
    const m = picker.pick(key, a, tried);
    if (m && !tried.has(m)) return m;
  }
  return undefined;
}
