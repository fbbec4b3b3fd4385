/**
 * The directory's seed: a JSON or YAML map of key → pool name or `host:port`, loaded at start
 * and reloaded when it changes, so known keys are answered without asking the directory:
 *
 *   tenant-a.example.com: pod1
 *   tenant-b.example.com: 10.0.0.7:8080
 *
 * Watched like a member file (the directory holding it, debounced, plus a slow poll: see
 * src/state/watched-file.ts). Values are checked for their form here; whether the pool or member
 * exists is the table's `validate`, applied by table.seed(). Wiring:
 *
 *   await seed.start((entries) => table.seed(entries), (err) => log.warn(err.message));
 *
 * A reload that fails (unreadable, empty, invalid JSON/YAML, a value in neither form, or
 * table.seed() throwing because a value names no known pool) keeps the last good seed and goes
 * to the error callback once; a failure at start rejects `start`.
 */
import { WatchedFile, type WatchedFileOptions } from '../state/watched-file.js';
import { DirectoryKeyError } from '../routing/directory/table.js';
import { parseBareAnswer } from './answer.js';

export type SeedFileOptions = WatchedFileOptions;

export class SeedFile extends WatchedFile<Map<string, string>> {
  constructor(file: string, opts: SeedFileOptions = {}) {
    super(file, opts, { owner: 'SeedFile', what: 'directory seed', started: 'directory seed', emptyHint: 'write {} for an empty seed' });
  }

  protected parse(raw: unknown, where: string): Map<string, string> {
    return parseSeed(raw, where);
  }

  protected fingerprint(entries: Map<string, string>): string {
    return JSON.stringify([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

/** A seed's entries; throws an Error naming `where` and the first bad entry. */
export function parseSeed(raw: unknown, where: string): Map<string, string> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${where}: expected a map of key → pool name or host:port, got ${Array.isArray(raw) ? 'a list' : raw === null ? 'null' : typeof raw}`);
  }
  const entries = new Map<string, string>();
  for (const [key, value] of Object.entries(raw)) {
    if (key === '') throw new Error(`${where}: an empty key`);
    if (typeof value !== 'string') throw new Error(`${where}: ${JSON.stringify(key)}: expected a pool name or host:port, got ${value === null ? 'null' : typeof value}`);
    try {
      entries.set(key, parseBareAnswer(value));
    } catch (e) {
      throw new Error(`${where}: ${JSON.stringify(key)}: ${e instanceof DirectoryKeyError ? `${JSON.stringify(value)} is neither a pool name nor host:port` : (e as Error).message}`, { cause: e });
    }
  }
  return entries;
}
