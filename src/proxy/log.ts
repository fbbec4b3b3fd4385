/**
 * Log phase: what one exchange leaves behind — request counters and latency per route and member
 * for a member's answer, an error counter (and a warning once a member was involved) for an
 * answer homing gave itself, and, once the request is over, its access-log line and its span.
 */
import { performance } from 'node:perf_hooks';
import type { ErrorCode } from '../errors.js';
import type { Route } from '../routing/route.js';
import type { ClientHead, RequestHead } from './context.js';
import type { Exchange, PipelineDeps } from './exchange.js';

/** A member answered `status` (its head arrived). */
export function logAnswer(x: Exchange, status: number): void {
  const r = x.resolution!;
  x.status = status;
  x.deps.metrics.request(x.route.name, r.member.id, status);
  x.deps.metrics.latency(x.route.name, r.member.id, (performance.now() - x.started) / 1000);
}

/** homing answered `code` itself. */
export function logError(deps: PipelineDeps, route: Route | undefined, code: ErrorCode, message: string, x?: Exchange): void {
  deps.metrics.errors.labels(route?.name ?? '', code).inc();
  const member = x?.resolution?.member.id;
  if (member !== undefined && code !== 'HOMING_ERR_NO_LIVE_MEMBER') deps.log.warn({ route: route?.name, member, code }, message);
}

/** Who cut a request short: the client went away, or the member's answer failed part-way. */
export type Aborted = 'client' | 'upstream' | undefined;

/**
 * A routed request is over (its answer written, or the connection gone): its access-log line,
 * then its span. `status` is what the client was sent (499 when it left before any answer).
 */
export function logEnd(x: Exchange, status: number, bytesIn: number, bytesOut: number, aborted: Aborted): void {
  const span = x.span;
  if (span !== undefined) {
    x.span = undefined;
    span.end(status, x.errorCode, aborted);
  }
  const a = x.deps.access;
  if (a === undefined) return;
  const head = x.head;
  const ms = performance.now() - head.arrived;
  if (!a.admits(ms, x.errorCode)) return;
  const e = a.entry.reset();
  e.requestId = head.requestId;
  e.traceId = head.traceId;
  e.client = head.client;
  e.method = head.method;
  e.path = head.path;
  e.uri = head.uri;
  e.httpMinor = head.httpMinor;
  e.rawHeaders = head.rawHeaders;
  e.status = status;
  e.bytesIn = bytesIn;
  e.bytesOut = bytesOut;
  if (x.sentAt > 0) e.upstreamMs = (x.endedAt > x.sentAt ? x.endedAt : performance.now()) - x.sentAt;
  e.route = x.route.name;
  const r = x.resolution;
  if (r !== undefined) {
    e.pool = r.pool.name;
    e.member = r.member.id;
    e.by = r.by;
  }
  e.cache = x.cacheOutcome ?? 'bypass';
  e.hops = x.hops;
  e.error = x.errorCode;
  e.aborted = aborted;
  a.write(ms);
}

/**
 * A request that never became an exchange ended: refused (`code`), or its client left while homing
 * read its body. `head` is the forwarded head when hygiene passed, `route` when one matched.
 */
export function logUnrouted(deps: PipelineDeps, c: ClientHead, head: RequestHead | undefined, route: Route | undefined, status: number, code: ErrorCode | undefined, bytesOut: number): void {
  const a = deps.access;
  if (a === undefined) return;
  const ms = performance.now() - c.arrived;
  if (!a.admits(ms, code)) return;
  const e = a.entry.reset();
  e.method = c.method;
  e.httpMinor = c.httpMinor;
  e.rawHeaders = c.rawHeaders;
  if (head !== undefined) {
    e.requestId = head.requestId;
    e.traceId = head.traceId;
    e.client = head.client;
    e.path = head.path;
    e.uri = head.uri;
  } else {
    e.client = c.remoteAddress.startsWith('::ffff:') ? c.remoteAddress.slice(7) : c.remoteAddress;
    const q = c.url.indexOf('?');
    e.path = q < 0 ? c.url : c.url.slice(0, q);
    e.uri = c.url;
  }
  e.status = status;
  e.bytesOut = bytesOut;
  e.route = route?.name;
  if (route !== undefined) e.cache = 'bypass';
  e.error = code;
  if (code === undefined) e.aborted = 'client';
  a.write(ms);
}
