/**
 * The worker tier of shared state: with node:cluster workers, an affinity entry
 * learned, deleted or dropped in one worker reaches the others, so a box pays at most one
 * redirect per key (like nginx's shared dict).
 *
 * Workers send ops to the primary over the cluster IPC channel; the primary relays each message
 * to every other worker (and to tables attached in the primary itself, e.g. for the admin API);
 * a receiver applies ops to its local table and never sends them on. IPC costs a JSON
 * serialisation and a syscall per message, so ops are batched per event-loop turn.
 *
 * Message (worker ⇄ primary): `{ homing: 'affinity', batch: [[route, op, key, owner?], …] }`.
 * A single `{ homing: 'affinity', route, op, key, owner }` is accepted too.
 *
 * A worker that starts later (or replaces a dead one) begins empty; a key it misses is asked of
 * the primary, whose tables mirror every worker's ops (then Redis, when `shared.redis` is set),
 * before it is guessed.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';

export type ClusterOp = 'set' | 'del' | 'drop';

/** [route, op, key ('' for drop), owner (set, drop)] */
export type ClusterOpTuple = [string, ClusterOp, string, string?];

export interface AffinityMessage {
  homing: 'affinity';
  batch?: ClusterOpTuple[];
  route?: string;
  op?: ClusterOp;
  key?: string;
  owner?: string;
}

/** What a bus applies remote ops to: LocalAffinityTable fits. */
export interface AffinityReplica {
  set(key: string, owner: string): unknown;
  delete(key: string): unknown;
  dropOwner(owner: string): unknown;
  /** The owner known here, without touching recency (answers a sibling's query). */
  peek?(key: string): string | undefined;
}

/** Worker → primary: who owns `key` of `route`? Answered with an AffinityAnswer. */
interface AffinityQuery {
  homing: 'affinity-q';
  id: number;
  route: string;
  key: string;
}

interface AffinityAnswer {
  homing: 'affinity-a';
  id: number;
  owner: string | null;
}

/** Returned by `attach`: ReplicaChannel of routing/affinity/store.ts. */
export interface ClusterChannel {
  publish(op: ClusterOp, key: string, owner?: string): void;
  detach(): void;
  /**
   * Ask the primary (which mirrors every worker's ops) for the owner of a key this worker does
   * not know: closes the window where a sibling has just learned it and its op is still in
   * flight. Absent outside a worker.
   */
  query?(key: string): Promise<string | undefined>;
}

export interface ClusterBusOptions {
  log?: Logger;
  /** Ops per IPC message at most (default 1000): bounds one message's size and parse time. */
  maxBatch?: number;
  /** How long a worker waits for the primary's answer to a query, ms (default 20; `attach` may set a route's own); then "unknown". */
  queryTimeout?: number;
}

type Role = 'worker' | 'primary' | 'none';

const NOOP_CHANNEL: ClusterChannel = { publish() {}, detach() {} };

function isQuery(m: unknown): m is AffinityQuery {
  return typeof m === 'object' && m !== null && (m as { homing?: unknown }).homing === 'affinity-q';
}

function isAnswer(m: unknown): m is AffinityAnswer {
  return typeof m === 'object' && m !== null && (m as { homing?: unknown }).homing === 'affinity-a';
}

function isAffinityMessage(m: unknown): m is AffinityMessage {
  return typeof m === 'object' && m !== null && (m as { homing?: unknown }).homing === 'affinity';
}

export class ClusterBus {
  private role: Role;
  private readonly log: Logger | undefined;
  private readonly maxBatch: number;
  private readonly replicas = new Map<string, Set<AffinityReplica>>();
  private queue: ClusterOpTuple[] = [];
  private flushScheduled = false;
  private listening = false;
  /** Ops applied from other processes (tests, debugging). */
  received = 0;
  /** IPC messages sent. */
  sent = 0;

  private readonly queryTimeout: number;
  private nextQueryId = 1;
  private readonly pendingQueries = new Map<number, { resolve: (owner: string | undefined) => void; timer: NodeJS.Timeout }>();

  constructor(opts: ClusterBusOptions = {}) {
    this.log = opts.log;
    this.maxBatch = opts.maxBatch ?? 1000;
    this.queryTimeout = opts.queryTimeout ?? 20;
    this.role = cluster.isWorker && typeof process.send === 'function' ? 'worker' : 'none';
  }

  /** True when ops actually travel (a worker, or a primary running the relay). */
  get active(): boolean {
    return this.role !== 'none';
  }

  /**
   * In the cluster primary: relay every worker's ops to the other workers, and apply them to
   * tables attached here. Call before forking and before `attach` (until then the primary is
   * not in a cluster and attach gives a no-op channel). A no-op in a worker.
   */
  startClusterRelay(): this {
    if (this.role === 'worker' || this.listening) return this;
    this.role = 'primary';
    this.listening = true;
    cluster.on('message', this.onWorkerMessage);
    return this;
  }

  /**
   * Mirror `table` of route `routeName` across the box: ops the returned channel publishes
   * reach the other processes; theirs are applied to `table`. A no-op channel outside a cluster.
   * `queryTimeout`: this route's wait for the primary's answer (default: the bus's).
   */
  attach(routeName: string, table: AffinityReplica, opts: { queryTimeout?: number } = {}): ClusterChannel {
    if (this.role === 'none') return NOOP_CHANNEL;
    let set = this.replicas.get(routeName);
    if (!set) this.replicas.set(routeName, (set = new Set()));
    set.add(table);
    if (this.role === 'worker' && !this.listening) {
      this.listening = true;
      process.on('message', this.onPrimaryMessage);
    }
    return {
      publish: (op, key, owner) => this.enqueue(owner === undefined ? [routeName, op, key] : [routeName, op, key, owner]),
      query: this.role === 'worker' ? (key) => this.query(routeName, key, opts.queryTimeout ?? this.queryTimeout) : undefined,
      detach: () => {
        const s = this.replicas.get(routeName);
        s?.delete(table);
        if (s && s.size === 0) this.replicas.delete(routeName);
      },
    };
  }

  /** Worker: ask the primary who owns `key`; undefined when unknown, unreachable or not answered within `timeoutMs`. */
  private query(route: string, key: string, timeoutMs: number): Promise<string | undefined> {
    if (!process.connected || !process.send) return Promise.resolve(undefined);
    // Ops learned this turn go first, so the primary's answer reflects them.
    this.flush();
    const id = this.nextQueryId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        // Timers run before the channel is read: an answer that came while this worker was busy
        // past the deadline may be waiting unread. Read what has arrived, then give up.
        setImmediate(() => {
          if (this.pendingQueries.delete(id)) resolve(undefined);
        });
      }, timeoutMs);
      timer.unref();
      this.pendingQueries.set(id, { resolve, timer });
      const msg: AffinityQuery = { homing: 'affinity-q', id, route, key };
      try {
        process.send!(msg, undefined, undefined, (err) => {
          if (err) this.answer({ homing: 'affinity-a', id, owner: null });
        });
      } catch {
        this.answer({ homing: 'affinity-a', id, owner: null });
      }
    });
  }

  private answer(a: AffinityAnswer): void {
    const p = this.pendingQueries.get(a.id);
    if (!p) return;
    this.pendingQueries.delete(a.id);
    clearTimeout(p.timer);
    p.resolve(typeof a.owner === 'string' ? a.owner : undefined);
  }

  /** Primary: answer a worker's query from the tables attached here. */
  private answerQuery(worker: Worker, q: AffinityQuery): void {
    let owner: string | null = null;
    for (const t of this.replicas.get(q.route) ?? []) {
      const o = t.peek?.(q.key);
      if (o !== undefined) {
        owner = o;
        break;
      }
    }
    const msg: AffinityAnswer = { homing: 'affinity-a', id: q.id, owner };
    try {
      if (worker.isConnected()) worker.send(msg, undefined, () => {});
    } catch {
      // The worker went away; its query times out.
    }
  }

  /** Send what is queued now, then stop listening. */
  close(): void {
    this.flush();
    if (!this.listening) return;
    this.listening = false;
    if (this.role === 'worker') process.off('message', this.onPrimaryMessage);
    else cluster.off('message', this.onWorkerMessage);
  }

  private enqueue(t: ClusterOpTuple): void {
    this.queue.push(t);
    if (this.queue.length >= this.maxBatch) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate: after the current I/O phase, so every op learned from one batch of
      // socket reads goes in one message.
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    for (let i = 0; i < batch.length; i += this.maxBatch) {
      const msg: AffinityMessage = { homing: 'affinity', batch: batch.length <= this.maxBatch ? batch : batch.slice(i, i + this.maxBatch) };
      if (this.role === 'worker') this.sendToPrimary(msg);
      else this.sendToWorkers(msg, undefined);
    }
  };

  private sendToPrimary(msg: AffinityMessage): void {
    if (!process.connected || !process.send) return;
    try {
      process.send(msg, undefined, undefined, (err) => {
        if (err) this.log?.debug({ err: err.message }, 'affinity op not sent to the primary');
      });
      this.sent++;
    } catch (e) {
      this.log?.debug({ err: (e as Error).message }, 'affinity op not sent to the primary');
    }
  }

  private sendToWorkers(msg: AffinityMessage, except: Worker | undefined): void {
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w || w === except || !w.isConnected()) continue;
      try {
        w.send(msg, undefined, (err: Error | null) => {
          if (err) this.log?.debug({ worker: w.id, err: err.message }, 'affinity op not relayed');
        });
        this.sent++;
      } catch (e) {
        this.log?.debug({ worker: w.id, err: (e as Error).message }, 'affinity op not relayed');
      }
    }
  }

  /** Primary: a worker spoke. Relay as is, then apply to tables attached here. */
  private readonly onWorkerMessage = (worker: Worker, msg: unknown): void => {
    if (isQuery(msg)) return this.answerQuery(worker, msg);
    if (!isAffinityMessage(msg)) return;
    this.sendToWorkers(msg, worker);
    this.apply(msg);
  };

  /** Worker: the primary relayed another process's ops. */
  private readonly onPrimaryMessage = (msg: unknown): void => {
    if (isAffinityMessage(msg)) this.apply(msg);
    else if (isAnswer(msg)) this.answer(msg);
  };

  private apply(msg: AffinityMessage): void {
    if (msg.batch) {
      for (const t of msg.batch) this.applyOne(t[0], t[1], t[2], t[3]);
    } else if (msg.route !== undefined && msg.op !== undefined) {
      this.applyOne(msg.route, msg.op, msg.key ?? '', msg.owner);
    }
  }

  private applyOne(route: string, op: ClusterOp, key: string, owner: string | undefined): void {
    const tables = this.replicas.get(route);
    if (!tables || typeof key !== 'string') return;
    this.received++;
    for (const t of tables) {
      if (op === 'set') {
        if (typeof owner === 'string') t.set(key, owner);
      } else if (op === 'del') t.delete(key);
      else if (op === 'drop') {
        if (typeof owner === 'string') t.dropOwner(owner);
      }
    }
  }
}

/** In the cluster primary: start relaying affinity ops between workers (see ClusterBus). */
export function startClusterRelay(opts: ClusterBusOptions = {}): ClusterBus {
  return new ClusterBus(opts).startClusterRelay();
}
