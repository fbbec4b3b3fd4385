/**
 * The directory tier beyond one process, so a box, and a fleet, ask the directory once per key:
 *
 * - **Box** (`workers`): a worker's table asks the primary instead of the directory
 *   (`BoxDirectorySource`); the primary's table answers, coalescing every worker's question for a
 *   key into its one directory call, and hands its answer's remaining lifetime along so the
 *   copies expire together. Keys set or forgotten by hand in the primary (admin API) reach every
 *   worker (`DirectoryBus.publish`).
 * - **Instances** (`shared.redis`): the primary's (or a single process's) source reads an answer
 *   from Redis before asking the directory, and writes what the directory said, with its ttl
 *   (`SharedDirectorySource`): one instance's call serves the fleet. A key set or forgotten by
 *   hand is published, and every instance applies it. Redis down: each instance asks the
 *   directory itself; requests never fail for it.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { DirectoryAnswer, DirectoryResult, DirectorySource } from '../routing/directory/table.js';
import type { SharedRedis } from './redis.js';

/** What the box and the fleet apply to a route's table when a key is set or forgotten by hand. */
export interface DirectoryReplica {
  set(key: string, value: string, source?: 'manual' | 'seed'): void;
  delete(key: string): boolean;
}

/** The primary's table, as the box asks it. */
export interface DirectoryAnswerer {
  get(key: string): DirectoryResult | Promise<DirectoryResult>;
  /** Remaining lifetime of the entry, ms (null: never expires). */
  peek(key: string): { expiresIn: number | null } | undefined;
}

type Op = { route: string; op: 'set'; key: string; value: string } | { route: string; op: 'del'; key: string };

interface Question {
  homing: 'directory-q';
  id: number;
  route: string;
  key: string;
}

interface Reply {
  homing: 'directory-a';
  id: number;
  found?: string;
  ttl?: number;
  unknown?: boolean;
  error?: string;
}

interface OpMessage {
  homing: 'directory-op';
  ops: Op[];
}

function kind(m: unknown): unknown {
  return typeof m === 'object' && m !== null ? (m as { homing?: unknown }).homing : undefined;
}

/** The box's directory channel: workers ask, the primary answers and tells of hand-made changes. */
export class DirectoryBus {
  private readonly role: 'worker' | 'primary' | 'none';
  private readonly answerers = new Map<string, DirectoryAnswerer>();
  private readonly replicas = new Map<string, DirectoryReplica>();
  private readonly pending = new Map<number, { resolve(a: DirectoryAnswer): void; reject(e: Error): void }>();
  private nextId = 1;
  private listening = false;

  /** `primary`: this process forks the workers (it answers); otherwise a worker asks, or nothing happens. */
  constructor(primary: boolean, private readonly log?: Logger) {
    this.role = cluster.isWorker && typeof process.send === 'function' ? 'worker' : primary ? 'primary' : 'none';
  }

  get isWorker(): boolean {
    return this.role === 'worker';
  }

  /** Primary: answer the workers' questions about `route` from `table`. Worker: apply the primary's changes to `table`. */
  attach(route: string, table: DirectoryAnswerer & DirectoryReplica): void {
    if (this.role === 'none') return;
    if (this.role === 'primary') this.answerers.set(route, table);
    else this.replicas.set(route, table);
    if (this.listening) return;
    this.listening = true;
    if (this.role === 'primary') cluster.on('message', this.onWorker);
    else process.on('message', this.onPrimary);
  }

  /** Stop answering or applying for `route` with `table` (a reload replaced or removed the route's table). */
  detach(route: string, table: DirectoryAnswerer & DirectoryReplica): void {
    if (this.answerers.get(route) === table) this.answerers.delete(route);
    if (this.replicas.get(route) === table) this.replicas.delete(route);
  }

  /** Worker: what the primary's table says of `key` (rejects when it has no answer to give). */
  ask(route: string, key: string, signal: AbortSignal): Promise<DirectoryAnswer> {
    if (!process.connected || !process.send) return Promise.reject(new Error('not connected to the primary'));
    const id = this.nextId++;
    return new Promise<DirectoryAnswer>((resolve, reject) => {
      const onAbort = (): void => {
        this.pending.delete(id);
        reject(new Error('the primary did not answer in time'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (a) => {
          signal.removeEventListener('abort', onAbort);
          resolve(a);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      const q: Question = { homing: 'directory-q', id, route, key };
      try {
        process.send!(q, undefined, undefined, (err) => {
          if (err) this.settle({ homing: 'directory-a', id, error: `not sent to the primary: ${err.message}` });
        });
      } catch (e) {
        this.settle({ homing: 'directory-a', id, error: `not sent to the primary: ${(e as Error).message}` });
      }
    });
  }

  /** Primary: tell every worker that `key` of `route` was set (or forgotten, without `value`) by hand. */
  publish(route: string, key: string, value?: string): void {
    if (this.role !== 'primary') return;
    const msg: OpMessage = { homing: 'directory-op', ops: [value === undefined ? { route, op: 'del', key } : { route, op: 'set', key, value }] };
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w?.isConnected()) continue;
      try {
        w.send(msg, undefined, () => {});
      } catch {
        // A worker going away: it starts empty when replaced.
      }
    }
  }

  close(): void {
    if (!this.listening) return;
    this.listening = false;
    if (this.role === 'primary') cluster.off('message', this.onWorker);
    else process.off('message', this.onPrimary);
    for (const p of this.pending.values()) p.reject(new Error('closed'));
    this.pending.clear();
  }

  private readonly onWorker = (worker: Worker, m: unknown): void => {
    if (kind(m) !== 'directory-q') return;
    const q = m as Question;
    const table = this.answerers.get(q.route);
    const reply = (r: Omit<Reply, 'homing' | 'id'>): void => {
      try {
        if (worker.isConnected()) worker.send({ homing: 'directory-a', id: q.id, ...r } satisfies Reply, undefined, () => {});
      } catch {
        // The worker went away.
      }
    };
    if (!table || typeof q.key !== 'string') return reply({ error: `no directory for route "${q.route}"` });
    const toReply = (res: DirectoryResult): void => {
      if (res.kind === 'unknown') return reply({ unknown: true });
      if (res.kind === 'unavailable') return reply({ error: res.message });
      // The copy lives as long as the primary's entry (a stale or pinned one: see `ttl` below).
      const e = table.peek(q.key);
      const left = e?.expiresIn;
      reply({ found: res.value, ttl: left === null || left === undefined ? undefined : res.stale ? 0 : Math.max(0, left) });
    };
    try {
      const r = table.get(q.key);
      if (r instanceof Promise) r.then(toReply, (e: unknown) => reply({ error: String(e) }));
      else toReply(r);
    } catch (e) {
      this.log?.warn({ err: (e as Error).message }, 'directory question failed in the primary');
      reply({ error: 'the primary failed to answer' });
    }
  };

  private readonly onPrimary = (m: unknown): void => {
    const k = kind(m);
    if (k === 'directory-a') return this.settle(m as Reply);
    if (k !== 'directory-op') return;
    for (const op of (m as OpMessage).ops ?? []) {
      const t = this.replicas.get(op.route);
      if (!t || typeof op.key !== 'string') continue;
      try {
        if (op.op === 'set' && typeof op.value === 'string') t.set(op.key, op.value, 'manual');
        else if (op.op === 'del') t.delete(op.key);
      } catch (e) {
        this.log?.warn({ route: op.route, err: (e as Error).message }, 'directory change from the primary not applied');
      }
    }
  };

  private settle(r: Reply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if (r.error !== undefined) p.reject(new Error(r.error));
    else if (r.unknown) p.resolve({ unknown: true });
    else if (typeof r.found === 'string') p.resolve(r.ttl === undefined ? { found: r.found } : { found: r.found, ttl: r.ttl });
    else p.reject(new Error('the primary answered nothing'));
  }
}

/** A worker's directory source: the primary's table. */
export class BoxDirectorySource implements DirectorySource {
  constructor(
    private readonly bus: DirectoryBus,
    private readonly route: string,
  ) {}

  lookup(key: string, signal: AbortSignal): Promise<DirectoryAnswer> {
    return this.bus.ask(this.route, key, signal);
  }

  async close(): Promise<void> {}
}

/** Redis value standing for "no such key" (never a valid answer: answers are never empty). */
const UNKNOWN = '';

/** The instance tier: an answer in Redis before the directory itself; what the directory says is written back. */
export class SharedDirectorySource implements DirectorySource {
  private readonly channel: string;
  private readonly keyPrefix: string;

  constructor(
    private readonly redis: SharedRedis,
    private readonly route: string,
    private readonly inner: DirectorySource & { close(): Promise<void> },
    private readonly opts: { ttl: number; negativeTtl: number; readTimeout: number },
  ) {
    this.keyPrefix = `${redis.prefix}dir:${route}:`;
    this.channel = `${redis.prefix}dir:${route}`;
  }

  async lookup(key: string, signal: AbortSignal): Promise<DirectoryAnswer> {
    const k = this.keyPrefix + key;
    const hit = await this.redis.read(k, this.opts.readTimeout);
    if (hit) {
      if (hit.value === UNKNOWN) return { unknown: true };
      return hit.ttl > 0 ? { found: hit.value, ttl: hit.ttl } : { found: hit.value };
    }
    const a = await this.inner.lookup(key, signal);
    if ('unknown' in a) this.redis.write(k, UNKNOWN, this.opts.negativeTtl);
    else {
      const ttl = a.ttl ?? this.opts.ttl;
      if (ttl > 0) this.redis.write(k, a.found, ttl);
    }
    return a;
  }

  /** Tell every instance `key` was set (or forgotten, without `value`) by hand; its Redis copy goes. */
  publish(key: string, value?: string): void {
    this.redis.remove(this.keyPrefix + key);
    this.redis.publish(this.channel, JSON.stringify({ i: this.redis.instanceId, k: key, v: value }));
  }

  /** Apply other instances' hand-made changes to `table`; `also` hears each one applied (to pass it to the workers). */
  follow(table: DirectoryReplica, also: (key: string, value?: string) => void, log: Logger): () => void {
    return this.redis.subscribe(this.channel, (message) => {
      try {
        const m = JSON.parse(message) as { i?: unknown; k?: unknown; v?: unknown };
        if (m.i === this.redis.instanceId || typeof m.k !== 'string') return;
        if (typeof m.v === 'string') table.set(m.k, m.v, 'manual');
        else table.delete(m.k);
        also(m.k, typeof m.v === 'string' ? m.v : undefined);
      } catch (e) {
        log.warn({ route: this.route, err: (e as Error).message }, 'directory change from another instance not applied');
      }
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
