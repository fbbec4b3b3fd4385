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
  /** Headers for the member: hop-by-hop and internal ones removed, forwarding ones added. */
  readonly headers: string[];
  /** Declared body length; undefined when none was declared. */
  readonly contentLength: number | undefined;
  /** The body comes chunked (length unknown). */
  readonly chunked: boolean;
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
