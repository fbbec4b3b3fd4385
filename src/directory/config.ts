/**
 * What a route's `directory:` config builds: the directory it asks and its table's options. The
 * runtime and the config validation both build from here, so a config `homing check` accepts is
 * one `homing serve` can build.
 */
import type { RouteConfig } from '../config/schema.js';
import type { DirectoryTableOptions } from '../routing/directory/table.js';
import { HttpDirectorySource } from './http.js';
import { RedisDirectorySource } from './redis.js';

export type DirectoryConfig = NonNullable<RouteConfig['directory']>;

/** The directory itself: HTTP (`lookup.url`) or Redis (`lookup.redis`). Throws when the config cannot make one. */
export function createDirectorySource(d: DirectoryConfig, onError?: (err: Error) => void): HttpDirectorySource | RedisDirectorySource {
  return d.lookup.url
    ? new HttpDirectorySource({ url: d.lookup.url, headers: d.lookup.headers, timeout: d.lookup.timeout, respectCacheControl: d.lookup.respectCacheControl })
    : new RedisDirectorySource({ url: d.lookup.redis!.url, keyPrefix: d.lookup.redis!.keyPrefix, timeout: d.lookup.timeout, onError });
}

/** The table's options from the config (the source, validation and observer are the caller's). */
export function directoryTableOptions(d: DirectoryConfig): Pick<DirectoryTableOptions, 'ttl' | 'negativeTtl' | 'staleIfError' | 'refreshAhead' | 'capacity' | 'timeout'> {
  return { ttl: d.ttl, negativeTtl: d.negativeTtl, staleIfError: d.staleIfError, refreshAhead: d.refreshAhead, capacity: d.capacity, timeout: d.lookup.timeout };
}
