/**
 * A route at run time: its matcher, its key expressions and its resolvers, tried in the order of
 * DESIGN §2 step 3: learned affinity → directory → hash → balance. The HTTP proxy, the RESP
 * router and the admin look-up all ask `resolve`/`lookupKey` here, so they can never disagree.
 */
import type { RouteConfig } from '../config/schema.js';
import type { Member } from '../members/member.js';
import type { Pool } from '../members/pool.js';
import { compileKey, type KeyFn, type RequestView } from './keys.js';
import type { Decision, Picker, PickerFactory } from './strategy.js';

/**
 * Learned key → owner id (issue 3). `get` answers synchronously from the local tier; only a local
 * miss with a shared tier (Redis read-through) returns a promise.
 */
export interface AffinityLookup {
  get(key: string): string | undefined | Promise<string | undefined>;
  set(key: string, owner: string): void;
  delete(key: string): void;
  dropOwner(owner: string): number;
}

export type MaybePromise<T> = T | Promise<T>;

export interface RouteDeps {
  pool: Pool;
  hash?: PickerFactory;
  balance: PickerFactory;
  affinity?: AffinityLookup;
}

function compileHostMatcher(host: string | undefined): ((h: string) => boolean) | undefined {
  if (!host) return undefined;
  const h = host.toLowerCase();
  if (h.startsWith('*.')) {
    const suffix = h.slice(1);
    return (x) => x.endsWith(suffix) && x.length > suffix.length;
  }
  return (x) => x === h;
}

export class Route {
  readonly name: string;
  readonly config: RouteConfig;
  readonly pool: Pool;
  readonly hashKey: KeyFn | undefined;
  readonly affinityKey: KeyFn | undefined;
  readonly pathRegex: RegExp | undefined;
  private readonly hostMatch: ((h: string) => boolean) | undefined;
  private readonly pathPrefix: string | undefined;
  private readonly methods: ReadonlySet<string> | undefined;
  private readonly hashFactory: PickerFactory | undefined;
  private readonly balanceFactory: PickerFactory;
  readonly affinity: AffinityLookup | undefined;
  /** Lower-case name of the backend redirect header (affinity routes). */
  readonly redirectHeader: string | undefined;
  /** Lower-case name of the owner response header (affinity routes). */
  readonly ownerHeader: string | undefined;
  /** Backend-protocol headers never shown to clients. */
  readonly dropResponseHeaders: ReadonlySet<string>;
  private hashPicker: Picker | undefined;
  private balancePicker!: Picker;
  private readonly unsubscribe: () => void;

  constructor(config: RouteConfig, deps: RouteDeps) {
    this.name = config.name;
    this.config = config;
    this.pool = deps.pool;
    this.hostMatch = compileHostMatcher(config.match.host);
    this.pathPrefix = config.match.path && config.match.path !== '/' ? config.match.path : undefined;
    this.pathRegex = config.match.pathRegex !== undefined ? new RegExp(config.match.pathRegex) : undefined;
    const m = config.match.method;
    this.methods = m === undefined ? undefined : new Set((Array.isArray(m) ? m : [m]).map((x) => x.toUpperCase()));
    this.hashKey = config.hash ? compileKey(config.hash.key) : undefined;
    this.affinityKey = config.affinity ? compileKey(config.affinity.key) : undefined;
    this.hashFactory = deps.hash;
    this.balanceFactory = deps.balance;
    this.affinity = deps.affinity;
    this.redirectHeader = config.affinity?.redirect?.header.toLowerCase();
    this.ownerHeader = config.affinity?.owner?.toLowerCase();
    this.dropResponseHeaders = new Set([this.redirectHeader, this.ownerHeader].filter((h): h is string => h !== undefined));
    this.rebuild();
    this.unsubscribe = this.pool.onChange(() => this.rebuild());
  }

  /** Rebuild pickers from the pool's live snapshot: off the hot path, swapped atomically. */
  private rebuild(): void {
    const live = this.pool.live;
    try {
      const hash = this.hashFactory?.(live);
      const balance = this.balanceFactory(live);
      this.hashPicker = hash;
      this.balancePicker = balance;
    } catch (e) {
      // e.g. a Maglev table smaller than the member count: keep serving from the previous snapshot.
      if (!this.balancePicker) throw e;
      this.onRebuildError?.(e as Error);
    }
  }

  /** Told when a rebuild fails and the previous strategy snapshot stays in use. */
  onRebuildError: ((e: Error) => void) | undefined;

  close(): void {
    this.unsubscribe();
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
   * The target for a request. `attempt` > 0 asks for an alternative after a connect failure;
   * `tried` holds members already tried for this request (skipped while others remain).
   */
  resolve(view: RequestView, attempt: number, tried?: ReadonlySet<Member>, affinityKey?: string): MaybePromise<Decision | undefined> {
    if (attempt === 0 && affinityKey !== undefined) {
      const owned = this.owned(affinityKey, () => this.resolveUnowned(view, attempt, tried));
      if (owned !== undefined) return owned;
    }
    return this.resolveUnowned(view, attempt, tried);
  }

  /**
   * The learned owner of `key` when it is live; a promise (settling on the owner or `unowned()`)
   * when the shared tier must be asked; undefined when no live owner is known locally.
   */
  private owned(key: string, unowned: () => Decision | undefined): MaybePromise<Decision | undefined> | undefined {
    if (!this.affinity) return undefined;
    const owner = this.affinity.get(key);
    if (typeof owner === 'string') {
      const m = this.pool.live.get(owner);
      return m ? { member: m, by: 'affinity' } : undefined;
    }
    if (owner === undefined) return undefined;
    return owner.then((o) => {
      const m = o === undefined ? undefined : this.pool.live.get(o);
      return m ? { member: m, by: 'affinity' as const } : unowned();
    });
  }

  /** Hash, then balance: the "guess" when no owner is known. */
  resolveUnowned(view: RequestView, attempt: number, tried?: ReadonlySet<Member>): Decision | undefined {
    if (this.hashPicker && this.hashKey) {
      const k = this.hashKey(view);
      if (k !== undefined) {
        const m = pickUntried(this.hashPicker, k, attempt, tried, this.pool.live.size);
        if (m) return { member: m, by: 'hash' };
      }
    }
    const m = pickUntried(this.balancePicker, undefined, attempt, tried, this.pool.live.size);
    return m ? { member: m, by: 'balance' } : undefined;
  }

  /** Share of `sample` synthetic keys each live member gets from the hash strategy (dashboard). */
  hashShare(sample: number): Record<string, number> | null {
    if (!this.hashPicker) return null;
    const counts: Record<string, number> = {};
    for (let i = 0; i < sample; i++) {
      const m = this.hashPicker.pick(`sample-key-${i}`, 0);
      if (m) counts[m.id] = (counts[m.id] ?? 0) + 1;
    }
    for (const k of Object.keys(counts)) counts[k] = counts[k]! / sample;
    return counts;
  }

  /** The target for a bare key (RESP `GET`, admin look-up): learned owner, else hash. */
  lookupKey(key: string): MaybePromise<Decision | undefined> {
    return this.owned(key, () => this.lookupUnowned(key)) ?? this.lookupUnowned(key);
  }

  private lookupUnowned(key: string): Decision | undefined {
    // An affinity route without a hash has no answer for an unknown key: any member would be a guess.
    if (this.affinity && !this.hashPicker) return undefined;
    if (this.hashPicker) {
      const m = this.hashPicker.pick(key, 0);
      return m ? { member: m, by: 'hash' } : undefined;
    }
    const m = this.balancePicker.pick(key, 0);
    return m ? { member: m, by: 'balance' } : undefined;
  }
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
