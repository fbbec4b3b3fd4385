/**
 * Key expressions, compiled once per route into a function. A missing key answers
 * `undefined`: the route then falls through to its next resolver.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** What a key expression may read of a request. Built once per request by the proxy. */
export interface RequestView {
  readonly method: string;
  /** Path and query as forwarded (origin-form). */
  readonly uri: string;
  /** Path without the query. */
  readonly path: string;
  /** Host header, lower-cased, without its port. */
  readonly host: string;
  readonly headers: IncomingHttpHeaders;
  /**
   * One header's value (name lower-case), repeated lines joined like Node does (`; ` for cookie,
   * `, ` otherwise). Cheaper than `headers` when only one is needed: no object of every header.
   */
  header?(lowerName: string): string | undefined;
  /** Match of the route's `pathRegex` on `path`, if it has one. */
  readonly match: RegExpExecArray | null;
}

export type KeyFn = (r: RequestView) => string | undefined;

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') return v.length ? v.join(', ') : undefined;
  return v.length ? v : undefined;
}

/** Value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let i = 0;
  while (i < header.length) {
    let semi = header.indexOf(';', i);
    if (semi < 0) semi = header.length;
    const eq = header.indexOf('=', i);
    if (eq > 0 && eq < semi && header.slice(i, eq).trim() === name) {
      let v = header.slice(eq + 1, semi).trim();
      if (v.length >= 2 && v[0] === '"' && v[v.length - 1] === '"') v = v.slice(1, -1);
      return v.length ? v : undefined;
    }
    i = semi + 1;
  }
  return undefined;
}

/** Value of query parameter `name` (first occurrence, decoded), or undefined. */
export function queryValue(uri: string, name: string): string | undefined {
  const q = uri.indexOf('?');
  if (q < 0) return undefined;
  const params = uri.slice(q + 1).split('&');
  for (const p of params) {
    const eq = p.indexOf('=');
    const k = eq < 0 ? p : p.slice(0, eq);
    if (safeDecode(k.replace(/\+/g, ' ')) === name) {
      const v = eq < 0 ? '' : safeDecode(p.slice(eq + 1).replace(/\+/g, ' '));
      return v ? v : undefined;
    }
  }
  return undefined;
}

/** Headers whose repeated lines Node drops (the first wins) in req.headers. */
const FIRST_WINS = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent']);

/** One header of a raw [name, value, …] list (lower-case name), repeated lines treated like Node's req.headers. */
export function rawHeaderValue(raw: readonly string[], lowerName: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length !== lowerName.length || n.toLowerCase() !== lowerName) continue;
    const v = raw[i + 1]!;
    if (FIRST_WINS.has(lowerName)) return v;
    out = out === undefined ? v : `${out}${lowerName === 'cookie' ? '; ' : ', '}${v}`;
  }
  return out;
}

/** Names after `header:`, `cookie:` and `query:`: RFC 9110 token characters. */
const NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Compile a key expression; throws on an unknown form. The config validation compiles every key
 * with this function, so a key `homing check` accepts is one a route can use. (Whether `path:<n>`
 * has a group n depends on the route's `pathRegex`: the validation checks that too.)
 */
export function compileKey(expr: string): KeyFn {
  switch (expr) {
    case 'host':
      return (r) => r.host || undefined;
    case 'path':
      return (r) => r.path;
    case 'uri':
      return (r) => r.uri;
    case 'method':
      return (r) => r.method;
  }
  const colon = expr.indexOf(':');
  const kind = expr.slice(0, colon);
  const arg = expr.slice(colon + 1);
  if (colon > 0 && NAME.test(arg)) {
    if (kind === 'header') {
      const name = arg.toLowerCase();
      return (r) => (r.header ? r.header(name) || undefined : headerValue(r.headers[name]));
    }
    if (kind === 'cookie') return (r) => cookieValue(r.header ? r.header('cookie') : headerValue(r.headers.cookie), arg);
    if (kind === 'query') return (r) => queryValue(r.uri, arg);
    if (kind === 'path' && /^\d+$/.test(arg)) {
      const n = Number(arg);
      return (r) => {
        const g = r.match?.[n];
        return g === undefined || g === '' ? undefined : safeDecode(g);
      };
    }
  }
  throw new Error(`invalid key expression "${expr}" (host, path, uri, method, header:<name>, cookie:<name>, query:<name>, path:<n>)`);
}
