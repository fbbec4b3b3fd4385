/**
 * Where a pool's member list comes from (static `members`, `file`, `dns`, `etcd`,
 * `http`). Every source follows one contract, so the wiring is the same for all of them:
 *
 *   await source.start((specs) => pool.setMembers(specs), (err) => log.warn(err));
 *
 * `start` resolves after the first successful load and rejects when it fails (a pool must not
 * start from nothing because its file is missing). After that a failed reload never empties the
 * pool: the last good list stays and the failure goes to `onError`.
 */
import type { MemberSpec } from '../members/pool.js';
import { parseHostPort } from '../config/units.js';
import { Reloader } from '../state/reloader.js';

export interface MemberSource {
  /**
   * Load the list once (rejecting with a message that names the file/URL/name on failure), hand it
   * to `onMembers`, then keep watching. `onMembers` is called again only when the list changes;
   * `onError` gets every later failure (deduplicated: the same failure twice in a row is reported
   * once), and the last good list stays in force.
   */
  start(onMembers: (specs: MemberSpec[]) => void, onError: (err: Error) => void): Promise<void>;
  /** Stop watching/polling; no callback runs after the returned promise resolves. */
  stop(): Promise<void>;
}

/** Same bounds as the config's `members[].weight` (schema.ts `memberEntry`). */
const MAX_WEIGHT = 1000;

/**
 * Validate a member list read from a file or an HTTP answer: the same two forms as the config's
 * `members` (`"host:port"` or `{ address, weight }`), with the same rules. Also accepts
 * `{ members: [...] }`, so one file can be shared with tools that want an object at the top.
 * Throws an Error naming `source` and the bad entry's index.
 */
export function parseMemberList(raw: unknown, source: string): MemberSpec[] {
  let list = raw;
  if (list !== null && typeof list === 'object' && !Array.isArray(list) && 'members' in list) {
    list = (list as { members: unknown }).members;
  }
  if (!Array.isArray(list)) {
    throw new Error(`${source}: expected a list of members ("host:port" or { address, weight }), got ${describe(raw)}`);
  }
  return list.map((entry: unknown, i) => parseMemberEntry(entry, `${source}: [${i}]`));
}

/** One member: `"host:port"` or `{ address, weight }`; throws an Error naming `where`. */
export function parseMemberEntry(entry: unknown, where: string): MemberSpec {
  if (typeof entry === 'string') {
    const { host, port } = hostPort(entry, where);
    return { host, port, weight: 1 };
  }
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
    throw new Error(`${where}: expected "host:port" or { address, weight }, got ${describe(entry)}`);
  }
  const obj = entry as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (k !== 'address' && k !== 'weight') throw new Error(`${where}: unknown key "${k}" (use address, weight)`);
  }
  if (typeof obj.address !== 'string') throw new Error(`${where}.address: expected "host:port", got ${describe(obj.address)}`);
  const { host, port } = hostPort(obj.address, `${where}.address`);
  const weight = obj.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
    throw new Error(`${where}.weight: expected an integer 1..${MAX_WEIGHT}, got ${describe(weight)}`);
  }
  return { host, port, weight };
}

function hostPort(v: string, where: string): { host: string; port: number } {
  try {
    return parseHostPort(v);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** Canonical form of a list, to tell whether a reload changed anything (order-insensitive). */
export function specsKey(specs: readonly MemberSpec[]): string {
  return specs
    .map((s) => `${s.host}|${s.port}|${s.weight}`)
    .sort()
    .join(',');
}

/** A member list re-read from DNS or HTTP: the shared Reloader, comparing lists order-insensitively (FileSource is a WatchedFile). */
export abstract class ReloadingSource extends Reloader<MemberSpec[]> implements MemberSource {
  /** @param pollMs re-load period in ms (0 = no timer; the subclass triggers `refresh` itself). */
  constructor(pollMs: number) {
    super(pollMs, 'member source');
  }

  protected fingerprint(specs: MemberSpec[]): string {
    return specsKey(specs);
  }
}
