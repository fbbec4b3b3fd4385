/**
 * Wires one homing process from a validated config: pools fed by discovery, health, routes with
 * their strategies, upstream pools, metrics, and the faces (HTTP proxy, RESP, admin) on top.
 * Nothing here decides a route; it only connects the parts.
 *
 * What one config builds is a generation. `reload` builds the next one from a new config, carrying
 * over from the one in force what the new config leaves as it was — a pool of the same name (its
 * members, their health and in-flight counts) with its member source and health checks when
 * their settings are unchanged, a route's learned affinity and directory cache when the route
 * keeps its name and the settings they depend on (see `keepsAffinity`, `keepsDirectory`), the
 * shared Redis, every upstream connection to a member that stays — starts what is new, and swaps
 * the proxy's deps between requests. Requests in flight keep the generation they started with
 * (its routes keep following the pools) until they end; then what only it used is closed.
 */
import { BlockList, isIP } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { CACHE_DEFAULTS, type Config, type PoolConfig, type RouteConfig } from './config/schema.js';
import { Pool, type MemberSpec } from './members/pool.js';
import { createMemberSource, EtcdAnnouncer, type MemberSource } from './discovery/index.js';
import type { HostPort } from './config/units.js';
import { Route } from './routing/route.js';
import { createHashPickerFactory } from './routing/hash/index.js';
import { createBalancerFactory } from './routing/balance.js';
import { Upstreams, upstreamOptions, type UpstreamOptions } from './proxy/upstreams.js';
import { Proxy, type HealthReporter, type PipelineDeps } from './proxy/proxy.js';
import { DrainState, InFlight } from './proxy/exchange.js';
import { Router } from './proxy/match.js';
import { DirectoryTable } from './routing/directory/table.js';
import { DirectoryMetrics } from './routing/directory/metrics.js';
import { HttpDirectorySource, RedisDirectorySource, SeedFile } from './directory/index.js';
import { createDirectorySource, directoryTableOptions } from './directory/config.js';
import type { DirectorySource } from './routing/directory/table.js';
import { BoxDirectorySource, SharedDirectorySource, type DirectoryBus } from './state/directory.js';
import { Metrics } from './admin/metrics.js';
import { PoolHealth } from './health/index.js';
import type { Member } from './members/member.js';
import { AffinityMetrics, createAffinityStore, type AffinityTableStore } from './routing/affinity/index.js';
import { createSharedRedis, type SharedRedis } from './state/redis.js';
import type { ClusterBus } from './state/cluster.js';
import type { PoolStatePublisher, PoolStateReplica } from './state/pools.js';
import type { AccessLog } from './proxy/access-log.js';
import type { SpanExporter } from './proxy/spans.js';
import { CacheMetrics } from './cache/metrics.js';
import { ResponseCache } from './cache/index.js';

export interface RuntimeOptions {
  log: Logger;
  metrics?: Metrics;
  /** This process's cluster bus when it is a node:cluster worker (affinity shared between workers). */
  cluster?: ClusterBus;
  /**
   * With node:cluster workers, where members and health live. In the primary (a publisher):
   * discovery and active health checks run here, once for the box, and their state reaches the
   * workers. In a worker (a replica): members and up/down come from the primary, nothing is
   * discovered or checked here, and request outcomes go to the primary, which decides ejection.
   * Absent: this process does it all. The runtime closes it.
   */
  pools?: PoolStatePublisher | PoolStateReplica;
  /**
   * With node:cluster workers, the box's directory channel: a worker's directory tables ask the
   * primary's, which ask the directory (once per key for the box). The runtime closes it.
   */
  directoryBus?: DirectoryBus;
  /** The access log (`accessLog`), opened by the caller, which closes it. */
  access?: AccessLog;
  /** The span exporter (`tracing.otlp`), loaded by the caller, which closes it. */
  spans?: SpanExporter;
  /** The response cache's wall clock (tests move one instead of sleeping). Default Date.now. */
  cacheClock?: () => number;
}

/** A route's directory tier and what feeds it. */
export interface RouteDirectory {
  readonly table: DirectoryTable;
  /** What the table asks (the directory, Redis before it, or the primary). */
  readonly source: DirectorySource & { close(): Promise<void> };
  /** The directory itself, in the process that asks it. */
  readonly direct: HttpDirectorySource | RedisDirectorySource | undefined;
  readonly seed: SeedFile | undefined;
  /** The last seed loaded (to tell workers what changed). */
  seeded?: ReadonlyMap<string, string>;
  /** The Redis tier, with `shared.redis`. */
  readonly shared: SharedDirectorySource | undefined;
  readonly unfollow: (() => void) | undefined;
  /** The route whose pools answers must name (the new one after a reload that kept the table). */
  route: Route | undefined;
}

/** Everything one config builds (see the top of this file). */
interface Generation {
  readonly config: Config;
  readonly pools: Map<string, Pool>;
  /** Health of each pool (none in a worker: the primary judges). */
  readonly health: Map<Pool, PoolHealth>;
  /** What feeds each pool its members (none in a worker: they come from the primary). */
  readonly sources: Map<Pool, MemberSource>;
  readonly routes: Route[];
  readonly routeByName: Map<string, Route>;
  readonly affinityStores: Map<Route, AffinityTableStore>;
  readonly directories: Map<Route, RouteDirectory>;
  readonly sharedRedis: SharedRedis | undefined;
  /** The response cache (kept across reloads while `cache` and `shared` stay as they were). */
  readonly cache: ResponseCache | undefined;
  readonly deps: PipelineDeps;
  /** The upstream option sets its routes use (others are closed once it is in force). */
  readonly optionKeys: Set<string>;
  /** Its pool listeners (its routes' strategies, affinity owner drops, metrics). */
  readonly unsubscribe: (() => void)[];
  /**
   * Member lists a new source found for a pool the generation in force also serves: applied when
   * this one takes over, so requests of the old config never see the new config's members.
   */
  readonly pending: Map<Pool, MemberSpec[]>;
}

/**
 * Learned entries carry over when what they mean and how they are held stays: the key expression
 * (another key would name other sessions), the table's ttl and capacity, and the wait for the next
 * tier. The redirect, owner header and replay limit may change.
 */
function keepsAffinity(before: RouteConfig, now: RouteConfig): boolean {
  const a = before.affinity;
  const b = now.affinity;
  return a !== undefined && b !== undefined && a.key === b.key && a.ttl === b.ttl && a.capacity === b.capacity && a.missTimeout === b.missTimeout;
}

/** A directory cache carries over when its settings and the route's pools (which answers name) stay. */
function keepsDirectory(before: RouteConfig, now: RouteConfig): boolean {
  return before.directory !== undefined && isDeepStrictEqual(before.directory, now.directory) && isDeepStrictEqual(before.pools ?? [before.pool], now.pools ?? [now.pool]);
}

export class Runtime {
  readonly upstreams = new Upstreams();
  readonly metrics: Metrics;
  /** One for the process's life: a reload swaps its deps. */
  readonly proxy: Proxy;
  readonly affinityMetrics: AffinityMetrics;
  /** Set when a graceful shutdown begins (answers close their connections). */
  readonly drain = new DrainState();
  private readonly directoryBus: DirectoryBus | undefined;
  private readonly replica: PoolStateReplica | undefined;
  private readonly reporter: HealthReporter;
  private announcer: EtcdAnnouncer | undefined;
  /** The generation in force (set once the first one is started). */
  private gen: Generation | undefined;
  /** The generation being started, until it is in force. */
  private next: Generation | undefined;
  /** Retirements of earlier generations waiting for their requests to end: run them now. */
  private readonly retirements = new Set<() => Promise<void>>();
  private reloading: Promise<unknown> = Promise.resolve();

  private constructor(
    config: Config,
    readonly log: Logger,
    metrics: Metrics,
    private readonly cluster: ClusterBus | undefined,
    private readonly box: PoolStatePublisher | PoolStateReplica | undefined,
    directoryBus: DirectoryBus | undefined,
    private readonly observe: { access?: AccessLog; spans?: SpanExporter; cacheClock?: () => number } = {},
  ) {
    this.metrics = metrics;
    this.upstreams.engine = config.engine;
    this.affinityMetrics = AffinityMetrics.of(metrics.registry);
    this.directoryBus = directoryBus;
    this.replica = box?.role === 'worker' ? box : undefined;
    metrics.trackInflight(() => [...this.pools.values()].flatMap((p) => p.members.members.map((m) => ({ pool: p.name, member: m.id, inflight: m.inflight }))));
    const replica = this.replica;
    this.reporter = replica
      ? { success: (p: Pool, m: Member) => replica.success(p, m), failure: (p: Pool, m: Member) => replica.failure(p, m) }
      : {
          success: (p: Pool, m: Member) => this.gen?.health.get(p)?.success(m),
          failure: (p: Pool, m: Member) => this.gen?.health.get(p)?.failure(m),
        };
    // The cache gauges read the cache in force (a reload may replace it).
    CacheMetrics.of(metrics.registry).sizes = () => {
      const c = this.current.cache;
      return { bytes: c?.store.bytes ?? 0, entries: c?.store.entries ?? 0, principals: c?.principals?.size ?? 0 };
    };
    this.next = this.build(config, undefined);
    this.proxy = new Proxy(this.next.deps);
  }

  /** The config in force. */
  get config(): Config {
    return this.current.config;
  }
  get pools(): ReadonlyMap<string, Pool> {
    return this.current.pools;
  }
  get routes(): readonly Route[] {
    return this.current.routes;
  }
  get health(): ReadonlyMap<Pool, PoolHealth> {
    return this.current.health;
  }
  get affinityStores(): ReadonlyMap<Route, AffinityTableStore> {
    return this.current.affinityStores;
  }
  /** Directory tiers of the routes that have one. */
  get directories(): ReadonlyMap<Route, RouteDirectory> {
    return this.current.directories;
  }
  get sharedRedis(): SharedRedis | undefined {
    return this.current.sharedRedis;
  }
  /** The response cache, when `cache` is configured or a route caches. */
  get cache(): ResponseCache | undefined {
    return this.current.cache;
  }
  /** The generation in force, or the first one while it starts. */
  private get current(): Generation {
    return (this.gen ?? this.next)!;
  }

  route(name: string): Route | undefined {
    return this.current.routeByName.get(name);
  }

  /**
   * The generation `config` makes, taking from `prev` what carries over (see the top of this
   * file). Nothing the generation in force uses changes: what is new starts in `prepare`, and a
   * pool's replaced health only once the generation is in force.
   */
  private build(config: Config, prev: Generation | undefined): Generation {
    const log = this.log;
    const wantsCache = config.cache !== undefined || config.routes.some((r) => r.cache);
    const wantsRedis = config.routes.some((r) => r.affinity || r.directory) || wantsCache;
    const sameShared = prev !== undefined && isDeepStrictEqual(prev.config.shared, config.shared);
    const sharedRedis = !wantsRedis ? undefined : sameShared && prev.sharedRedis ? prev.sharedRedis : createSharedRedis(config.shared, { log, observer: this.affinityMetrics.redis });
    const redisKept = prev !== undefined && sharedRedis === prev.sharedRedis;
    // Stored answers and known principals stay while the cache's own settings and Redis do.
    const keptCache = redisKept && prev.cache !== undefined && isDeepStrictEqual(prev.config.cache, config.cache) ? prev.cache : undefined;
    const cache = !wantsCache
      ? undefined
      : (keptCache ?? new ResponseCache({ config: config.cache ?? CACHE_DEFAULTS, registry: this.metrics.registry, cluster: this.cluster, redis: sharedRedis, redisTimeout: config.shared?.commandTimeout, clock: this.observe.cacheClock }));
    const routes: Route[] = [];
    const upstreamOpts = new Map<Route, Map<Pool, UpstreamOptions>>();
    const gen: Generation = {
      config,
      pools: new Map(),
      health: new Map(),
      sources: new Map(),
      routes,
      routeByName: new Map(),
      affinityStores: new Map(),
      directories: new Map(),
      sharedRedis,
      cache,
      deps: this.pipelineDeps(config, routes, upstreamOpts, cache),
      optionKeys: new Set(),
      unsubscribe: [],
      pending: new Map(),
    };
    /** Made for a route whose Route is not built yet. */
    let fresh: { store?: AffinityTableStore; directory?: RouteDirectory } = {};
    try {
      for (const [name, pc] of Object.entries(config.pools)) {
        const old = prev?.pools.get(name);
        const pool = old ?? new Pool(name, [], log);
        gen.pools.set(name, pool);
        // A worker follows the primary's members and health: it discovers and judges nothing itself.
        if (this.replica) continue;
        const before = old && prev!.config.pools[name];
        const source = old && prev!.sources.get(old);
        gen.sources.set(pool, source && isDeepStrictEqual([before!.members, before!.discovery], [pc.members, pc.discovery]) ? source : createMemberSource(pc));
        const health = old && prev!.health.get(old);
        if (health && isDeepStrictEqual(before!.health, pc.health)) gen.health.set(pool, health);
        // A pool that stays gets its new health once the old one has stopped (switchOver): a new
        // tracker lifts every down mark it finds, which must not happen under the old config.
        else if (!old) gen.health.set(pool, this.poolHealth(pool, pc));
      }
      for (const rc of config.routes) {
        const before = prev?.routeByName.get(rc.name);
        const pools = (rc.pools ?? [rc.pool!]).map((name) => gen.pools.get(name)!);
        const keptStore = before && redisKept && keepsAffinity(before.config, rc) ? prev!.affinityStores.get(before) : undefined;
        const affinity = rc.affinity ? (keptStore ?? this.createAffinity(rc, sharedRedis)) : undefined;
        if (!keptStore) fresh.store = affinity;
        const keptDirectory = before && redisKept && keepsDirectory(before.config, rc) ? prev!.directories.get(before) : undefined;
        const directory = rc.directory ? (keptDirectory ?? this.createDirectory(rc, sharedRedis)) : undefined;
        if (!keptDirectory) fresh.directory = directory;
        const route: Route = new Route(rc, {
          pools,
          hash: rc.hash ? createHashPickerFactory(rc.hash) : undefined,
          balance: createBalancerFactory(rc.balance),
          affinity,
          directory: directory?.table,
          cache: cache?.route(rc),
        });
        fresh = {};
        gen.unsubscribe.push(() => route.close());
        if (directory) {
          gen.directories.set(route, directory);
          if (!keptDirectory) directory.route = route;
        }
        if (affinity) gen.affinityStores.set(route, affinity);
        route.onRebuildError = (e) => log.error({ route: rc.name, err: e.message }, 'strategy rebuild failed; keeping the previous member snapshot');
        const opts = new Map<Pool, UpstreamOptions>();
        for (const pool of pools) {
          if (affinity) {
            // An owner that leaves the pool or goes down loses its entries: its keys are guessed again.
            let live = new Set(pool.live.members.map((m) => m.id));
            gen.unsubscribe.push(
              pool.onChange(() => {
                const now = new Set(pool.live.members.map((m) => m.id));
                for (const id of live) if (!now.has(id) && !route.liveMember(id)) affinity.dropOwner(id);
                live = now;
              }),
            );
          }
          gen.unsubscribe.push(pool.onChange(() => this.metrics.pickerRebuilds.labels(rc.name).inc()));
          const pc = config.pools[pool.name]!;
          const o = upstreamOptions(pc.connections, pc.keepAliveTimeout, rc.timeouts.connect);
          opts.set(pool, o);
          gen.optionKeys.add(o.key);
        }
        routes.push(route);
        gen.routeByName.set(rc.name, route);
        upstreamOpts.set(route, opts);
      }
    } catch (e) {
      void fresh.store?.close();
      if (fresh.directory) void closeDirectory(fresh.directory);
      if (cache !== keptCache) cache?.close();
      void this.closeDeferred(gen, prev);
      void this.stopFeeds(gen, prev);
      throw e;
    }
    return gen;
  }

  /** What the proxy's phases use under `config`: its routes, their upstream options, header rules. */
  private pipelineDeps(config: Config, routes: readonly Route[], upstreamOpts: ReadonlyMap<Route, ReadonlyMap<Pool, UpstreamOptions>>, cache: ResponseCache | undefined): PipelineDeps {
    const internal = new Set<string>();
    for (const rc of config.routes) dropInternal(rc, internal);
    const drop = new Set(internal);
    for (const h of config.cache?.principal?.headers ?? []) drop.add(h.toLowerCase());
    return {
      affinity: this.affinityMetrics,
      router: new Router(routes),
      hygiene: { dropRequestHeaders: drop, trustedProxies: trustedList(config.listen.trustedProxies), tracing: config.tracing },
      upstreams: this.upstreams,
      upstreamOptions: (r, p) => upstreamOpts.get(r)!.get(p)!,
      metrics: this.metrics,
      health: this.reporter,
      log: this.log,
      dropResponseHeaders: internal,
      drain: this.drain,
      access: this.observe.access,
      spans: this.observe.spans,
      inflight: new InFlight(),
      cache,
    };
  }

  private poolHealth(pool: Pool, pc: PoolConfig): PoolHealth {
    const { log, metrics } = this;
    return new PoolHealth(pool, pc.health, {
      log,
      onTransition: (m, up, reason) => {
        metrics.memberUp.labels(pool.name, m.id).set(up ? 1 : 0);
        log.warn({ pool: pool.name, member: m.id, up, reason }, up ? 'member up' : 'member down');
      },
    });
  }

  private createAffinity(rc: RouteConfig, redis: SharedRedis | undefined): AffinityTableStore {
    const a = rc.affinity!;
    return createAffinityStore({ route: rc.name, ttl: a.ttl, capacity: a.capacity, redis, cluster: this.cluster, metrics: this.affinityMetrics, log: this.log, missTimeout: a.missTimeout });
  }

  /**
   * A route's directory tier: its source (HTTP or Redis), the table in front of it (answers must
   * name a pool of the route or a member of one), metrics, and the seed file when there is one.
   */
  private createDirectory(rc: RouteConfig, sharedRedis: SharedRedis | undefined): RouteDirectory {
    const d = rc.directory!;
    const log = this.log;
    const bus = this.directoryBus;
    // A worker asks the primary's table; the primary (or a lone process) asks the directory,
    // through Redis when answers are shared between instances.
    let direct: HttpDirectorySource | RedisDirectorySource | undefined;
    let shared: SharedDirectorySource | undefined;
    let source: DirectorySource & { close(): Promise<void> };
    if (bus?.isWorker) source = new BoxDirectorySource(bus, rc.name);
    else {
      direct = createDirectorySource(d, (err) => log.warn({ route: rc.name, err: err.message }, 'directory redis error'));
      source = direct;
      if (sharedRedis) {
        shared = new SharedDirectorySource(sharedRedis, rc.name, direct, { ttl: d.ttl, negativeTtl: d.negativeTtl, readTimeout: Math.min(250, d.lookup.timeout) });
        source = shared;
      }
    }
    const observer = DirectoryMetrics.of(this.metrics.registry).observer(rc.name, (reason, key, value) => {
      // Answers homing cannot use are logged with what was asked and answered; a down directory
      // shows in the metrics (and fails over to stale entries) without a line per key.
      if (reason === 'invalid' || reason === 'bad-answer') log.warn({ route: rc.name, key: key.slice(0, 200), answer: value, reason }, 'directory answer refused');
    });
    const table = new DirectoryTable({
      source,
      ...directoryTableOptions(d),
      validate: (value) => dir.route?.allowsDirectoryAnswer(value) ?? false,
      observer,
    });
    const unfollow = shared?.follow(table, (key, value) => bus?.publish(rc.name, key, value), log);
    // Seeds live in the primary's table (a worker asks it).
    const seed = d.seed === undefined || bus?.isWorker ? undefined : new SeedFile(d.seed);
    const dir: RouteDirectory = { table, source, direct, seed, shared, unfollow, route: undefined };
    return dir;
  }

  /**
   * A key of a directory route set by hand (an operator moving a tenant) or, without `value`,
   * forgotten: here, in every worker of the box and on every instance sharing Redis. Throws when
   * the value is not a pool of the route nor a member of one. Answers whether a forgotten key was held.
   */
  changeDirectory(route: Route, key: string, value?: string): boolean {
    const d = this.directories.get(route)!;
    let held = true;
    if (value === undefined) held = d.table.delete(key);
    else d.table.set(key, value, 'manual');
    this.directoryBus?.publish(route.name, key, value);
    d.shared?.publish(key, value);
    return held;
  }

  static async create(config: Config, opts: RuntimeOptions): Promise<Runtime> {
    const rt = new Runtime(config, opts.log, opts.metrics ?? new Metrics(), opts.cluster, opts.pools, opts.directoryBus, { access: opts.access, spans: opts.spans, cacheClock: opts.cacheClock });
    try {
      const gen = rt.next!;
      await rt.prepare(gen, undefined);
      rt.commit(gen, undefined);
      await rt.switchOver(gen, undefined);
      // A node:cluster primary stands for its box (its workers listen on the configured address).
      if (opts.pools?.role === 'primary') await rt.announce(config.listen.http ?? config.listen.https?.address);
    } catch (e) {
      await rt.close();
      throw e;
    }
    return rt;
  }

  /**
   * Put `config` in force (it is valid: `validateConfig` said so). Resolves once it serves every
   * new request; rejects, with the config in force untouched, when a part cannot start (a member
   * source that cannot load its first list, no pool state from the cluster primary). One reload at
   * a time: a second waits for the first.
   */
  reload(config: Config): Promise<void> {
    const run = this.reloading.then(() => this.switchTo(config));
    this.reloading = run.catch(() => {});
    return run;
  }

  private async switchTo(config: Config): Promise<void> {
    const prev = this.gen;
    if (!prev) throw new Error('the runtime is not started');
    const next = (this.next = this.build(config, prev));
    try {
      await this.prepare(next, prev);
    } catch (e) {
      this.next = undefined;
      await this.stopFeeds(next, prev);
      await this.closeDeferred(next, prev);
      // A worker goes on following the pools of the config in force.
      if (this.replica) await this.follow(prev).catch((err: unknown) => this.log.error({ err: (err as Error).message }, 'cannot follow the cluster primary again after a failed reload'));
      throw e;
    }
    this.commit(next, prev);
    await this.switchOver(next, prev);
    this.retire(prev, next);
  }

  /** Start what `gen` has and `prev` does not: member sources (or, in a worker, the primary's pool state), directory seeds. */
  private async prepare(gen: Generation, prev: Generation | undefined): Promise<void> {
    if (this.replica) await this.follow(gen);
    else await Promise.all([...gen.sources].filter(([pool, s]) => prev?.sources.get(pool) !== s).map(([pool, s]) => this.startSource(pool, s)));
    // After the members are known: seed entries must name a pool or a member of the route.
    await this.startDirectories([...gen.directories.values()].filter((d) => !prev || ![...prev.directories.values()].includes(d)));
  }

  /** A worker: follow the primary's state of `gen`'s pools (resolves once it has all of it). */
  private follow(gen: Generation): Promise<void> {
    const pools = [...gen.pools.values()].map((pool) => ({ pool, passive: Boolean(gen.config.pools[pool.name]!.health?.passive) }));
    return this.replica!.follow(pools, (pool) => this.membersChanged(pool));
  }

  private startSource(pool: Pool, source: MemberSource): Promise<void> {
    return source.start(
      (specs) => this.delivered(pool, source, specs),
      (err) => this.log.warn({ pool: pool.name, err: err.message }, 'discovery error; keeping the last good member list'),
    );
  }

  /** `source` found `specs` for `pool`. */
  private delivered(pool: Pool, source: MemberSource, specs: MemberSpec[]): void {
    if (this.gen?.sources.get(pool) === source) return this.setMembers(pool, specs);
    const next = this.next;
    // A source a reload replaced (it is being stopped): not this pool's any more.
    if (next?.sources.get(pool) !== source) return;
    if (this.gen?.pools.get(pool.name) === pool) next.pending.set(pool, specs);
    else this.setMembers(pool, specs);
  }

  private setMembers(pool: Pool, specs: MemberSpec[]): void {
    pool.setMembers(specs);
    this.membersChanged(pool);
    this.log.info({ pool: pool.name, members: pool.members.members.map((m) => m.id) }, 'pool members');
  }

  /**
   * After `pool`'s member list changed: a gauge for each member it has and no series left for a
   * member that left; upstream connections kept only to members some pool still has, with the
   * options some route still uses.
   */
  private membersChanged(pool: Pool): void {
    for (const m of pool.members.members) this.metrics.memberUp.labels(pool.name, m.id).set(pool.isUp(m.id) ? 1 : 0);
    const gen = this.gen;
    if (!gen?.pools.has(pool.name)) return;
    const routes = gen.routes.filter((r) => r.pool === pool).map((r) => r.name);
    this.metrics.retainMembers(pool.name, routes, new Set(pool.members.members.map((m) => m.id)));
    const ids = new Set<string>();
    for (const p of gen.pools.values()) for (const m of p.members.members) ids.add(m.id);
    this.upstreams.retain(ids, gen.optionKeys);
    if (this.box?.role === 'primary') this.box.changed(pool);
  }

  /** Load each directory's seed file (and keep watching it); a bad seed keeps the last good one. */
  private async startDirectories(directories: readonly RouteDirectory[]): Promise<void> {
    await Promise.all(
      directories.map(async (d) => {
        const name = d.route!.name;
        if (d.direct instanceof RedisDirectorySource) d.direct.connect();
        if (d.seed) {
          await d.seed.start(
            (entries) => {
              try {
                d.table.seed(entries);
                // Workers hold copies of what they asked: seeded keys are told again.
                const before = d.seeded ?? new Map<string, string>();
                for (const [k, v] of entries) if (before.get(k) !== v) this.directoryBus?.publish(name, k, v);
                for (const k of before.keys()) if (!entries.has(k)) this.directoryBus?.publish(name, k);
                d.seeded = entries;
                this.log.info({ route: name, entries: entries.size }, 'directory seed loaded');
              } catch (e) {
                this.log.warn({ route: name, err: (e as Error).message }, 'directory seed refused; keeping the last good one');
              }
            },
            (err) => this.log.warn({ route: name, err: err.message }, 'directory seed error; keeping the last good one'),
          );
        }
      }),
    );
  }

  /** `gen` takes over, between two requests: every request from now on is routed by it. */
  private commit(gen: Generation, prev: Generation | undefined): void {
    this.gen = gen;
    this.next = undefined;
    this.proxy.deps = gen.deps;
    for (const [route, d] of gen.directories) {
      d.route = route;
      this.directoryBus?.attach(route.name, d.table);
    }
    if (prev) {
      for (const [route, d] of prev.directories) if (!gen.routeByName.has(route.name)) this.directoryBus?.detach(route.name, d.table);
      this.metrics.forget(
        prev.routes.filter((r) => !gen.routeByName.has(r.name)).map((r) => r.name),
        [...prev.pools.keys()].filter((name) => !gen.pools.has(name)),
      );
    }
    for (const [pool, specs] of gen.pending) this.setMembers(pool, specs);
    gen.pending.clear();
    for (const pool of gen.pools.values()) this.membersChanged(pool);
  }

  /**
   * Right after `gen` took over: the health checks and member sources it replaced stop, the
   * pools' new health starts, and (in a cluster primary) the workers follow the new set of pools.
   */
  private async switchOver(gen: Generation, prev: Generation | undefined): Promise<void> {
    if (this.replica) return;
    await this.stopFeeds(prev, gen);
    for (const pool of gen.pools.values()) if (!gen.health.has(pool)) gen.health.set(pool, this.poolHealth(pool, gen.config.pools[pool.name]!));
    for (const [pool, h] of gen.health) if (prev?.health.get(pool) !== h) h.start();
    if (this.box?.role === 'primary') this.box.share([...gen.pools.values()].map((p) => [p, gen.health.get(p)] as const));
  }

  /**
   * Once the requests `prev` routed are over (or `shutdown.timeout` has passed: a websocket
   * tunnel may last for hours), what only it used is closed: its routes stop following the
   * pools, and affinity stores, directory tables and a shared Redis that `gen` did not keep.
   */
  private retire(prev: Generation, gen: Generation): void {
    let done = false;
    const run = async (): Promise<void> => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.retirements.delete(run);
      await this.closeDeferred(prev, gen);
    };
    const timer = setTimeout(() => void run(), gen.config.shutdown.timeout);
    timer.unref();
    this.retirements.add(run);
    void prev.deps.inflight.idle().then(run);
  }

  /** Stop the member sources and health checks of `gen` that `keep` does not use. */
  private async stopFeeds(gen: Generation | undefined, keep: Generation | undefined): Promise<void> {
    if (!gen) return;
    const kept = (m: ReadonlyMap<Pool, unknown> | undefined, pool: Pool, v: unknown): boolean => m?.get(pool) === v;
    await Promise.all([
      ...[...gen.health].filter(([pool, h]) => !kept(keep?.health, pool, h)).map(([, h]) => h.stop()),
      ...[...gen.sources].filter(([pool, s]) => !kept(keep?.sources, pool, s)).map(([, s]) => s.stop().catch(() => {})),
    ]);
  }

  /** Close what only `gen` uses (`keep` does not): its pool listeners, affinity stores, directory tiers, shared Redis. */
  private async closeDeferred(gen: Generation, keep: Generation | undefined): Promise<void> {
    for (const u of gen.unsubscribe.splice(0)) u();
    const stores = new Set(keep?.affinityStores.values());
    const directories = new Set(keep?.directories.values());
    await Promise.all([
      ...[...gen.affinityStores.values()].filter((s) => !stores.has(s)).map((s) => s.close().catch(() => {})),
      ...[...gen.directories].filter(([, d]) => !directories.has(d)).map(([route, d]) => {
        this.directoryBus?.detach(route.name, d.table);
        return closeDirectory(d);
      }),
    ]);
    if (gen.cache && gen.cache !== keep?.cache) gen.cache.close();
    if (gen.sharedRedis && gen.sharedRedis !== keep?.sharedRedis) await gen.sharedRedis.close().catch(() => {});
  }

  /**
   * Registers this instance in etcd when the config has `announce` (see discovery/announce.ts):
   * `announce.address`, else `listening` (the bound listen address). Not in a node:cluster worker
   * (the primary announces the box), and not twice. Resolves after the first attempt.
   */
  async announce(listening: HostPort | undefined): Promise<void> {
    const a = this.config.announce;
    if (!a || this.announcer || this.box?.role === 'worker') return;
    const address = a.address ?? listening;
    if (!address || address.port === 0) {
      this.log.warn('announce: no address to announce (set announce.address); not announced');
      return;
    }
    this.announcer = new EtcdAnnouncer({ ...a.etcd, ttlMs: a.etcd.ttl, address, log: this.log });
    await this.announcer.start();
  }

  /** Removes the etcd announcement (before the listeners close, so nobody is sent here meanwhile). */
  async withdraw(): Promise<void> {
    const a = this.announcer;
    this.announcer = undefined;
    await a?.stop();
  }

  async close(): Promise<void> {
    await this.withdraw();
    await Promise.all([...this.retirements].map((run) => run()));
    const gen = this.current;
    this.directoryBus?.close();
    this.box?.close();
    await this.stopFeeds(gen, undefined);
    await this.closeDeferred(gen, undefined);
    await this.upstreams.close();
  }
}

/** Stop a directory tier: its Redis follow, its table (calls in flight end), its seed watch, its source. */
async function closeDirectory(d: RouteDirectory): Promise<void> {
  d.unfollow?.();
  d.table.close();
  await d.seed?.stop().catch(() => {});
  await d.source.close().catch(() => {});
}

/** listen.trustedProxies as a BlockList (IPv4-mapped IPv6 peers are unmapped before the check). */
function trustedList(entries: readonly string[]): BlockList | undefined {
  if (entries.length === 0) return undefined;
  const list = new BlockList();
  for (const e of entries) {
    const [ip, bits] = e.split('/');
    const type = isIP(ip!) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip!, type);
    else list.addSubnet(ip!, Number(bits), type);
  }
  return list;
}

/**
 * Headers of homing's backend protocol (redirects, owners): a client may never send them (forged
 * redirects, owners), and no client ever sees a member's copy, on any route.
 */
function dropInternal(rc: RouteConfig, into: Set<string>): void {
  if (rc.affinity?.redirect) into.add(rc.affinity.redirect.header.toLowerCase());
  if (rc.affinity?.owner) into.add(rc.affinity.owner.toLowerCase());
  into.add('x-accel-redirect');
}
