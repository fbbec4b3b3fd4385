/**
 * The backend redirect (DESIGN §5): `<prefix><host:port>/<path>[?query]` → a member of the route's
 * pool and the URI to re-send. Anything else is refused: homing must never become an open proxy
 * for a compromised or buggy backend (PITFALLS §F 28).
 */
import type { ErrorCode } from '../errors.js';
import type { Member } from '../members/member.js';
import type { Pool } from '../members/pool.js';
import { formatHostPort, parseHostPort } from '../config/units.js';
import { parseTarget } from './path.js';

export interface RedirectTarget {
  member: Member;
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

export function parseRedirect(value: string, prefix: string, pool: Pool): RedirectTarget | RedirectRefusal {
  const bad: RedirectRefusal = { error: 'HOMING_ERR_REDIRECT_TARGET', message: 'backend redirect has an invalid target' };
  // Only visible ASCII in a target homing turns into a request line (PITFALLS §B 12).
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
  const member = pool.members.get(id);
  if (!member) return { error: 'HOMING_ERR_REDIRECT_TARGET', message: `backend redirect to ${id}, which is not a member of pool "${pool.name}"`, outside: id };
  return { member, uri: t.uri };
}
