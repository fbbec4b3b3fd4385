/**
 * Request-target handling: routing (and any path rule) uses the normalised path; the upstream URL is
 * the configured member origin plus this path, never `new URL(req.url, base)`.
 */

export interface Target {
  /** Normalised path (no query). */
  path: string;
  /** Normalised path plus the original query, as forwarded. */
  uri: string;
  /** Authority of an absolute-form target, which replaces the Host header (RFC 9112 §3.2.2). */
  authority?: string;
}

/** Dot segments resolved, repeated slashes merged, %2e decoded; undefined when it climbs above the root. */
export function normalizePath(path: string): string | undefined {
  const p = path.replace(/%2e/gi, '.');
  const segs = p.split('/');
  const out: string[] = [];
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i]!;
    if (s === '.' || (s === '' && i < segs.length - 1)) continue;
    if (s === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      continue;
    }
    out.push(s);
  }
  const last = segs[segs.length - 1];
  let res = '/' + out.join('/');
  if ((last === '.' || last === '..') && !res.endsWith('/')) res += '/';
  return res;
}

const NEEDS_NORMALISING = /\/\.|\/\/|%2e/i;

/** Parse a request-target; undefined when it is not origin-form or a usable absolute-form. */
export function parseTarget(url: string): Target | undefined {
  let authority: string | undefined;
  let rest = url;
  if (url.charCodeAt(0) !== 47 /* / */) {
    const m = /^https?:\/\/([^/?#@\s]+)(\/[^#]*)?$/i.exec(url);
    if (!m) return undefined;
    authority = m[1]!;
    rest = m[2] ?? '/';
  }
  const q = rest.indexOf('?');
  let path = q < 0 ? rest : rest.slice(0, q);
  if (path.includes('#')) return undefined;
  if (NEEDS_NORMALISING.test(path)) {
    const n = normalizePath(path);
    if (n === undefined) return undefined;
    path = n;
    rest = q < 0 ? n : n + rest.slice(q);
  }
  return authority === undefined ? { path, uri: rest } : { path, uri: rest, authority };
}

/** Host header → routing host: lower-case, port removed; undefined when malformed. */
export function routingHost(host: string): string | undefined {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return undefined;
    const after = h.slice(end + 1);
    if (after && !/^:\d{1,5}$/.test(after)) return undefined;
    return h.slice(0, end + 1);
  }
  const c = h.indexOf(':');
  if (c >= 0) {
    if (!/^\d{1,5}$/.test(h.slice(c + 1))) return undefined;
    h = h.slice(0, c);
  }
  if (!/^[a-z0-9.\-_]*$/.test(h)) return undefined;
  return h;
}
