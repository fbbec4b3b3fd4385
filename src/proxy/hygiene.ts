/**
 * Request-hygiene phase: turns the client's head into the request homing forwards, or refuses it.
 * One set of rules for plain requests and upgrades: header count, request-target (origin-form or
 * absolute-form, dot segments resolved, no fragment), exactly one valid Host, only a single
 * `chunked` Transfer-Encoding (and none on HTTP/1.0, which has no chunked framing), `Expect` only
 * `100-continue`; hop-by-hop, internal and underscore-spelled headers removed, then the
 * forwarding headers set (`X-Forwarded-*`, `Via`, `X-Request-Id`). Every refusal here closes the
 * connection: the client broke the protocol, and for framing faults the next request's boundary
 * is unknown.
 */
import { randomBytes } from 'node:crypto';
import type { BlockList } from 'node:net';
import type { ClientHead, Refusal, RequestHead } from './context.js';
import { refusal } from './context.js';
import { MAX_HEADER_COUNT, forwarding, upstreamHead } from './headers.js';
import { parseTarget, routingHost } from './path.js';
import { newSpanId, newTraceId, sampledFlag, validTraceparent } from './trace.js';

export interface HygieneOptions {
  /** Request headers never forwarded (lower-case): principal metadata, backend-protocol headers. */
  readonly dropRequestHeaders: ReadonlySet<string>;
  /** Peers whose X-Forwarded-* homing keeps (listen.trustedProxies); undefined: trust no one. */
  readonly trustedProxies?: BlockList;
  /**
   * `tracing` configured: homing is a hop of the W3C trace. A valid traceparent keeps its trace id
   * (and flags) and gets homing's span id as the member's parent, its tracestate passed on; without
   * one (or with an invalid one) a new trace starts, sampled with probability `sample`.
   */
  readonly tracing?: { readonly sample: number };
}

/** X-Request-Id for requests without a valid one: a random per-process prefix and a counter (unique, no crypto per request). */
const REQUEST_ID_PREFIX = randomBytes(8).toString('hex');
let requestCounter = 0;
export function nextRequestId(): string {
  return `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`;
}

export function requestHygiene(c: ClientHead, o: HygieneOptions): RequestHead | Refusal {
  const raw = c.rawHeaders;
  if (raw.length / 2 > MAX_HEADER_COUNT) return refusal('HOMING_ERR_HEADERS_TOO_LARGE', `more than ${MAX_HEADER_COUNT} header lines`, true);
  const target = parseTarget(c.url);
  if (!target) return refusal('HOMING_ERR_BAD_REQUEST', 'invalid request target', true);
  // One pass over the raw headers.
  const tracing = o.tracing;
  const head = upstreamHead(raw, o.dropRequestHeaders, tracing !== undefined);
  const rawHost = target.authority ?? head.host;
  if (rawHost === undefined) return refusal('HOMING_ERR_BAD_REQUEST', 'missing Host header', true);
  if (head.hostCount > 1) return refusal('HOMING_ERR_BAD_REQUEST', 'more than one Host header', true);
  const host = routingHost(rawHost);
  if (host === undefined) return refusal('HOMING_ERR_BAD_REQUEST', 'invalid Host header', true);
  const te = head.transferEncoding;
  if (te !== undefined) {
    if (te.trim().toLowerCase() !== 'chunked') return refusal('HOMING_ERR_BAD_REQUEST', 'unsupported Transfer-Encoding (only a single chunked)', true);
    // HTTP/1.0 has no chunked framing: a Transfer-Encoding there means the framing is faulty (RFC 9112 §6.1).
    if (c.httpMinor === 0) return refusal('HOMING_ERR_BAD_REQUEST', 'Transfer-Encoding in an HTTP/1.0 request', true);
  }
  if (head.badExpect) return refusal('HOMING_ERR_EXPECTATION_FAILED', 'only Expect: 100-continue is supported', true);
  const cl = head.contentLength === undefined ? undefined : Number(head.contentLength);
  // An upgrade hands the connection over after the head: a body before it has no place to go.
  if (c.upgrade && (te !== undefined || (cl !== undefined && cl > 0))) return refusal('HOMING_ERR_BAD_REQUEST', 'an upgrade request carries no body', true);
  const headers = head.headers;
  if (target.authority !== undefined) {
    // Absolute-form: the target's authority is the host (RFC 9112 §3.2.2).
    let replaced = false;
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i]!.toLowerCase() === 'host') {
        headers[i + 1] = target.authority;
        replaced = true;
      }
    }
    if (!replaced) headers.push('host', target.authority);
  }
  const proto = c.upgrade ? (c.proto === 'https' ? 'wss' : 'ws') : c.proto;
  const fwd = forwarding(head, c.remoteAddress, proto, rawHost, o.trustedProxies);
  const requestId = head.requestId ?? nextRequestId();
  headers.push(
    'x-forwarded-for', fwd.for,
    'x-forwarded-proto', fwd.proto,
    'x-forwarded-host', fwd.host,
    'via', head.via === undefined ? '1.1 homing' : `${head.via}, 1.1 homing`,
    'x-request-id', requestId,
  );
  if (c.upgrade) headers.push('connection', 'Upgrade', 'upgrade', 'websocket');
  const tp = head.traceparent;
  const valid = tp !== undefined && validTraceparent(tp);
  let traceId = valid ? tp.slice(3, 35) : undefined;
  let spanId: string | undefined;
  let sampled = valid && sampledFlag(tp);
  if (tracing !== undefined) {
    spanId = newSpanId();
    let flags: string;
    if (valid) flags = tp.slice(53, 55);
    else {
      traceId = newTraceId();
      sampled = tracing.sample >= 1 || (tracing.sample > 0 && Math.random() < tracing.sample);
      flags = sampled ? '01' : '00';
    }
    headers.push('traceparent', `00-${traceId}-${spanId}-${flags}`);
    if (valid && head.tracestate !== undefined) headers.push('tracestate', head.tracestate);
  }
  return {
    method: c.method, uri: target.uri, path: target.path, host, proto: c.proto, headers, contentLength: cl, chunked: te !== undefined,
    arrived: c.arrived, requestId, client: fwd.client, httpMinor: c.httpMinor, rawHeaders: raw,
    traceId, spanId, parentId: valid && tracing !== undefined ? tp.slice(36, 52) : undefined, sampled,
  };
}
