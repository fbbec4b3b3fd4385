/**
 * The RESP router's view of a runtime: every answer comes from the same Route.resolve the
 * HTTP proxy and the admin look-up use, so the three can never disagree.
 */
import type { Runtime } from '../runtime.js';
import { isResolution } from '../routing/route.js';
import type { ResolveResult } from '../routing/strategy.js';
import type { RespBackend } from './backend.js';
import { VERSION } from '../version.js';

function idOf(r: ResolveResult): string | null {
  return isResolution(r) ? r.member.id : null;
}

export function runtimeRespBackend(rt: Runtime): RespBackend {
  const resp = rt.config.resp!;
  const routes = resp.routes ?? [resp.route!];
  return {
    routes,
    lookup(route: string, key: string) {
      const r = rt.route(route);
      if (!r) throw new Error(`unknown route '${route}'`);
      const d = r.resolve(key, 'lookup');
      return d instanceof Promise ? d.then(idOf) : idOf(d);
    },
    members(pool?: string) {
      if (pool === undefined) return [...rt.pools.values()].flatMap((p) => p.live.members.map((m) => m.id));
      return rt.pools.get(pool)?.live.members.map((m) => m.id);
    },
    info() {
      return {
        homing: { homing_version: VERSION, routes: routes.join(','), pools: [...rt.pools.keys()].join(',') },
      };
    },
  };
}
