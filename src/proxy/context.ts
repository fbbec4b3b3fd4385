/**
 * homing's own types for one request's life, shared by every phase. Phases speak these, never
 * `node:http` or undici objects, so the transport underneath can change without touching them.
 */
import type { ErrorCode } from '../errors.js';
import type { Route } from '../routing/route.js';

/** The client's request head as the transport parsed it. */
export interface ClientHead {
  readonly method: string;
  /** The request-target as received. */
  readonly url: string;
  /** [name, value, name, value…] as received, repeats kept. */
  readonly rawHeaders: readonly string[];
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly httpMinor: number;
  readonly remoteAddress: string;
  /** The listener's scheme. */
  readonly proto: 'http' | 'https';
  /** A websocket upgrade (the transport hands over the socket rather than a response). */
  readonly upgrade: boolean;
  /** performance.now() when the request arrived (the access log's total time). */
  readonly arrived: number;
}

/** The request as homing forwards it (the hygiene phase's answer). */
export interface RequestHead {
  readonly method: string;
  /** Normalised path and original query: what goes on the request line (a redirect replaces it). */
  readonly uri: string;
  /** Normalised path without the query (routing). */
  readonly path: string;
  /** Routing host: lower-case, no port. */
  readonly host: string;
  /** The listener's scheme. */
  readonly proto: 'http' | 'https';
  /** Headers for the member: hop-by-hop and internal ones removed, forwarding ones added. */
  readonly headers: string[];
  /** Declared body length; undefined when none was declared. */
  readonly contentLength: number | undefined;
  /** The body comes chunked (length unknown). */
  readonly chunked: boolean;
  /** performance.now() when the request arrived. */
  readonly arrived: number;
  /** The X-Request-Id homing sends upstream (the client's when valid, else a new one). */
  readonly requestId: string;
  /** The client (the peer, or the address a trusted proxy names in X-Forwarded-For). */
  readonly client: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (the access log's request line). */
  readonly httpMinor: number;
  /** The client's headers as received (what the access log reads: Referer, User-Agent). */
  readonly rawHeaders: readonly string[];
  /**
   * W3C trace context (trace.ts). With `tracing` configured homing is a hop of the trace: `spanId` is
   * its own span (the member's parent), `parentId` the client's span when it sent a valid
   * traceparent. Without it the headers pass through untouched and only `traceId` (a valid incoming
   * one) is kept, for the access log.
   */
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  readonly parentId: string | undefined;
  /** The trace's sampled flag (spans are exported for sampled requests only). */
  readonly sampled: boolean;
}

/** An answer homing gives itself instead of forwarding: a catalogue code, then maybe a close. */
export interface Refusal {
  readonly code: ErrorCode;
  readonly message: string;
  /** Close the connection after the answer (nothing after this request is acted on). */
  readonly close: boolean;
  /** The route, when one was matched (metrics). */
  readonly route?: Route;
}

export function isRefusal(x: object): x is Refusal {
  return (x as Refusal).code !== undefined;
}

export function refusal(code: ErrorCode, message: string, close = false, route?: Route): Refusal {
  return { code, message, close, route };
}
