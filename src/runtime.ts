/**
 * Wires one homing process from a validated config: pools fed by discovery, health, routes with
 * their strategies, upstream pools, metrics, and the faces (HTTP proxy, RESP, admin) on top.
 * Nothing here decides a route; it only connects the parts.
 */
import { BlockList, isIP } from 'node:net';
import type { Logger } from 'pino';
import { CACHE_DEFAULTS, type Config, type RouteConfig } from './config/schema.js';
import { Pool } from './members/pool.js';
import { createMemberSource, EtcdAnnouncer, type MemberSource } from './discovery/index.js';
import type { HostPort } from './config/units.js';
import { Route } from './routing/route.js';
import { createHashPickerFactory } from './routing/hash/index.js';
import { createBalancerFactory } from './routing/balance.js';
import { Upstreams, upstreamOptions, type UpstreamOptions } from './proxy/upstreams.js';
import { Proxy, type HealthReporter } from './proxy/proxy.js';
import { DrainState } from './proxy/exchange.js';
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
}

export class Runtime {
  readonly pools = new Map<string, Pool>();
  readonly routes: Route[] = [];
  readonly routeByName = new Map<string, Route>();
  readonly upstreams = new Upstreams();
  readonly metrics: Metrics;
  readonly proxy: Proxy;
  readonly health = new Map<Pool, PoolHealth>();
  private readonly sources: MemberSource[] = [];
  readonly affinityStores = new Map<Route, AffinityTableStore>();
  readonly affinityMetrics: AffinityMetrics;
  readonly sharedRedis: SharedRedis | undefined;
  private readonly upstreamOpts = new Map<Route, Map<Pool, UpstreamOptions>>();
  /** Set when a graceful shutdown begins (answers close their connections). */
  readonly drain = new DrainState();
  /** Directory tiers of the routes that have one. */
  readonly directories = new Map<Route, RouteDirectory>();
  private readonly directoryBus: DirectoryBus | undefined;
  /** The response cache, when `cache` is configured or a route caches. */
  readonly cache: ResponseCache | undefined;
  private announcer: EtcdAnnouncer | undefined;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    metrics: Metrics,
    cluster?: ClusterBus,
    private readonly box?: PoolStatePublisher | PoolStateReplica,
    directoryBus?: DirectoryBus,
    observe: { access?: AccessLog; spans?: SpanExporter; cacheClock?: () => number } = {},
  ) {
    this.metrics = metrics;
    this.upstreams.engine = config.engine;
    this.affinityMetrics = AffinityMetrics.of(metrics.registry);
    this.directoryBus = directoryBus;
    metrics.trackInflight(() => [...this.pools.values()].flatMap((p) => p.members.members.map((m) => ({ pool: p.name, member: m.id, inflight: m.inflight }))));
    this.sharedRedis = config.routes.some((r) => r.affinity || r.directory || r.cache) || config.cache?.principal ? createSharedRedis(config.shared, { log, observer: this.affinityMetrics.redis }) : undefined;
    for (const name of Object.keys(config.pools)) this.pools.set(name, new Pool(name, [], log));
    this.cache =
      config.cache !== undefined || config.routes.some((r) => r.cache)
        ? new ResponseCache({ config: config.cache ?? CACHE_DEFAULTS, registry: metrics.registry, cluster, redis: this.sharedRedis, redisTimeout: config.shared?.commandTimeout, clock: observe.cacheClock })
        : undefined;
    const replica = box?.role === 'worker' ? box : undefined;
    for (const pool of this.pools.values()) {
      // A worker follows the primary's health: it checks nothing and judges nothing itself.
      if (replica) continue;
      const poolName = pool.name;
      this.health.set(
        pool,
        new PoolHealth(pool, config.pools[poolName]!.health, {
          log,
          onTransition: (m, up, reason) => {
            metrics.memberUp.labels(poolName, m.id).set(up ? 1 : 0);
            log.warn({ pool: poolName, member: m.id, up, reason }, up ? 'member up' : 'member down');
          },
        }),
      );
    }
    for (const rc of config.routes) {
      const pools = (rc.pools ?? [rc.pool!]).map((name) => this.pools.get(name)!);
      const affinity = rc.affinity
        ? createAffinityStore({
            route: rc.name,
            ttl: rc.affinity.ttl,
            capacity: rc.affinity.capacity,
            redis: this.sharedRedis,
            cluster,
            metrics: this.affinityMetrics,
            log,
            missTimeout: rc.affinity.missTimeout,
          })
        : undefined;
      const directory = rc.directory ? this.createDirectory(rc, () => route) : undefined;
      const route: Route = new Route(rc, {
        pools,
        hash: rc.hash ? createHashPickerFactory(rc.hash) : undefined,
        balance: createBalancerFactory(rc.balance),
        affinity,
        directory: directory?.table,
        cache: this.cache?.route(rc),
      });
      if (directory) this.directories.set(route, directory);
      route.onRebuildError = (e) => log.error({ route: rc.name, err: e.message }, 'strategy rebuild failed; keeping the previous member snapshot');
      const opts = new Map<Pool, UpstreamOptions>();
      for (const pool of pools) {
        if (affinity) {
          // An owner that leaves the pool or goes down loses its entries: its keys are guessed again.
          let live = new Set(pool.live.members.map((m) => m.id));
          pool.onChange(() => {
            const now = new Set(pool.live.members.map((m) => m.id));
            for (const id of live) if (!now.has(id) && !route.liveMember(id)) affinity.dropOwner(id);
            live = now;
          });
        }
        pool.onChange(() => metrics.pickerRebuilds.labels(rc.name).inc());
        const pc = config.pools[pool.name]!;
        opts.set(pool, upstreamOptions(pc.connections, pc.keepAliveTimeout, rc.timeouts.connect));
      }
      if (affinity) this.affinityStores.set(route, affinity);
      this.routes.push(route);
      this.routeByName.set(rc.name, route);
      this.upstreamOpts.set(route, opts);
    }
    const internal = new Set<string>();
    for (const rc of config.routes) dropInternal(rc, internal);
    const drop = new Set(internal);
    for (const h of config.cache?.principal?.headers ?? []) drop.add(h.toLowerCase());
    const health = this.health;
    const reporter: HealthReporter = replica
      ? { success: (p: Pool, m: Member) => replica.success(p, m), failure: (p: Pool, m: Member) => replica.failure(p, m) }
      : {
          success: (p: Pool, m: Member) => health.get(p)!.success(m),
          failure: (p: Pool, m: Member) => health.get(p)!.failure(m),
        };
    this.proxy = new Proxy({
      affinity: this.affinityMetrics,
      router: new Router(this.routes),
      hygiene: { dropRequestHeaders: drop, trustedProxies: trustedList(config.listen.trustedProxies), tracing: config.tracing },
      upstreams: this.upstreams,
      upstreamOptions: (r, p) => this.upstreamOpts.get(r)!.get(p)!,
      metrics,
      health: reporter,
      log,
      dropResponseHeaders: internal,
      drain: this.drain,
      access: observe.access,
      spans: observe.spans,
      cache: this.cache,
    });
  }

  /**
   * A route's directory tier: its source (HTTP or Redis), the table in front of it (answers must
   * name a pool of the route or a member of one), metrics, and the seed file when there is one.
   */
  private createDirectory(rc: RouteConfig, route: () => Route): RouteDirectory {
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
      if (this.sharedRedis) {
        shared = new SharedDirectorySource(this.sharedRedis, rc.name, direct, { ttl: d.ttl, negativeTtl: d.negativeTtl, readTimeout: Math.min(250, d.lookup.timeout) });
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
      validate: (value) => route().allowsDirectoryAnswer(value),
      observer,
    });
    bus?.attach(rc.name, table);
    const unfollow = shared?.follow(table, (key, value) => bus?.publish(rc.name, key, value), log);
    // Seeds live in the primary's table (a worker asks it).
    const seed = d.seed === undefined || bus?.isWorker ? undefined : new SeedFile(d.seed);
    return { table, source, direct, seed, shared, unfollow };
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
      if (opts.pools?.role === 'worker') {
        const follow = [...rt.pools.values()].map((pool) => ({ pool, passive: Boolean(config.pools[pool.name]!.health?.passive) }));
        await opts.pools.follow(follow, (pool) => rt.membersChanged(pool));
      } else {
        await rt.startDiscovery();
        for (const h of rt.health.values()) h.start();
        opts.pools?.share([...rt.pools.values()].map((p) => [p, rt.health.get(p)] as const));
      }
      // A node:cluster primary stands for its box (its workers listen on the configured address).
      if (opts.pools?.role === 'primary') await rt.announce(config.listen.http ?? config.listen.https?.address);
      // After the members are known: seed entries must name a pool or a member of the route.
      await rt.startDirectories();
    } catch (e) {
      await rt.close();
      throw e;
    }
    return rt;
  }

  private async startDiscovery(): Promise<void> {
    await Promise.all(
      [...this.pools.values()].map(async (pool) => {
        const source = createMemberSource(this.config.pools[pool.name]!);
        this.sources.push(source);
        await source.start(
          (specs) => {
            pool.setMembers(specs);
            this.membersChanged(pool);
            this.log.info({ pool: pool.name, members: pool.members.members.map((m) => m.id) }, 'pool members');
          },
          (err) => this.log.warn({ pool: pool.name, err: err.message }, 'discovery error; keeping the last good member list'),
        );
      }),
    );
  }

  /**
   * After `pool`'s member list changed: a gauge for each member it has and no series left for a
   * member that left; upstream connections kept only to members some pool still has.
   */
  private membersChanged(pool: Pool): void {
    for (const m of pool.members.members) this.metrics.memberUp.labels(pool.name, m.id).set(pool.isUp(m.id) ? 1 : 0);
    const routes = this.routes.filter((r) => r.pool === pool).map((r) => r.name);
    this.metrics.retainMembers(pool.name, routes, new Set(pool.members.members.map((m) => m.id)));
    this.upstreams.retain(this.allMemberIds());
    if (this.box?.role === 'primary') this.box.changed(pool);
  }

  private allMemberIds(): Set<string> {
    const ids = new Set<string>();
    for (const p of this.pools.values()) for (const m of p.members.members) ids.add(m.id);
    return ids;
  }

  route(name: string): Route | undefined {
    return this.routeByName.get(name);
  }

  /** Load each directory's seed file (and keep watching it); a bad seed keeps the last good one. */
  private async startDirectories(): Promise<void> {
    await Promise.all(
      [...this.directories].map(async ([route, d]) => {
        if (d.direct instanceof RedisDirectorySource) d.direct.connect();
        if (d.seed) {
          await d.seed.start(
            (entries) => {
              try {
                d.table.seed(entries);
                // Workers hold copies of what they asked: seeded keys are told again.
                const before = d.seeded ?? new Map<string, string>();
                for (const [k, v] of entries) if (before.get(k) !== v) this.directoryBus?.publish(route.name, k, v);
                for (const k of before.keys()) if (!entries.has(k)) this.directoryBus?.publish(route.name, k);
                d.seeded = entries;
                this.log.info({ route: route.name, entries: entries.size }, 'directory seed loaded');
              } catch (e) {
                this.log.warn({ route: route.name, err: (e as Error).message }, 'directory seed refused; keeping the last good one');
              }
            },
            (err) => this.log.warn({ route: route.name, err: err.message }, 'directory seed error; keeping the last good one'),
          );
        }
      }),
    );
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
    for (const d of this.directories.values()) {
      d.unfollow?.();
      d.table.close();
      await d.seed?.stop().catch(() => {});
      await d.source.close().catch(() => {});
    }
    this.directoryBus?.close();
    this.box?.close();
    await Promise.all([...this.health.values()].map((h) => h.stop()));
    for (const r of this.routes) r.close();
    this.cache?.close();
    await Promise.all([...this.affinityStores.values()].map((s) => s.close().catch(() => {})));
    await this.sharedRedis?.close().catch(() => {});
    await Promise.all(this.sources.map((s) => s.stop().catch(() => {})));
    await this.upstreams.close();
  }
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
