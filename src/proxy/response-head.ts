/**
 * Response-head phase: what a member answered, judged once for plain requests and upgrades.
 * A backend redirect (the route's redirect header, `X-Accel-Redirect` by default) is followed on
 * routes that follow redirects and refused on every other route; either way no client ever sees
 * it, nor an owner header. Otherwise the owner is learned (affinity routes) and the head is
 * delivered with hop-by-hop and backend-protocol headers removed.
 */
import type { Resolution } from '../routing/strategy.js';
import type { Refusal } from './context.js';
import { refusal } from './context.js';
import type { Exchange } from './exchange.js';
import { HOP_BY_HOP, HOP_BY_HOP_MASK, lengthBit, nominatedHeaders, setLengthMask } from './headers.js';
import { memberId, nextHop, type RedirectTarget } from './redirect.js';

/** A member's response head with the parts homing consumes taken out. */
export interface MemberHead {
  /** Headers for the client: [name, value…], Set-Cookie lines kept apart. */
  headers: string[];
  /** The redirect header's value, when the member sent one. */
  redirect: string | undefined;
  /** The owner header's value, when the route has one and the member sent it. */
  owner: string | undefined;
  /**
   * The member's Transfer-Encoding names a coding other than chunked (gzip, …): homing does not
   * decode those, and relaying the bytes without the coding would hand the client a wrong body.
   */
  foreignCoding: boolean;
}

/**
 * One pass over a member's raw head (undici's Buffers or node's strings): hop-by-hop headers (and
 * those its Connection nominates) and `drop` (lower-case) removed, the route's redirect and owner
 * headers captured. `upgrade`: a 101 keeps Connection and Upgrade.
 */
export function memberHead(raw: readonly (Buffer | string)[], redirectHeader: string, ownerHeader: string | undefined, drop: ReadonlySet<string>, upgrade = false): MemberHead {
  const out: string[] = [];
  let nominated: Set<string> | undefined;
  let redirect: string | undefined;
  let owner: string | undefined;
  let foreignCoding = false;
  // Lines whose name is none of those looked for by its length alone go straight through.
  const mask = HOP_BY_HOP_MASK | setLengthMask(drop) | lengthBit(redirectHeader.length) | (ownerHeader === undefined ? 0 : lengthBit(ownerHeader.length));
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString();
    const v = raw[i + 1]!;
    const value = typeof v === 'string' ? v : v.toString('latin1');
    if ((mask & lengthBit(name.length)) === 0) {
      out.push(name, value);
      continue;
    }
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (upgrade && (lower === 'connection' || lower === 'upgrade')) out.push(name, value);
      else if (lower === 'connection') nominatedHeaders(value, (nominated ??= new Set()));
      else if (lower === 'transfer-encoding' && value.trim().toLowerCase() !== 'chunked') foreignCoding = true;
      continue;
    }
    if (lower === redirectHeader) {
      redirect ??= value;
      continue;
    }
    if (lower === ownerHeader) {
      owner ??= value;
      continue;
    }
    if (drop.has(lower)) continue;
    out.push(name, value);
  }
  if (nominated && nominated.size) {
    const kept: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!nominated.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
    return { headers: kept, redirect, owner, foreignCoding };
  }
  return { headers: out, redirect, owner, foreignCoding };
}

export type HeadVerdict = { deliver: string[] } | { follow: RedirectTarget } | Refusal;

/** Deliver, follow a redirect, or refuse: the response-head phase for both transports. */
export function judgeResponseHead(x: Exchange, status: number, head: MemberHead): HeadVerdict {
  const route = x.route;
  const r = x.resolution!;
  if (head.foreignCoding) return refusal('HOMING_ERR_UPSTREAM_BAD_RESPONSE', `${r.member.id} sent a Transfer-Encoding other than chunked`);
  if (head.redirect !== undefined) {
    if (!route.followsRedirects) {
      x.deps.log.warn({ route: route.name, from: r.member.id }, 'refused a backend redirect on a route that does not follow redirects');
      return refusal('HOMING_ERR_REDIRECT_TARGET', 'backend redirect on a route that does not follow redirects');
    }
    const next = nextHop(x, head.redirect);
    return 'code' in next ? next : { follow: next };
  }
  if (x.affKey !== undefined && status < 500) learn(x, r, head.owner);
  const headers = head.headers;
  // What the backend says about the caller (principal metadata), whatever the route.
  if (x.principal !== undefined) x.deps.cache?.learn(x.principal, headers);
  if (route.config.debugHeader) headers.push('x-homing', debugValue(x, r.member.id, r.by));
  return { deliver: headers };
}

/**
 * `Homing-Cache-Control` is for homing's cache alone (it outranks Cache-Control there): never
 * passed on to a client, whether or not the route caches.
 */
export function dropHomingCacheControl(h: string[]): void {
  for (let i = h.length - 2; i >= 0; i -= 2) if (h[i]!.length === 20 && h[i]!.toLowerCase() === 'homing-cache-control') h.splice(i, 2);
}

/** The opt-in `X-Homing` header's value. */
export function debugValue(x: Exchange, target: string, by: string): string {
  return `route=${x.route.name}; target=${target}; by=${by}; cache=${x.cacheOutcome ?? 'bypass'}; hops=${x.hops}`;
}

/** key → owner: the owner header when it names a member of one of the route's pools, else the member that served. */
function learn(x: Exchange, r: Resolution, ownerValue: string | undefined): void {
  let owner = r.member.id;
  if (ownerValue !== undefined) {
    const id = memberId(ownerValue.trim());
    if (id !== undefined && x.route.poolOf(id)) owner = id;
  }
  // Every answer renews the lease (cheap when nothing changed), so a key in use never expires.
  x.route.affinity?.set(x.affKey!, owner);
}
