/**
 * `discovery: { dns: { name, type, port, interval } }`: members from DNS, re-resolved every
 * `interval`.
 *
 * - `A` / `AAAA`: one member per address, on the configured `port` (required), weight 1.
 * - `SRV`: one member per record of the lowest priority (RFC 2782: higher priorities are
 *   backups, and a pool has no notion of backup tiers, so they are left out); host is the target
 *   name as published (resolved by the proxy when it connects), port from the record, weight the
 *   record's weight clamped to 1..1000.
 *
 * A failed look-up (SERVFAIL, timeout, NXDOMAIN) keeps the last good list: a flapping resolver
 * must not empty a pool.
 */
import { Resolver } from 'node:dns/promises';
import type { MemberSpec } from '../members/pool.js';
import { ReloadingSource } from './source.js';

export type DnsRecordType = 'A' | 'AAAA' | 'SRV';

export interface DnsSourceOptions {
  name: string;
  type: DnsRecordType;
  /** Member port for A/AAAA (required there); ignored for SRV. */
  port?: number;
  /** Re-resolve period in ms. */
  intervalMs: number;
  /** Name servers (`ip` or `ip:port`); default: the system's. */
  servers?: string[];
  /** Per-query timeout in ms (c-ares retries on top). Default 2000. */
  timeoutMs?: number;
}

export class DnsSource extends ReloadingSource {
  private readonly resolver: Resolver;

  constructor(private readonly opts: DnsSourceOptions) {
    if (!(opts.intervalMs > 0)) throw new Error(`DnsSource: intervalMs must be > 0, got ${opts.intervalMs}`);
    if (opts.type !== 'SRV' && opts.port === undefined) {
      throw new Error(`discovery.dns: port is required for ${opts.type} records (only SRV records carry a port)`);
    }
    super(opts.intervalMs);
    this.resolver = new Resolver({ timeout: opts.timeoutMs ?? 2000, tries: 2 });
    if (opts.servers) this.resolver.setServers(opts.servers);
  }

  protected async load(): Promise<MemberSpec[]> {
    const { name, type } = this.opts;
    try {
      if (type === 'SRV') {
        const records = await this.resolver.resolveSrv(name);
        if (records.length === 0) throw new Error('no SRV records');
        const best = Math.min(...records.map((r) => r.priority));
        return records
          .filter((r) => r.priority === best)
          .map((r) => ({ host: r.name.replace(/\.$/, ''), port: r.port, weight: Math.min(1000, Math.max(1, r.weight)) }));
      }
      const addrs = type === 'A' ? await this.resolver.resolve4(name) : await this.resolver.resolve6(name);
      if (addrs.length === 0) throw new Error(`no ${type} records`);
      return addrs.map((host) => ({ host, port: this.opts.port!, weight: 1 }));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new Error(`discovery dns ${type} ${name}: ${err.code ?? err.message}`, { cause: e });
    }
  }

  protected override async beforeStop(): Promise<void> {
    this.resolver.cancel();
  }
}
