/**
 * Cache look-up phase (after match, before resolve): what the route's response cache does with
 * the request — answer it from the store, fetch it (conditionally when a stale stored answer has
 * validators), or let it by — and the background refresh a `stale-while-revalidate` hit starts.
 * The store, keys and RFC 9111 rules live in `src/cache/`.
 */
import type { Dispatcher } from 'undici';
import { RouteCache, type CacheRequest, type Fill, type StoredResponse } from '../cache/index.js';
import { keyAuthority } from '../cache/keys.js';
import { isResolution } from '../routing/route.js';
import type { Resolution } from '../routing/strategy.js';
import type { Exchange } from './exchange.js';
import { memberHead } from './response-head.js';

/**
 * What the cache reads of the exchange's request. Scheme and authority are those the member is told
 * (X-Forwarded-Proto and -Host: homing's own values, a client's copies having been dropped), since
 * an answer may be built from them.
 */
export function cacheRequest(x: Exchange): CacheRequest {
  const h = x.head;
  let proto: string = h.proto;
  let authority: string = h.host;
  const fh = h.headers;
  for (let i = 0; i < fh.length; i += 2) {
    if (fh[i] === 'x-forwarded-host') authority = fh[i + 1]!;
    else if (fh[i] === 'x-forwarded-proto') proto = fh[i + 1]!;
  }
  return { method: h.method, proto, host: h.host, authority: keyAuthority(proto, authority), uri: h.uri, headers: fh, principal: x.principal };
}

/** undici's header object → [name, value…]. */
function flat(h: Record<string, string | string[] | undefined>): string[] {
  const out: string[] = [];
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, v);
  }
  return out;
}

/**
 * Refresh `entry` after a stale-while-revalidate hit, away from the client already answered: one
 * conditional request to a member the route resolves; a 304 refreshes the stored head, any other
 * answer but a server error supersedes it (and takes its place when storable), a server error or a
 * failure leaves it to go stale.
 */
export function refreshInBackground(x: Exchange, rc: RouteCache, entry: StoredResponse, fill: Fill): void {
  const go = (r: Resolution): void => {
    const deps = x.deps;
    const cfg = x.route.config;
    const pool = deps.upstreams.get(r.member, deps.upstreamOptions(x.route, r.pool));
    pool
      .request({ path: x.head.uri, method: 'GET', headers: RouteCache.conditional(entry, x.head.headers), headersTimeout: cfg.timeouts.header, bodyTimeout: cfg.timeouts.body } as Dispatcher.RequestOptions)
      .then(async (res) => {
        const head = memberHead(flat(res.headers), x.route.redirectHeader, x.route.ownerHeader, deps.dropResponseHeaders);
        if (x.principal !== undefined) deps.cache?.learn(x.principal, head.headers);
        if (res.statusCode === 304) {
          rc.refresh(entry, fill.ctx, head.headers);
          fill.giveUp();
          await res.body.dump();
          return;
        }
        if (head.redirect !== undefined || head.foreignCoding) {
          // Not an answer homing relays: the fill ends here (it would hold the entry's lock for good).
          fill.giveUp();
          await res.body.dump();
          return;
        }
        rc.superseded(entry, res.statusCode);
        if (!fill.head(res.statusCode, head.headers)) {
          await res.body.dump();
          return;
        }
        for await (const chunk of res.body) fill.data(chunk as Buffer);
        fill.complete();
      })
      .catch((err: Error) => {
        fill.giveUp();
        deps.log.debug({ err: err.message, route: x.route.name }, 'background cache refresh failed');
      });
  };
  const r = x.route.resolve(x.view, 'request', 0, undefined, x.affKey);
  if (r instanceof Promise) {
    r.then((v) => (isResolution(v) ? go(v) : fill.giveUp()), () => fill.giveUp());
  } else if (isResolution(r)) go(r);
  else fill.giveUp();
}
