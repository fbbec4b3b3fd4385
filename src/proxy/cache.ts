/**
 * Cache look-up phase: a fresh stored answer is given without resolving a member or touching a
 * backend. No route has a cache yet, so every request misses; the phase keeps its place in the
 * pipeline (after match, before resolve) for the response cache.
 */
import type { Exchange } from './exchange.js';

/** A stored answer for the request, or undefined (a miss). */
export function cacheLookup(_x: Exchange): undefined {
  return undefined;
}
