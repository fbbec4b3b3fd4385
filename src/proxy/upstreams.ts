/**
 * Keep-alive connection pools to members: one per member and set of connection options (a pool's
 * `connections` and `keepAliveTimeout`, a route's `timeouts.connect`), so routes that share members
 * keep their own options. undici's Pool (`engine: node`) or the fast engine's (`engine: fast`,
 * src/proxy/fast/pool.ts); both are undici Dispatchers, driven alike. Created on first use,
 * closed when the member leaves.
 */
import { Pool as UndiciPool, type Dispatcher } from 'undici';
import type { Member } from '../members/member.js';
import { FastPool } from './fast/pool.js';

/** What homing uses of a member's pool, whichever engine. */
export interface UpstreamPool extends Pick<Dispatcher, 'request'> {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

export interface UpstreamOptions {
  /** Keep-alive connections per member; size for peak concurrency (fewer churns connections under load). */
  readonly connections: number;
  readonly keepAliveTimeout: number;
  readonly connectTimeout: number;
  /** The three above as one string: pools with equal options are shared. */
  readonly key: string;
}

export function upstreamOptions(connections: number, keepAliveTimeout: number, connectTimeout: number): UpstreamOptions {
  return { connections, keepAliveTimeout, connectTimeout, key: `${connections}/${keepAliveTimeout}/${connectTimeout}` };
}

export class Upstreams {
  /** member id → options key → pool. */
  private readonly pools = new Map<string, Map<string, UpstreamPool>>();

  /** `fast`: the fast engine's pools (set before the first request). */
  constructor(public engine: 'node' | 'fast' = 'node') {}

  get(member: Member, opts: UpstreamOptions): UpstreamPool {
    let byOpts = this.pools.get(member.id);
    if (!byOpts) {
      byOpts = new Map();
      this.pools.set(member.id, byOpts);
    }
    let p = byOpts.get(opts.key);
    if (!p && this.engine === 'fast') {
      p = new FastPool(member.host, member.port, opts);
      byOpts.set(opts.key, p);
    } else if (!p) {
      const u = new UndiciPool(`http://${member.id}`, {
        connections: opts.connections,
        pipelining: 1,
        keepAliveTimeout: opts.keepAliveTimeout,
        keepAliveMaxTimeout: Math.max(opts.keepAliveTimeout, 1000),
        connect: { timeout: opts.connectTimeout, noDelay: true },
        maxHeaderSize: 16384,
        // Timeouts are per request (route config).
        headersTimeout: 0,
        bodyTimeout: 0,
      });
      // A pool error with no request attached must never crash the process.
      u.on('connectionError', () => {});
      byOpts.set(opts.key, u);
      p = u;
    }
    return p;
  }

  /**
   * `pool` saw a member reset a connection: its idle sockets to that member are likely dead too
   * (the member restarted, or dropped its keep-alive connections), so the next request must not
   * draw another. An undici pool is swapped for a fresh one (only if it is still the current one,
   * so a burst of failures swaps once) and closed gracefully: requests on it finish.
   */
  discard(member: Member, opts: UpstreamOptions, pool: UpstreamPool): void {
    // The fast engine's pool keeps its limit: its idle connections go, the busy ones finish.
    if (pool instanceof FastPool) return pool.discardIdle();
    const byOpts = this.pools.get(member.id);
    if (byOpts?.get(opts.key) !== pool) return;
    byOpts.delete(opts.key);
    void pool.close().catch(() => {});
  }

  /**
   * Close pools of members no longer in `keep` (ids) and, when `options` is given, pools whose
   * option set (`UpstreamOptions.key`) is not in it (a reload changed a pool's or route's
   * options). Closing is graceful: requests on a closed pool finish; a request that still sends to
   * the member (one routed before a reload) gets a new pool.
   */
  retain(keep: ReadonlySet<string>, options?: ReadonlySet<string>): void {
    for (const [id, byOpts] of this.pools) {
      for (const [key, p] of byOpts) {
        if (keep.has(id) && (options === undefined || options.has(key))) continue;
        byOpts.delete(key);
        void p.close().catch(() => {});
      }
      if (byOpts.size === 0) this.pools.delete(id);
    }
  }

  /** Number of undici pools open (one per member and option set). */
  get size(): number {
    let n = 0;
    for (const byOpts of this.pools.values()) n += byOpts.size;
    return n;
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()].flatMap((m) => [...m.values()]);
    this.pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => {})));
  }
}
