/**
 * RFC 9111 freshness and validation for one stored response, on http-cache-semantics (storability,
 * age, validators, the merge of a 304 into the stored head) with what that library gets wrong for a
 * shared cache put right here, each with a test in test/cache-rfc9111.test.ts:
 *
 * - directives are parsed by `Directives` (quoted commas, case-insensitive names, `private=""`,
 *   duplicate or invalid lifetimes) and handed over in canonical form;
 * - a fresh response with `must-revalidate` is served (the library revalidates it every time: the
 *   directive only applies once the response is stale);
 * - `proxy-revalidate` and `s-maxage` forbid serving stale, they do not make a fresh response stale
 *   (the library gives `proxy-revalidate` a lifetime of 0);
 * - 206 is not stored (homing does not combine partial content); a heuristic lifetime is given only
 *   to status codes cacheable by default or `public` answers, from `Last-Modified` (10 % of its age)
 *   or else the route's `cache.ttl`;
 * - `Set-Cookie` is kept out of the policy (the library makes such answers always stale) and out of
 *   every hit but the filler's own (see store.ts);
 * - time comes from an injected wall clock, so tests move it instead of sleeping.
 */
import CachePolicy from 'http-cache-semantics';
import { Directives } from './directives.js';

/** Status codes a cache may store and give a heuristic lifetime (RFC 9110 §15.1). */
export const HEURISTIC_STATUSES = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);
/** Status codes stored with an explicit lifetime (those the library understands, less partial content). */
const STORABLE_STATUSES = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501]);

export type Headers = Record<string, string>;

/** Wall-clock milliseconds (Date.now in production; tests pass a clock they move). */
export type WallClock = () => number;

export interface PolicyOptions {
  clock: WallClock;
  /** Heuristic lifetime in seconds for answers with no explicit one and no Last-Modified. */
  heuristicTtl: number;
}

type Internals = {
  _responseTime: number;
  _rescc: Record<string, string | true>;
  _resHeaders: Headers;
  _status: number;
};

/** Targeted fields homing obeys, first wins: its own, then the one for every CDN (RFC 9213). */
const TARGETED = ['homing-cache-control', 'cdn-cache-control'] as const;

/** The first targeted field with a non-empty value; an empty one is as if absent (RFC 9213 §2.1). */
function targetedField(h: Headers): string | undefined {
  return TARGETED.find((f) => h[f] !== undefined && h[f].trim() !== '');
}

/** The freshness controls a response gives: its targeted field's if it has one, else Cache-Control's. */
export function responseDirectives(h: Headers): Directives {
  return Directives.parse(h[targetedField(h) ?? 'cache-control']);
}

export class HomingPolicy extends CachePolicy {
  /** The response's directives, already sorted out (`Directives`). */
  readonly cc: Directives;
  private clock!: WallClock;
  private heuristicTtl = 0;

  constructor(req: CachePolicy.Request, res: CachePolicy.Response, o: PolicyOptions | { _fromObject: object }, cc?: Directives) {
    if ('_fromObject' in o) {
      super(undefined as never, undefined as never, o as CachePolicy.Options);
      this.cc = cc ?? Directives.EMPTY;
      return;
    }
    const rh = res.headers as Headers;
    const d = cc ?? responseDirectives(rh);
    const headers: Headers = { ...rh, 'cache-control': d.canonical() };
    // A targeted field sets Expires aside as well as Cache-Control (RFC 9213 §2.1).
    if (targetedField(rh) !== undefined) delete headers.expires;
    delete headers['set-cookie'];
    delete headers['homing-cache-control'];
    delete headers['cdn-cache-control'];
    if (headers['cache-control'] === '') delete headers['cache-control'];
    super(req, { status: res.status, headers }, { shared: true });
    this.cc = d;
    this.clock = o.clock;
    this.heuristicTtl = o.heuristicTtl;
    (this as unknown as Internals)._responseTime = o.clock();
  }

  /** Re-attach to a clock (a policy read back from a store). */
  static restore(obj: object, o: PolicyOptions): HomingPolicy {
    const p = new HomingPolicy(undefined as never, undefined as never, { _fromObject: obj });
    const h = (p as unknown as Internals)._resHeaders;
    (p as { cc: Directives }).cc = Directives.parse(h['cache-control']);
    p.clock = o.clock;
    p.heuristicTtl = o.heuristicTtl;
    return p;
  }

  now(): number {
    // Called by the library's constructor before this class has set its clock.
    return this.clock === undefined ? Date.now() : this.clock();
  }

  override storable(): boolean {
    const i = this as unknown as Internals;
    if (!STORABLE_STATUSES.has(i._status)) return false;
    return super.storable();
  }

  /** Freshness lifetime in seconds (RFC 9111 §4.2.1, shared cache). */
  override maxAge(): number {
    const i = this as unknown as Internals;
    const cc = this.cc;
    if (!this.storable() || cc.mentions('no-cache')) return 0;
    const h = i._resHeaders;
    if (h.vary !== undefined && h.vary.includes('*')) return 0;
    if (cc.mentions('s-maxage')) return cc.seconds('s-maxage') ?? 0;
    if (cc.mentions('max-age')) return cc.seconds('max-age') ?? 0;
    if (h.expires !== undefined) {
      const e = Date.parse(h.expires);
      const date = this.date();
      return Number.isNaN(e) || e <= date ? 0 : (e - date) / 1000;
    }
    if (!HEURISTIC_STATUSES.has(i._status) && !cc.has('public')) return 0;
    if (h['last-modified'] !== undefined) {
      const lm = Date.parse(h['last-modified']);
      const date = this.date();
      if (Number.isFinite(lm) && date > lm) return ((date - lm) / 1000) * 0.1;
    }
    return this.heuristicTtl;
  }

  /** Whether the response forbids being served stale in any case (RFC 9111 §4.2.4). */
  get neverStale(): boolean {
    const cc = this.cc;
    return cc.mentions('must-revalidate') || cc.mentions('proxy-revalidate') || cc.mentions('s-maxage') || cc.mentions('no-cache');
  }

  /** Seconds past its lifetime (≤ 0 while fresh). */
  staleness(): number {
    return this.age() - this.maxAge();
  }

  /** Seconds the stored response may still be kept for: fresh time plus its stale windows, or an hour to revalidate with validators. */
  keepFor(): number {
    const h = (this as unknown as Internals)._resHeaders;
    const left = this.maxAge() - this.age();
    const windows = Math.max(this.cc.seconds('stale-while-revalidate') ?? 0, this.cc.seconds('stale-if-error') ?? 0);
    const validators = h.etag !== undefined || h['last-modified'] !== undefined ? 3600 : 0;
    return Math.max(0, left) + Math.max(windows, validators);
  }

  get headers(): Headers {
    return (this as unknown as Internals)._resHeaders;
  }
}

/** How a stored response may answer a request. */
export type Use =
  /** Fresh (or stale within the client's max-stale): serve it. */
  | 'fresh'
  | 'stale'
  /** Stale within stale-while-revalidate: serve it and revalidate in the background. */
  | 'swr'
  /** Ask the origin first (conditionally when the response has validators). */
  | 'validate';

/** RFC 9111 §4.2, §5.2.1: may `p` answer a request carrying directives `req`? */
export function judge(p: HomingPolicy, req: Directives, pragmaNoCache: boolean): Use {
  if (req.has('no-cache') || (pragmaNoCache && !req.mentions('max-age'))) return 'validate';
  const age = p.age();
  const life = p.maxAge();
  const maxAge = req.seconds('max-age');
  if (maxAge !== undefined && age > maxAge) return 'validate';
  const minFresh = req.seconds('min-fresh');
  if (minFresh !== undefined && life - age < minFresh) return 'validate';
  if (life > age) return 'fresh';
  if (p.neverStale) return 'validate';
  const over = age - life;
  if (req.has('max-stale')) {
    const ms = req.seconds('max-stale');
    if (ms === undefined || over <= ms) return 'stale';
  }
  const swr = p.cc.seconds('stale-while-revalidate');
  if (swr !== undefined && over <= swr) return 'swr';
  return 'validate';
}

/** Whether `p` may stand in for an origin that failed (RFC 5861 stale-if-error, from the response or the request). */
export function staleIfError(p: HomingPolicy, req: Directives): boolean {
  if (p.neverStale) return false;
  const over = p.staleness();
  const w = Math.max(p.cc.seconds('stale-if-error') ?? -1, req.seconds('stale-if-error') ?? -1);
  return w >= 0 && over <= w;
}
