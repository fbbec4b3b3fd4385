/**
 * The rules of a config beyond the schema of each key: what one key says about another (the pools
 * a route names, route names, `path:<n>` against the route's `pathRegex`), what the running parts
 * check when they are built, and the files the config names.
 *
 * They read the raw YAML data, not the schema's output, so they run even when the schema found
 * problems elsewhere: a config's problems are reported all at once, not in rounds. Where a part
 * must be built to be checked (hash pickers, affinity tables, directory sources and tables, member
 * sources, health checks), it is built here by the same factory the runtime calls, from that one
 * key parsed by its own schema, and dropped: `homing check` and `homing serve` cannot disagree.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { pino } from 'pino';
import { configSchema } from './schema.js';
import { createHashPickerFactory, type HashPickerFactory } from '../routing/hash/index.js';
import { createBalancerFactory } from '../routing/balance.js';
import { createAffinityStore } from '../routing/affinity/index.js';
import { DirectoryTable } from '../routing/directory/table.js';
import { createDirectorySource, directoryTableOptions } from '../directory/config.js';
import { SeedFile } from '../directory/seed.js';
import { createMemberSource, FileSource } from '../discovery/index.js';
import { PoolHealth } from '../health/index.js';
import { Member, MemberSet } from '../members/member.js';
import { Pool } from '../members/pool.js';

export type ConfigPath = readonly (string | number)[];

/** One problem: where (a YAML path) and what. `at: 'key'` points at the key itself rather than its value. */
export interface Problem {
  path: ConfigPath;
  message: string;
  at?: 'key';
}

type Raw = Record<string, unknown>;

function isMap(v: unknown): v is Raw {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const routeShape = configSchema.shape.routes.element.shape;
const poolShape = configSchema.shape.pools.valueType.shape;
/** Parts built only to be checked log nowhere. */
const quiet = pino({ level: 'silent' });

/** Every problem the rules find in raw config data; `baseDir` resolves relative paths, `files` reads the files named. */
export function ruleProblems(raw: unknown, baseDir: string, files: boolean): Problem[] {
  if (!isMap(raw)) return []; // the schema says what the top must be
  const out: Problem[] = [];
  const pools = isMap(raw.pools) ? raw.pools : undefined;
  const routes = Array.isArray(raw.routes) ? (raw.routes as unknown[]) : [];
  const names = routeNames(routes, out);
  routes.forEach((r, i) => {
    if (!isMap(r)) return;
    routePools(r, ['routes', i], pools, out);
    routeKeys(r, ['routes', i], out);
    routeParts(r, ['routes', i], pools, out);
    const seed = isMap(r.directory) ? r.directory.seed : undefined;
    // Loaded at start, which fails when the seed cannot be read or is not a map of keys.
    if (files && typeof seed === 'string') check(out, ['routes', i, 'directory', 'seed'], () => new SeedFile(abs(baseDir, seed)).check());
  });
  if (isMap(raw.resp)) respRoutes(raw.resp, names, out);
  if (isMap(raw.cache) && raw.cache.store === 'redis' && raw.shared === undefined) {
    out.push({ path: ['cache', 'store'], message: 'store: redis needs shared.redis (where the answers are shared)' });
  }
  for (const [name, p] of Object.entries(pools ?? {})) if (isMap(p)) poolParts(name, p, baseDir, files, out);
  if (files) tlsFiles(raw, baseDir, out);
  return out;
}

/** A part built only to be checked is let go (closing it frees a socket pool or a resolver). */
function drop(closing: Promise<unknown>): void {
  closing.catch(() => {});
}

function abs(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/**
 * Runs `fn`; what it throws is a problem at `path` (or at the path `where` picks from its
 * message). A message that starts by naming its key ("hash.tableSize must be …") drops the name:
 * the path says it.
 */
function check(out: Problem[], path: ConfigPath, fn: () => unknown, where?: (message: string) => ConfigPath): void {
  try {
    fn();
  } catch (e) {
    const message = (e as Error).message;
    const at = where ? where(message) : path;
    // Two parts built from one key (a directory's source and table both read lookup.timeout): its first problem says it.
    if (out.some((o) => o.path.join('.') === at.join('.'))) return;
    const named = /^(\w+(?:\.\w+)+)(?:: | (?=must\b))/.exec(message);
    out.push({ path: at, message: named && at.join('.').includes(named[1]!) ? message.slice(named[0].length) : message });
  }
}

/** Route names are unique: the admin API, metrics and `resp.routes` name routes. */
function routeNames(routes: unknown[], out: Problem[]): Set<string> {
  const names = new Set<string>();
  routes.forEach((r, i) => {
    if (!isMap(r) || typeof r.name !== 'string') return;
    if (names.has(r.name)) out.push({ path: ['routes', i, 'name'], message: `duplicate route name "${r.name}" (another route above has it)` });
    names.add(r.name);
  });
  return names;
}

function routePools(r: Raw, at: ConfigPath, pools: Raw | undefined, out: Problem[]): void {
  if (r.pool === undefined && r.pools === undefined) out.push({ path: [...at, 'pool'], message: 'a route needs pool (or pools: a list, tried in order)' });
  if (r.pool !== undefined && r.pools !== undefined) out.push({ path: [...at, 'pools'], message: 'give pool or pools, not both' });
  if (Array.isArray(r.pools) && r.pools.length === 0) out.push({ path: [...at, 'pools'], message: 'pools needs at least one pool' });
  if (!pools) return; // the schema reports the missing pools
  const known = `(pools: ${Object.keys(pools).join(', ') || 'none'})`;
  if (typeof r.pool === 'string' && !Object.hasOwn(pools, r.pool)) out.push({ path: [...at, 'pool'], message: `unknown pool "${r.pool}" ${known}` });
  if (Array.isArray(r.pools)) {
    r.pools.forEach((p: unknown, j) => {
      if (typeof p === 'string' && !Object.hasOwn(pools, p)) out.push({ path: [...at, 'pools', j], message: `unknown pool "${p}" ${known}` });
    });
  }
}

function respRoutes(resp: Raw, names: Set<string>, out: Problem[]): void {
  if (resp.route === undefined && (resp.routes === undefined || (Array.isArray(resp.routes) && resp.routes.length === 0))) {
    out.push({ path: ['resp'], message: 'resp needs route or routes' });
  }
  const known = (name: unknown, path: ConfigPath): void => {
    if (typeof name === 'string' && !names.has(name)) out.push({ path, message: `unknown route "${name}" (routes: ${[...names].join(', ') || 'none'})` });
  };
  known(resp.route, ['resp', 'route']);
  if (Array.isArray(resp.routes)) resp.routes.forEach((name: unknown, j) => known(name, ['resp', 'routes', j]));
}

/** `pathRegex` compiles, and every `path:<n>` key of the route has a group n in it. */
function routeKeys(r: Raw, at: ConfigPath, out: Problem[]): void {
  const regex = isMap(r.match) ? r.match.pathRegex : undefined;
  let groups: number | undefined;
  if (typeof regex === 'string') {
    try {
      // An empty alternative matches '': the match has one slot per group.
      groups = new RegExp(`${regex}|`).exec('')!.length - 1;
    } catch (e) {
      out.push({ path: [...at, 'match', 'pathRegex'], message: `invalid regex: ${(e as Error).message}` });
    }
  }
  for (const part of ['hash', 'affinity', 'directory'] as const) {
    const p = r[part];
    const key = isMap(p) ? p.key : undefined;
    const n = typeof key === 'string' ? /^path:(\d+)$/.exec(key)?.[1] : undefined;
    if (n === undefined) continue;
    const path = [...at, part, 'key'];
    if (regex === undefined) out.push({ path, message: `${key as string} is capture group ${n} of match.pathRegex, and this route has no pathRegex` });
    else if (groups !== undefined && Number(n) > groups) out.push({ path, message: `${key as string} is capture group ${n} of match.pathRegex, which has ${groups === 1 ? '1 group' : `${groups} groups`}` });
  }
}

/** The route's parts, each built by the runtime's factory from that key alone. */
function routeParts(r: Raw, at: ConfigPath, pools: Raw | undefined, out: Problem[]): void {
  const hash = routeShape.hash.safeParse(r.hash);
  if (hash.success && hash.data) {
    let factory: HashPickerFactory | undefined;
    check(out, [...at, 'hash'], () => (factory = createHashPickerFactory(hash.data!)), (m) => hashOption(at, m));
    // A picker over a pool's static members: what a Maglev table or a ring is built from at start.
    for (const name of [r.pool, ...(Array.isArray(r.pools) ? r.pools : [])]) {
      const members = typeof name === 'string' && pools && isMap(pools[name]) ? poolShape.members.safeParse(pools[name].members) : undefined;
      if (!factory || !members?.success || !members.data) continue;
      const set = new MemberSet(members.data.map((m) => new Member(m.host, m.port, m.weight)));
      const build = factory;
      try {
        build(set);
      } catch (e) {
        out.push({ path: hashOption(at, (e as Error).message), message: `pool "${name as string}": ${(e as Error).message}` });
      }
    }
  }
  const balance = routeShape.balance.safeParse(r.balance);
  if (balance.success) check(out, [...at, 'balance'], () => createBalancerFactory(balance.data));
  const affinity = routeShape.affinity.safeParse(r.affinity);
  if (affinity.success && affinity.data) {
    const a = affinity.data;
    check(
      out,
      [...at, 'affinity'],
      () => drop(createAffinityStore({ route: String(r.name), ttl: a.ttl, capacity: a.capacity, missTimeout: a.missTimeout, log: quiet }).close()),
      (m) => [...at, 'affinity', ...(/\bttl\b/.test(m) ? ['ttl'] : /\bcapacity\b/.test(m) ? ['capacity'] : [])],
    );
  }
  const directory = routeShape.directory.safeParse(r.directory);
  if (directory.success && directory.data) {
    const d = directory.data;
    const lookup = [...at, 'directory', 'lookup'];
    check(
      out,
      lookup,
      () => drop(createDirectorySource(d).close()),
      (m) => [...lookup, ...(/\btimeout\b/.test(m) ? ['timeout'] : /\bheader\b/.test(m) ? ['headers'] : d.lookup.url ? ['url'] : ['redis', 'url'])],
    );
    const source = { lookup: () => Promise.resolve({ unknown: true as const }) };
    check(
      out,
      [...at, 'directory'],
      () => new DirectoryTable({ source, ...directoryTableOptions(d) }).close(),
      (m) => {
        const option = /^DirectoryTable: (\w+)/.exec(m)?.[1];
        return option === 'timeout' ? [...lookup, 'timeout'] : [...at, 'directory', ...(option ? [option] : [])];
      },
    );
  }
}

/** The option a hash picker's RangeError names (`hash.tableSize …`), as a path in the route. */
function hashOption(at: ConfigPath, message: string): ConfigPath {
  const option = /^hash\.(\w+)/.exec(message)?.[1];
  return [...at, 'hash', ...(option ? [option] : [])];
}

/** A pool's member source and health checks, built by the runtime's factories; its member file read. */
function poolParts(name: string, p: Raw, baseDir: string, files: boolean, out: Problem[]): void {
  const at = ['pools', name];
  const health = poolShape.health.safeParse(p.health);
  if (health.success && health.data) {
    // Messages name the option: "health.active.interval must be > 0".
    check(out, [...at, 'health'], () => drop(new PoolHealth(new Pool(name), health.data).stop()), (m) => [...at, ...(/^health\.\w+(\.\w+)?/.exec(m)?.[0].split('.') ?? ['health'])]);
  }
  const discovery = poolShape.discovery.safeParse(p.discovery);
  if (!discovery.success || !discovery.data || discovery.data.etcd) return; // etcd: reached when homing starts, not while checking
  const d = discovery.data;
  const file = d.file === undefined ? undefined : abs(baseDir, d.file);
  const kind = d.file !== undefined ? 'file' : d.dns ? 'dns' : 'http';
  check(
    out,
    [...at, 'discovery', kind],
    () => drop(createMemberSource({ discovery: { ...d, file } }).stop()),
    (m) => [...at, 'discovery', kind, ...(/\binterval/i.test(m) ? ['interval'] : /\bport\b/.test(m) ? ['port'] : kind === 'http' ? ['url'] : [])],
  );
  // The first load must succeed for the pool to start: the file is there and is a member list.
  if (files && file !== undefined) check(out, [...at, 'discovery', 'file'], () => new FileSource(file).check());
}

/** TLS: the certificate and key are read and must make a context, as the HTTPS listener will. */
function tlsFiles(raw: Raw, baseDir: string, out: Problem[]): void {
  const https = isMap(raw.listen) && isMap(raw.listen.https) ? raw.listen.https : undefined;
  if (!https) return;
  const read = (k: 'cert' | 'key'): Buffer | undefined => {
    const v = https[k];
    if (typeof v !== 'string') return undefined;
    const file = abs(baseDir, v);
    try {
      return readFileSync(file);
    } catch (e) {
      out.push({ path: ['listen', 'https', k], message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      return undefined;
    }
  };
  const cert = read('cert');
  const key = read('key');
  if (!cert || !key) return;
  check(out, ['listen', 'https'], () => {
    try {
      createSecureContext({ cert, key });
    } catch (e) {
      throw new Error(`certificate ${abs(baseDir, String(https.cert))} or key ${abs(baseDir, String(https.key))} is not valid PEM or they do not match: ${(e as Error).message}`, { cause: e });
    }
  });
}
