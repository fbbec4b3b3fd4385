/**
 * Header rules of the proxy: hop-by-hop headers removed both ways, client-nominated
 * hop-by-hop headers removed before homing adds its own, forwarding headers overwritten (the
 * upstream sees exactly one copy), underscore spellings dropped (like nginx), CR/LF/NUL refused.
 */

/** Header lines accepted per request; the listener keeps one more (server.maxHeadersCount) so an excess shows. */
export const MAX_HEADER_COUNT = 1000;

/** 16 KiB head limit (request and response), as Node's and undici's defaults; 431 above it for a client. */
export const MAX_HEADER_SIZE = 16 * 1024;

/** RFC 9110 §7.6.1 hop-by-hop headers, plus ones undici refuses to forward. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings',
]);
export const HOP_BY_HOP_MASK = lengthMask(HOP_BY_HOP);

/**
 * A header name's length as one bit of a 32-bit mask (31 and longer share the top bit): a name
 * whose length is in no mask of the names looked for is none of them, with no lower-casing or
 * hashing. Most of a head's lines (Content-Type, Content-Length, Date…) are told apart this way.
 */
export function lengthBit(length: number): number {
  return 1 << (length < 31 ? length : 31);
}

/** The length mask of `names`. */
export function lengthMask(names: Iterable<string>): number {
  let m = 0;
  for (const n of names) m |= lengthBit(n.length);
  return m;
}

const masks = new WeakMap<ReadonlySet<string>, number>();
/**
 * `lengthMask` of a set, computed once per set: the set must not change after its first use (the
 * header sets of a config generation are built once, before any request).
 */
export function setLengthMask(names: ReadonlySet<string>): number {
  let m = masks.get(names);
  if (m === undefined) masks.set(names, (m = lengthMask(names)));
  return m;
}

/** Headers homing sets itself on the way up; a client's copies are dropped. */
export const FORWARDING: ReadonlySet<string> = new Set([
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip', 'x-request-id', 'x-homing', 'via',
]);

/** Headers a client's `Connection` may never nominate away. */
const PROTECTED = new Set(['host', 'content-length', 'transfer-encoding', 'authorization', 'cookie', ...FORWARDING]);

/** Tokens of a Connection header that nominate extra hop-by-hop headers (not close/keep-alive/upgrade). */
export function nominatedHeaders(value: string, into: Set<string>): void {
  // Fast path: the values nearly every peer sends nominate nothing.
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return;
  }
  for (const t of value.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok && tok !== 'close' && tok !== 'keep-alive' && tok !== 'upgrade' && !PROTECTED.has(tok)) into.add(tok);
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:\-/+=]{1,128}$/;
export function validRequestId(v: string | undefined): v is string {
  return v !== undefined && REQUEST_ID.test(v);
}

export interface UpstreamHead {
  /** Flat [name, value, name, value…] list for undici. */
  headers: string[];
  /** The client's Host header (original case and port), if exactly one. */
  host: string | undefined;
  /** Number of Host headers seen (more than one is a 400). */
  hostCount: number;
  /** Client's X-Request-Id when valid. */
  requestId: string | undefined;
  /** Client's Via, to append to. */
  via: string | undefined;
  /** An `Expect` other than 100-continue. */
  badExpect: boolean;
  /** The client's Content-Length, if any (Node has already refused conflicting copies). */
  contentLength: string | undefined;
  /** The client's Transfer-Encoding, every line joined with ", " (hop-by-hop: not forwarded). */
  transferEncoding: string | undefined;
  /** The client's X-Forwarded-For / -Proto / -Host: used only when the peer is a trusted proxy. */
  forwardedFor: string | undefined;
  forwardedProto: string | undefined;
  forwardedHost: string | undefined;
  /** The client's traceparent; `MULTIPLE` when it sent more than one (an invalid trace context). */
  traceparent: string | undefined;
  /** The client's tracestate, every line joined with ",". */
  tracestate: string | undefined;
}

/** `UpstreamHead.traceparent` when the client sent several: none of them is continued. */
export const MULTIPLE = '';

/**
 * Copy the client's headers for the upstream request, minus hop-by-hop, forwarding, internal
 * (`drop`, lower-case) and underscore-spelled headers. Forwarding headers are appended by the caller;
 * with `ownTrace` so are traceparent and tracestate (homing is a hop of the trace), else they pass.
 */
export function upstreamHead(raw: readonly string[], drop: ReadonlySet<string>, ownTrace = false): UpstreamHead {
  const out: string[] = [];
  let host: string | undefined;
  let hostCount = 0;
  let requestId: string | undefined;
  let via: string | undefined;
  let nominated: Set<string> | undefined;
  let badExpect = false;
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  let forwardedHost: string | undefined;
  let traceparent: string | undefined;
  let tracestate: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      hostCount++;
      host = value;
      out.push(name, value);
      continue;
    }
    if (lower === 'content-length') contentLength = value;
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') nominatedHeaders(value, (nominated ??= new Set()));
      else if (lower === 'transfer-encoding') transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
      continue;
    }
    if (FORWARDING.has(lower)) {
      if (lower === 'x-request-id') requestId = value;
      else if (lower === 'via') via = via === undefined ? value : `${via}, ${value}`;
      else if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      else if (lower === 'x-forwarded-proto') forwardedProto ??= value;
      else if (lower === 'x-forwarded-host') forwardedHost ??= value;
      continue;
    }
    if (lower === 'expect') {
      if (value.trim().toLowerCase() !== '100-continue') badExpect = true;
      continue;
    }
    if (lower === 'traceparent') {
      traceparent = traceparent === undefined ? value : MULTIPLE;
      if (ownTrace) continue;
    } else if (lower === 'tracestate') {
      tracestate = tracestate === undefined ? value : `${tracestate},${value}`;
      if (ownTrace) continue;
    }
    if (name.includes('_') || drop.has(lower)) continue;
    out.push(name, value);
  }
  if (nominated && nominated.size) {
    const kept: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!nominated.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
    return { headers: kept, host, hostCount, requestId: validRequestId(requestId) ? requestId : undefined, via, badExpect, contentLength, transferEncoding, forwardedFor, forwardedProto, forwardedHost, traceparent, tracestate };
  }
  return { headers: out, host, hostCount, requestId: validRequestId(requestId) ? requestId : undefined, via, badExpect, contentLength, transferEncoding, forwardedFor, forwardedProto, forwardedHost, traceparent, tracestate };
}

/**
 * The upstream's response headers for the client: hop-by-hop (and those its Connection nominates)
 * and internal ones (`drop`, lower-case) removed. Set-Cookie lines stay separate.
 */
export function downstreamHeaders(raw: readonly Buffer[], drop: ReadonlySet<string>): string[] {
  const out: string[] = [];
  let nominated: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString();
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') nominatedHeaders(raw[i + 1]!.toString('latin1'), (nominated ??= new Set()));
      continue;
    }
    if (drop.has(lower)) continue;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (nominated && nominated.size) {
    const kept: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!nominated.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
    return kept;
  }
  return out;
}

/** Value of a header in undici's raw Buffer list (case-insensitive name, lower-case), or undefined. */
export function rawHeader(raw: readonly Buffer[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === lowerName.length && n.toString().toLowerCase() === lowerName) return raw[i + 1]!.toString('latin1');
  }
  return undefined;
}

export interface Forwarding {
  for: string;
  proto: string;
  host: string;
  /** The client's address: the peer, or the last address a trusted proxy appended to X-Forwarded-For. */
  client: string;
}

/**
 * X-Forwarded-* values for the upstream. From an untrusted peer the client's copies are replaced
 * (the member sees one copy, homing's; a client cannot forge its address); from a trusted proxy (homing behind nginx/HAProxy/a cloud LB) its chain is kept
 * and the peer appended, and its proto/host are believed.
 */
export function forwarding(head: UpstreamHead, remoteAddress: string, proto: string, host: string, trusted: { check(ip: string, type: 'ipv4' | 'ipv6'): boolean } | undefined): Forwarding {
  const remote = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
  if (trusted && remote && trusted.check(remote, remote.includes(':') ? 'ipv6' : 'ipv4')) {
    const last = head.forwardedFor?.slice(head.forwardedFor.lastIndexOf(',') + 1).trim();
    return {
      for: head.forwardedFor ? `${head.forwardedFor}, ${remote}` : remote,
      proto: head.forwardedProto && /^(https?|wss?)$/i.test(head.forwardedProto.trim()) ? head.forwardedProto.trim().toLowerCase() : proto,
      host: head.forwardedHost && !/[\s,]/.test(head.forwardedHost) ? head.forwardedHost : host,
      client: last || remote,
    };
  }
  return { for: remote, proto, host, client: remote };
}
