/**
 * Wires one homing process from a validated config: pools fed by discovery, health, routes with
 * their strategies, upstream pools, metrics, and the faces (HTTP proxy, RESP, admin) on top.
 * Nothing here decides a route; it only connects the parts.
 */
import { BlockList, isIP } from 'node:net';
import type { Logger } from 'pino';
import type { Config, RouteConfig } from './config/schema.js';
import { Pool } from './members/pool.js';
import { createMemberSource, type MemberSource } from './discovery/index.js';
import { Route } from './routing/route.js';
import { createHashPickerFactory } from './routing/hash/index.js';
import { createBalancerFactory } from './routing/balance.js';
import { Upstreams, type UpstreamOptions } from './proxy/upstreams.js';
import { Proxy, type HealthReporter } from './proxy/proxy.js';
import { Metrics } from './admin/metrics.js';
import { PoolHealth } from './health/index.js';
import type { Member } from './members/member.js';
import { AffinityMetrics, createAffinityStore, type AffinityTableStore } from './routing/affinity/index.js';
import { createSharedRedis, type SharedRedis } from './shared/redis.js';
import type { ClusterBus } from './shared/cluster.js';

export interface RuntimeOptions {
  log: Logger;
  metrics?: Metrics;
  /** This process's cluster bus when it is a node:cluster worker (affinity shared between workers). */
  cluster?: ClusterBus;
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
  private readonly upstreamOpts = new Map<Route, UpstreamOptions>();

  private constructor(readonly config: Config, readonly log: Logger, metrics: Metrics, cluster?: ClusterBus) {
    this.metrics = metrics;
    this.affinityMetrics = AffinityMetrics.of(metrics.registry);
    this.sharedRedis = config.routes.some((r) => r.affinity) ? createSharedRedis(config.shared, { log, observer: this.affinityMetrics.redis }) : undefined;
    for (const name of Object.keys(config.pools)) this.pools.set(name, new Pool(name));
    for (const pool of this.pools.values()) {
      const poolName = pool.name;
      this.health.set(
        pool,
        new PoolHealth(pool, config.pools[poolName]!.health, {
          onTransition: (m, up, reason) => {
            metrics.memberUp.labels(poolName, m.id).set(up ? 1 : 0);
            log.warn({ pool: poolName, member: m.id, up, reason }, up ? 'member up' : 'member down');
          },
        }),
      );
    }
    for (const rc of config.routes) {
      const pool = this.pools.get(rc.pool ?? rc.pools![0]!)!;
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
      const route = new Route(rc, {
        pool,
        hash: rc.hash ? createHashPickerFactory(rc.hash) : undefined,
        balance: createBalancerFactory(rc.balance),
        affinity,
      });
      route.onRebuildError = (e) => log.error({ route: rc.name, err: e.message }, 'strategy rebuild failed; keeping the previous member snapshot');
      if (affinity) {
        this.affinityStores.set(route, affinity);
        // An owner that leaves the pool or goes down loses its entries: its keys are guessed again.
        let live = new Set(pool.live.members.map((m) => m.id));
        pool.onChange(() => {
          const now = new Set(pool.live.members.map((m) => m.id));
          for (const id of live) if (!now.has(id)) affinity.dropOwner(id);
          live = now;
        });
      }
      pool.onChange(() => metrics.pickerRebuilds.labels(rc.name).inc());
      this.routes.push(route);
      this.routeByName.set(rc.name, route);
      const pc = config.pools[pool.name]!;
      this.upstreamOpts.set(route, { connections: pc.connections, keepAliveTimeout: pc.keepAliveTimeout, connectTimeout: rc.timeouts.connect });
    }
    const drop = new Set<string>();
    for (const h of config.cache?.principal?.headers ?? []) drop.add(h.toLowerCase());
    for (const rc of config.routes) dropInternal(rc, drop);
    const health = this.health;
    const reporter: HealthReporter = {
      success: (r: Route, m: Member) => health.get(r.pool)!.success(m),
      failure: (r: Route, m: Member) => health.get(r.pool)!.failure(m),
    };
    this.proxy = new Proxy({
      affinity: this.affinityMetrics,
      routes: this.routes,
      upstreams: this.upstreams,
      upstreamOptions: (r) => this.upstreamOpts.get(r)!,
      metrics,
      health: reporter,
      log,
      dropRequestHeaders: drop,
      trustedProxies: trustedList(config.listen.trustedProxies),
    });
  }

  static async create(config: Config, opts: RuntimeOptions): Promise<Runtime> {
    const rt = new Runtime(config, opts.log, opts.metrics ?? new Metrics(), opts.cluster);
    try {
      await rt.startDiscovery();
      for (const h of rt.health.values()) h.start();
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
            for (const m of pool.members.members) this.metrics.memberUp.labels(pool.name, m.id).set(pool.isUp(m.id) ? 1 : 0);
            this.upstreams.retain(this.allMemberIds());
            this.log.info({ pool: pool.name, members: pool.members.members.map((m) => m.id) }, 'pool members');
          },
          (err) => this.log.warn({ pool: pool.name, err: err.message }, 'discovery error; keeping the last good member list'),
        );
      }),
    );
  }

  private allMemberIds(): Set<string> {
    const ids = new Set<string>();
    for (const p of this.pools.values()) for (const m of p.members.members) ids.add(m.id);
    return ids;
  }

  route(name: string): Route | undefined {
    return this.routeByName.get(name);
  }

  async close(): Promise<void> {
    await Promise.all([...this.health.values()].map((h) => h.stop()));
    for (const r of this.routes) r.close();
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

/** Headers of homing's backend protocol that a client may never send (forged redirects, owners). */
function dropInternal(rc: RouteConfig, into: Set<string>): void {
  if (rc.affinity?.redirect) into.add(rc.affinity.redirect.header.toLowerCase());
  if (rc.affinity?.owner) into.add(rc.affinity.owner.toLowerCase());
  into.add('x-accel-redirect');
}
