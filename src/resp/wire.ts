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

/** The routes SELECT picks from, in order, as the config in force says (a reload may change them). */
function respRoutes(cfg: Runtime['config']): readonly string[] {
  const resp = cfg.resp;
  return resp ? (resp.routes ?? [resp.route!]) : [];
}

export function runtimeRespBackend(rt: Runtime): RespBackend {
  // Worked out once per config, not per command.
  let of = rt.config;
  let routes = respRoutes(of);
  return {
    get routes() {
      if (rt.config !== of) routes = respRoutes((of = rt.config));
      return routes;
    },
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
        homing: { homing_version: VERSION, routes: respRoutes(rt.config).join(','), pools: [...rt.pools.keys()].join(',') },
      };
    },
  };
}
