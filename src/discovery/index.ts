/** Picks the MemberSource for a pool's config: static `members`, or `discovery` by file, DNS, HTTP or etcd. */
import type { PoolConfig } from '../config/schema.js';
import { DnsSource } from './dns.js';
import { EtcdSource } from './etcd.js';
import { FileSource, type FileSourceOptions } from './file.js';
import { HttpSource } from './http.js';
import type { MemberSource } from './source.js';
import { StaticSource } from './static.js';

export type { MemberSource } from './source.js';
export { parseMemberList, ReloadingSource } from './source.js';
export { StaticSource } from './static.js';
export { FileSource, type FileSourceOptions } from './file.js';
export { DnsSource, type DnsSourceOptions, type DnsRecordType } from './dns.js';
export { HttpSource, type HttpSourceOptions } from './http.js';
export { EtcdSource, parseEtcdMember, type EtcdSourceOptions } from './etcd.js';
export { EtcdAnnouncer, type EtcdAnnouncerOptions } from './announce.js';

export interface CreateSourceOptions {
  /** Passed to the file source (tests shorten the poll). */
  file?: FileSourceOptions;
}

/**
 * The source for one pool. `discovery.file` is expected absolute (parseConfig resolves it against
 * the config's directory).
 */
export function createMemberSource(pool: Pick<PoolConfig, 'members' | 'discovery'>, opts: CreateSourceOptions = {}): MemberSource {
  if (pool.members) return new StaticSource(pool.members);
  const d = pool.discovery;
  if (d?.file !== undefined) return new FileSource(d.file, opts.file);
  if (d?.dns) return new DnsSource({ name: d.dns.name, type: d.dns.type, port: d.dns.port, intervalMs: d.dns.interval });
  if (d?.http) return new HttpSource(d.http.url, { intervalMs: d.http.interval });
  if (d?.etcd) return new EtcdSource(d.etcd);
  throw new Error('a pool needs members or discovery');
}
