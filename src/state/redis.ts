/**
 * The instance tier of shared state: one Redis (single node, Sentinel or Cluster,
 * config `shared.redis`) seen by every homing instance, plus pub/sub for invalidations.
 *
 * Redis is an optimisation, never a dependency of a request: every call here returns at once or
 * within its timeout, never throws, and is skipped while Redis is down. "Down" means the command
 * connection is not ready (ioredis reconnects by itself, with the offline queue off so nothing
 * piles up) or a circuit is open after consecutive failures or timeouts (a hung or overloaded
 * Redis). Each transition logs one warning and moves `homing_shared_redis_up`; every failure
 * counts in `homing_shared_redis_errors_total` (through the observer).
 *
 * Two connections: commands, and a subscriber (ioredis re-subscribes after a reconnect).
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';

export type SharedConfig = NonNullable<Config['shared']>;
export type SharedRedisConfig = SharedConfig['redis'];

/** Where failures and up/down transitions are reported (AffinityMetrics.redis implements it). */
export interface SharedRedisObserver {
  /** One failure: `op` is the command kind (`read`, `write`, `del`, `publish`, `subscribe`) or `connection`. */
  error(op: string): void;
  up(isUp: boolean): void;
}

export interface SharedRedisOptions {
  log: Logger;
  observer?: SharedRedisObserver;
  /** Deadline of one command before it counts as failed, ms (default 250). */
  commandTimeout?: number;
  /** Deadline to establish a connection, ms (default 1000). */
  connectTimeout?: number;
  /** Longest wait between reconnection attempts, ms (default 1000). */
  maxReconnectDelay?: number;
  /** Consecutive failures that open the circuit (default 3). */
  failureThreshold?: number;
  /** How long an open circuit skips Redis before trying again, ms (default 1000). */
  openFor?: number;
}

/** A value read with its remaining lifetime (ms; -1 when it has none). */
export interface SharedValue {
  value: string;
  ttl: number;
}

export type Client = Redis | Cluster;
type State = 'unknown' | 'up' | 'down';

const DEL_IF_EQUALS = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

export class SharedRedis {
  /** Key and channel prefix (config `shared.prefix`, default `homing:`). */
  readonly prefix: string;
  /** This process's id in pub/sub messages, so it can skip its own. */
  readonly instanceId = randomBytes(9).toString('base64url');
  readonly client: Client;
  readonly subscriber: Client;
  private readonly log: Logger;
  private readonly observer: SharedRedisObserver | undefined;
  private readonly failureThreshold: number;
  private readonly openFor: number;
  private readonly where: string;
  private failures = 0;
  private openUntil = 0;
  private openTimer: NodeJS.Timeout | undefined;
  private state: State = 'unknown';
  private closed = false;
  private readonly upListeners = new Set<(up: boolean) => void>();
  private readonly handlers = new Map<string, Set<(message: string) => void>>();

  constructor(cfg: SharedConfig, opts: SharedRedisOptions) {
    this.prefix = cfg.prefix;
    this.log = opts.log;
    this.observer = opts.observer;
    this.failureThreshold = opts.failureThreshold ?? 3;
    this.openFor = opts.openFor ?? 1000;
    this.where = describe(cfg.redis);
    const commandTimeout = opts.commandTimeout ?? 250;
    const connectTimeout = opts.connectTimeout ?? 1000;
    const maxDelay = opts.maxReconnectDelay ?? 1000;
    const retry = (times: number): number => Math.min(times * 50, maxDelay);
    // Commands: fail fast, never queue while disconnected, never retry on another connection.
    const command: RedisOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout, connectTimeout, retryStrategy: retry, lazyConnect: false };
    // Subscriber: SUBSCRIBE may wait for the connection; nothing else is sent on it.
    const subscribe: RedisOptions = { enableOfflineQueue: true, maxRetriesPerRequest: null, connectTimeout, retryStrategy: retry, autoResubscribe: true, lazyConnect: false };
    this.client = connect(cfg.redis, command, retry);
    this.subscriber = connect(cfg.redis, subscribe, retry);
    this.observer?.up(false);

    const update = (): void => this.update();
    this.client.on('ready', () => {
      this.failures = 0;
      update();
    });
    this.client.on('close', update);
    this.client.on('end', update);
    this.client.on('reconnecting', update);
    this.client.on('error', (err: Error) => {
      this.observer?.error('connection');
      this.log.debug({ redis: this.where, err: err.message }, 'shared redis connection error');
      update();
    });
    this.subscriber.on('error', (err: Error) => {
      this.log.debug({ redis: this.where, err: err.message }, 'shared redis subscriber error');
    });
    this.subscriber.on('message', (channel: string, message: string) => {
      const hs = this.handlers.get(channel);
      if (!hs) return;
      for (const h of hs) {
        try {
          h(message);
        } catch (e) {
          this.log.warn({ channel, err: (e as Error).message }, 'shared redis message handler failed');
        }
      }
    });
  }

  /** Redis usable now: connected, and no open circuit. */
  get up(): boolean {
    return this.state === 'up';
  }

  /** Called with the new state on every up/down transition. Returns the unsubscribe function. */
  onUpChange(fn: (up: boolean) => void): () => void {
    this.upListeners.add(fn);
    return () => this.upListeners.delete(fn);
  }

  /**
   * `key`'s value and remaining TTL, or undefined: missing, Redis down, failed, or no answer
   * within `timeoutMs`. Never rejects.
   */
  read(key: string, timeoutMs: number): Promise<SharedValue | undefined> {
    return this.run('read', timeoutMs, async (c) => {
      const [g, t] = (await c.pipeline().get(key).pttl(key).exec()) ?? [];
      const err = g?.[0] ?? t?.[0];
      if (err) throw err;
      const value = g?.[1];
      return typeof value === 'string' ? { value, ttl: typeof t?.[1] === 'number' ? t[1] : -1 } : undefined;
    });
  }

  /**
   * Run `fn` on the command connection within `timeoutMs`, counted by the circuit like every
   * command: undefined when Redis is down, the command failed, or it did not answer in time.
   * Never rejects. For what read/write/remove do not cover (binary values, hashes, sets, scans).
   */
  run<T>(op: string, timeoutMs: number, fn: (c: Client) => Promise<T>): Promise<T | undefined> {
    const c = this.usable();
    if (!c) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        // Timers run before sockets are read: when this process was busy (or not scheduled) past
        // the deadline, the reply may be waiting unread. Read what has arrived, then decide.
        setImmediate(() => {
          if (done) return;
          done = true;
          this.failed(op, `no answer within ${timeoutMs}ms`);
          resolve(undefined);
        });
      }, timeoutMs);
      fn(c).then(
        (v) => {
          clearTimeout(timer);
          if (done) return;
          done = true;
          this.succeeded();
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          if (done) return;
          done = true;
          this.failed(op, err);
          resolve(undefined);
        },
      );
    });
  }

  /** SET key value PX ttlMs, fire and forget. Returns false when skipped (Redis down). */
  write(key: string, value: string, ttlMs: number): boolean {
    const c = this.usable();
    if (!c) return false;
    c.set(key, value, 'PX', Math.max(1, Math.ceil(ttlMs))).then(this.ok, (e: unknown) => this.failed('write', e));
    return true;
  }

  /** DEL key, fire and forget. */
  remove(key: string): boolean {
    const c = this.usable();
    if (!c) return false;
    c.del(key).then(this.ok, (e: unknown) => this.failed('del', e));
    return true;
  }

  /** DEL key only while it still holds `value` (atomic), fire and forget. */
  removeIf(key: string, value: string): boolean {
    const c = this.usable();
    if (!c) return false;
    c.eval(DEL_IF_EQUALS, 1, key, value).then(this.ok, (e: unknown) => this.failed('del', e));
    return true;
  }

  /** PUBLISH, fire and forget. */
  publish(channel: string, message: string): boolean {
    const c = this.usable();
    if (!c) return false;
    c.publish(channel, message).then(this.ok, (e: unknown) => this.failed('publish', e));
    return true;
  }

  /** Call `handler` for every message on `channel` (re-subscribed after reconnects). */
  subscribe(channel: string, handler: (message: string) => void): () => void {
    let hs = this.handlers.get(channel);
    if (!hs) {
      this.handlers.set(channel, (hs = new Set()));
      this.subscriber.subscribe(channel).catch((e: unknown) => {
        this.observer?.error('subscribe');
        this.log.warn({ redis: this.where, channel, err: errMessage(e) }, 'shared redis subscribe failed');
      });
    }
    hs.add(handler);
    return () => {
      const s = this.handlers.get(channel);
      if (!s?.delete(handler) || s.size > 0) return;
      this.handlers.delete(channel);
      if (!this.closed) this.subscriber.unsubscribe(channel).catch(() => {});
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.openTimer) clearTimeout(this.openTimer);
    this.upListeners.clear();
    this.handlers.clear();
    // QUIT lets queued writes finish; never wait long for a Redis that is away.
    const bye = (c: Client): Promise<void> =>
      Promise.race([
        Promise.resolve()
          .then(() => c.quit())
          .then(
            () => undefined,
            () => undefined,
          ),
        new Promise<void>((r) => setTimeout(r, 300).unref()),
      ]).then(() => c.disconnect());
    await Promise.all([bye(this.client), bye(this.subscriber)]);
  }

  // ——— circuit ———

  private usable(): Client | undefined {
    return this.state === 'up' ? this.client : undefined;
  }

  private readonly ok = (): void => this.succeeded();

  private succeeded(): void {
    this.failures = 0;
  }

  private failed(op: string, err: unknown): void {
    this.observer?.error(op);
    if (this.closed) return;
    this.log.debug({ redis: this.where, op, err: errMessage(err) }, 'shared redis command failed');
    if (++this.failures >= this.failureThreshold && this.openUntil === 0) {
      this.openUntil = performance.now() + this.openFor;
      this.openTimer = setTimeout(() => {
        // Half-open: let commands through again; one more failure re-opens at once.
        this.openUntil = 0;
        this.openTimer = undefined;
        this.failures = this.failureThreshold - 1;
        this.update();
      }, this.openFor);
      this.openTimer.unref();
      this.update();
    }
  }

  private update(): void {
    if (this.closed) return;
    const up = this.client.status === 'ready' && this.openUntil === 0;
    const next: State = up ? 'up' : 'down';
    if (next === this.state) return;
    const was = this.state;
    this.state = next;
    this.observer?.up(up);
    if (up) {
      if (was === 'unknown') this.log.info({ redis: this.where }, 'shared redis connected');
      else this.log.warn({ redis: this.where }, 'shared redis reachable again: sharing state across instances resumed');
    } else {
      const why = this.openUntil !== 0 ? `${this.failures} consecutive failures` : `connection ${this.client.status}`;
      this.log.warn({ redis: this.where, why }, 'shared redis unavailable: running on local state only');
    }
    for (const fn of this.upListeners) {
      try {
        fn(up);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'shared redis up/down listener failed');
      }
    }
  }
}

function connect(cfg: SharedRedisConfig, opts: RedisOptions, retry: (times: number) => number): Client {
  if ('url' in cfg) return new Redis(cfg.url, opts);
  if ('sentinels' in cfg) return new Redis({ ...opts, sentinels: cfg.sentinels.map(({ host, port }) => ({ host, port })), name: cfg.name });
  const { enableOfflineQueue, retryStrategy: _r, ...redisOptions } = opts;
  const co: ClusterOptions = { enableOfflineQueue, clusterRetryStrategy: retry, redisOptions, slotsRefreshTimeout: opts.connectTimeout };
  return new Cluster(
    cfg.cluster.map(({ host, port }) => ({ host, port })),
    co,
  );
}

/** For logs: where Redis is, without credentials. */
function describe(cfg: SharedRedisConfig): string {
  if ('url' in cfg) {
    try {
      const u = new URL(cfg.url);
      return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
    } catch {
      return 'redis (unparsable url)';
    }
  }
  if ('sentinels' in cfg) return `sentinel ${cfg.name} via ${cfg.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  return `cluster ${cfg.cluster.map((s) => `${s.host}:${s.port}`).join(',')}`;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Build the shared Redis of a config (`shared.redis`), or undefined when it has none. */
export function createSharedRedis(cfg: Config['shared'], opts: SharedRedisOptions): SharedRedis | undefined {
  return cfg ? new SharedRedis(cfg, { ...opts, commandTimeout: opts.commandTimeout ?? cfg.commandTimeout }) : undefined;
}
