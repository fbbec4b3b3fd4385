/** One undici keep-alive Pool per member, created on first use and closed when the member leaves. */
import { Pool as UndiciPool } from 'undici';
import type { Member } from '../members/member.js';

export interface UpstreamOptions {
  /** Keep-alive connections per member; sized for peak concurrency (BENCHMARKING: no churn at c256). */
  connections: number;
  keepAliveTimeout: number;
  connectTimeout: number;
}

export class Upstreams {
  private readonly pools = new Map<string, UndiciPool>();

  get(member: Member, opts: UpstreamOptions): UndiciPool {
    let p = this.pools.get(member.id);
    if (!p) {
      p = new UndiciPool(`http://${member.id}`, {
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
      p.on('connectionError', () => {});
      this.pools.set(member.id, p);
    }
    return p;
  }

  /** Close pools of members no longer in `keep` (ids). */
  retain(keep: ReadonlySet<string>): void {
    for (const [id, p] of this.pools) {
      if (!keep.has(id)) {
        this.pools.delete(id);
        void p.close().catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => {})));
  }
}
