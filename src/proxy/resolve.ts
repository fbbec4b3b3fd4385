/**
 * Resolve phase: the member (and pool) for this attempt, from the route's one resolver — learned
 * affinity → directory → hash → balance. Synchronous when every tier is warm; a promise only when
 * a shared tier must be asked. The first answer of a request with an affinity key counts as an
 * affinity hit or miss.
 */
import { isResolution, type MaybePromise } from '../routing/route.js';
import type { ResolveResult } from '../routing/strategy.js';
import type { Exchange } from './exchange.js';

export function resolveTarget(x: Exchange): MaybePromise<ResolveResult> {
  const span = x.span;
  if (span === undefined) return x.route.resolve(x.view, 'request', x.attempt, x.tried, x.affKey);
  // A sampled request with spans exported: the resolution is a span of its own.
  const started = performance.now();
  const r = x.route.resolve(x.view, 'request', x.attempt, x.tried, x.affKey);
  if (!(r instanceof Promise)) {
    span.resolved(started, r);
    return r;
  }
  return r.then((v) => {
    span.resolved(started, v);
    return v;
  });
}

/** Affinity hit/miss of a request's first resolution. */
export function countAffinity(x: Exchange, r: ResolveResult): void {
  const obs = x.deps.affinity;
  if (obs === undefined || x.affKey === undefined || x.attempt !== 0 || x.hops !== 0 || !isResolution(r)) return;
  if (r.by === 'affinity') obs.hit(x.route);
  else obs.miss(x.route);
}
