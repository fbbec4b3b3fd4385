/**
 * Log phase: what one exchange leaves behind — request counters and latency per route and member
 * for a member's answer, an error counter (and a warning once a member was involved) for an
 * answer homing gave itself.
 */
import type { ErrorCode } from '../errors.js';
import type { Route } from '../routing/route.js';
import type { Exchange, PipelineDeps } from './exchange.js';

/** A member answered `status` (its head arrived). */
export function logAnswer(x: Exchange, status: number): void {
  const r = x.resolution!;
  x.deps.metrics.request(x.route.name, r.member.id, status);
  x.deps.metrics.latency(x.route.name, r.member.id, (performance.now() - x.started) / 1000);
}

/** homing answered `code` itself. */
export function logError(deps: PipelineDeps, route: Route | undefined, code: ErrorCode, message: string, x?: Exchange): void {
  deps.metrics.errors.labels(route?.name ?? '', code).inc();
  const member = x?.resolution?.member.id;
  if (member !== undefined && code !== 'HOMING_ERR_NO_LIVE_MEMBER') deps.log.warn({ route: route?.name, member, code }, message);
}
