/**
 * The backend redirect: `<prefix><host:port>/<path>[?query]` → a member of one of the route's
 * pools and the URI to re-send. Anything else is refused: homing must never become an open proxy
 * for a compromised or buggy backend (a redirect to 169.254.169.254, 127.0.0.1 or any address
 * outside the pools is answered 502 and logged).
 */
import type { ErrorCode } from '../errors.js';
import type { Member } from '../members/member.js';
import type { Pool } from '../members/pool.js';
import type { Route } from '../routing/route.js';
import { formatHostPort, parseHostPort } from '../config/units.js';
import { refusal, type Refusal } from './context.js';
import type { Exchange } from './exchange.js';
import { parseTarget } from './path.js';

export interface RedirectTarget {
  member: Member;
  pool: Pool;
  uri: string;
}

export interface RedirectRefusal {
  error: ErrorCode;
  message: string;
  /** The address named, when it was a well-formed host:port outside the pool (worth a log line). */
  outside?: string;
}

/** `host:port` → canonical member id, or undefined when it is not one. */
export function memberId(s: string): string | undefined {
  if (s.length > 300 || /[\s\0]/.test(s)) return undefined;
  try {
    const hp = parseHostPort(s);
    return formatHostPort(hp.host, hp.port);
  } catch {
    return undefined;
  }
}

export function parseRedirect(value: string, prefix: string, route: Route): RedirectTarget | RedirectRefusal {
  const bad: RedirectRefusal = { error: 'HOMING_ERR_REDIRECT_TARGET', message: 'backend redirect has an invalid target' };
  // Only visible ASCII in a target homing turns into a request line (no CR/LF/NUL smuggled in).
  if (!value.startsWith(prefix) || /[\x00-\x20\x7f-\uffff]/.test(value)) return bad;
  const rest = value.slice(prefix.length);
  const slash = rest.indexOf('/');
  const q = rest.indexOf('?');
  const end = slash >= 0 && (q < 0 || slash < q) ? slash : q >= 0 ? q : rest.length;
  const id = memberId(rest.slice(0, end));
  let uri = rest.slice(end);
  if (uri === '' || uri[0] === '?') uri = '/' + uri;
  const t = parseTarget(uri);
  if (id === undefined || !t || t.authority !== undefined) return bad;
  const pool = route.poolOf(id);
  const member = pool?.members.get(id);
  if (!pool || !member) {
    const names = route.pools.map((p) => `"${p.name}"`).join(', ');
    return { error: 'HOMING_ERR_REDIRECT_TARGET', message: `backend redirect to ${id}, which is not a member of ${route.pools.length > 1 ? 'pools' : 'pool'} ${names}`, outside: id };
  }
  return { member, pool, uri: t.uri };
}

/**
 * The next hop of a followed redirect, or why not: a target outside the route's pools (logged),
 * more than `maxHops`, a loop back to a member already visited, or a body that cannot be re-sent.
 * A followed hop is counted and teaches the owner at once, so a client that leaves mid-way still
 * teaches (the answer that follows confirms or corrects it).
 */
export function nextHop(x: Exchange, value: string): RedirectTarget | Refusal {
  const route = x.route;
  const aff = route.config.affinity!;
  const cfg = aff.redirect!;
  const from = x.resolution!.member;
  const r = parseRedirect(value, cfg.prefix, route);
  if ('error' in r) {
    if (r.outside !== undefined) x.deps.log.warn({ route: route.name, from: from.id, target: r.outside }, 'refused backend redirect to an address outside the pool');
    return refusal(r.error, r.message);
  }
  (x.visited ??= new Set()).add(from);
  x.hops++;
  if (x.hops > cfg.maxHops) return refusal('HOMING_ERR_REDIRECT_LOOP', `more than ${cfg.maxHops} backend redirects`);
  if (x.visited.has(r.member)) return refusal('HOMING_ERR_REDIRECT_LOOP', `backend redirects loop back to ${r.member.id}`);
  if (!x.replayable) return refusal('HOMING_ERR_REDIRECT_BODY_TOO_LARGE', `backend redirect needs the request body re-sent, and it is larger than maxReplayBody (${aff.maxReplayBody} bytes)`);
  // Counted once followed, one call per hop with its rank (the hop histogram relies on it).
  x.deps.affinity?.redirect(route, x.hops);
  if (x.affKey !== undefined) route.affinity?.set(x.affKey, r.member.id);
  return r;
}
