/**
 * The worker tier of pool state: with node:cluster workers, discovery and active health checks run
 * once on the box, in the primary, and every worker follows the primary's view of each pool (its
 * members, and which of them are down). A worker discovers nothing and checks nothing itself.
 * What its requests tell about a member (passive health) goes to the primary, which counts
 * consecutive failures across the box, decides ejection, and sends the verdict back like any
 * other. A worker asks for the whole state when it starts and serves only once it has it, so a
 * new or replacing worker never routes to a member the box already knows is down.
 *
 * Messages over the cluster IPC channel:
 *
 *   worker → primary  { homing: 'pools?' }                               every pool, please
 *   primary → worker  { homing: 'pools', pools: [PoolState, …], all? }   whole pools (all: every
 *                                                                        pool, the answer to 'pools?')
 *   worker → primary  { homing: 'passive', pool, member, ok }            a request's outcome
 *   primary → worker  { homing: 'failing', pool, member }                the box counts failures of it
 *
 * Every 'pools' message carries whole pools, so applying them in the order they come (the channel
 * keeps order) always leaves a worker with the primary's latest state.
 *
 * Passive reports cost IPC only around failures: a worker reports every failure, but a success
 * only for a member that is failing (it reported a failure of it, or the primary said the box is
 * counting failures of it); that one success resets the box's count, as in a single process.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { kind, sendToPrimary } from './ipc.js';
import type { Member } from '../members/member.js';
import type { MemberSpec, Pool } from '../members/pool.js';

/** One pool as the primary sees it. */
export interface PoolState {
  pool: string;
  members: MemberSpec[];
  /** Members that are down (active checks or passive ejection). */
  down: string[];
}

interface PoolsMessage {
  homing: 'pools';
  pools: PoolState[];
  all?: boolean;
}

interface PassiveReport {
  homing: 'passive';
  pool: string;
  member: string;
  ok: boolean;
}

interface FailingNotice {
  homing: 'failing';
  pool: string;
  member: string;
}

/** What the primary's health of one pool does with a worker's reports: PoolHealth fits. */
export interface PassiveVerdicts {
  success(member: Member): void;
  failure(member: Member, reason?: string): void;
  /** Absent when the pool has no passive ejection. */
  readonly passive?: { failureCount(id: string): number } | undefined;
}

function stateOf(pool: Pool): PoolState {
  const members = pool.members.members;
  return {
    pool: pool.name,
    members: members.map((m) => ({ host: m.host, port: m.port, weight: m.weight })),
    down: members.filter((m) => !pool.isUp(m.id)).map((m) => m.id),
  };
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The primary's side: sends its pools to the workers, and takes their passive reports. */
export class PoolStatePublisher {
  readonly role = 'primary';
  private readonly shared = new Map<string, { pool: Pool; health: PassiveVerdicts | undefined }>();
  private readonly unsubscribe: (() => void)[] = [];
  /** Workers that asked before the pools were shared. */
  private readonly waiting = new Set<Worker>();
  private ready = false;
  private listening = false;
  private readonly dirty = new Set<Pool>();
  private flushScheduled = false;
  /** IPC messages sent (tests, debugging). */
  sent = 0;

  constructor(private readonly opts: { log?: Logger } = {}) {}

  /** Listen to the workers. Call before forking (a worker asking early is answered once shared). */
  start(): this {
    if (!this.listening) {
      this.listening = true;
      cluster.on('message', this.onWorkerMessage);
    }
    return this;
  }

  /**
   * The pools the workers follow, each with the health that judges it here (undefined: none).
   * Call once their first member lists are in; from then on every change reaches the workers.
   * A config reload calls it again with the new set (pools added or gone, health replaced): a
   * worker that reloads asks for the whole state again.
   */
  share(pools: Iterable<readonly [Pool, PassiveVerdicts | undefined]>): void {
    for (const u of this.unsubscribe.splice(0)) u();
    this.shared.clear();
    for (const [pool, health] of pools) {
      this.shared.set(pool.name, { pool, health });
      this.unsubscribe.push(pool.onChange(() => this.changed(pool)));
    }
    this.ready = true;
    for (const w of this.waiting) this.sendAll(w);
    this.waiting.clear();
  }

  /**
   * `pool` changed: its state goes to every worker (changes of one event-loop turn in one
   * message). A change of who is live is seen without this call; a change of the member list
   * alone (a member that was down leaves) needs it.
   */
  changed(pool: Pool): void {
    if (!this.ready || this.shared.get(pool.name)?.pool !== pool) return;
    this.dirty.add(pool);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.dirty.size === 0) return;
    const msg: PoolsMessage = { homing: 'pools', pools: [...this.dirty].map(stateOf) };
    this.dirty.clear();
    this.broadcast(msg);
  };

  private broadcast(msg: PoolsMessage | FailingNotice): void {
    for (const w of Object.values(cluster.workers ?? {})) if (w) this.send(w, msg);
  }

  private sendAll(w: Worker): void {
    this.send(w, { homing: 'pools', pools: [...this.shared.values()].map((s) => stateOf(s.pool)), all: true });
  }

  private send(w: Worker, msg: PoolsMessage | FailingNotice): void {
    if (!w.isConnected()) return;
    try {
      w.send(msg, undefined, (err: Error | null) => {
        if (err) this.opts.log?.debug({ worker: w.id, err: err.message }, 'pool state not sent to a worker');
      });
      this.sent++;
    } catch (e) {
      this.opts.log?.debug({ worker: w.id, err: errMessage(e) }, 'pool state not sent to a worker');
    }
  }

  private readonly onWorkerMessage = (w: Worker, msg: unknown): void => {
    const k = kind(msg);
    if (k === 'pools?') {
      if (this.ready) this.sendAll(w);
      else this.waiting.add(w);
    } else if (k === 'passive') {
      this.passive(w, msg as PassiveReport);
    }
  };

  /** A worker's request outcome: counted here as if this process had made the request. */
  private passive(w: Worker, r: PassiveReport): void {
    if (typeof r.pool !== 'string' || typeof r.member !== 'string') return;
    const s = this.shared.get(r.pool);
    const member = s?.pool.members.get(r.member);
    if (!s?.health || !member) return;
    if (r.ok === true) return s.health.success(member);
    const counted = s.health.passive?.failureCount(member.id) ?? 0;
    s.health.failure(member, `request failed in worker ${w.id}`);
    // The box now counts failures of it: every worker reports its next success.
    if (counted === 0 && (s.health.passive?.failureCount(member.id) ?? 0) > 0) this.broadcast({ homing: 'failing', pool: r.pool, member: r.member });
  }

  /** Stop sending and listening. */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    this.ready = false;
    this.waiting.clear();
    if (!this.listening) return;
    this.listening = false;
    cluster.off('message', this.onWorkerMessage);
  }
}

interface Followed {
  pool: Pool;
  /** The pool has passive ejection (else nothing is reported). */
  passive: boolean;
  /** Members whose next success is reported. */
  failing: Set<string>;
}

export interface PoolStateReplicaOptions {
  log?: Logger;
  /** How long `follow` waits for the primary's first answer, ms (default 10 000). */
  timeout?: number;
}

/** A worker's side: applies the primary's pool state, and reports passive outcomes to it. */
export class PoolStateReplica {
  readonly role = 'worker';
  private readonly byName = new Map<string, Followed>();
  private readonly byPool = new Map<Pool, Followed>();
  private onApplied: ((pool: Pool) => void) | undefined;
  private synced: { resolve(): void; reject(err: Error): void; timer: NodeJS.Timeout } | undefined;
  private listening = false;

  constructor(private readonly opts: PoolStateReplicaOptions = {}) {}

  /**
   * Follow the primary's state of `pools`: resolves once the whole state has been applied (serve
   * only then); later changes are applied as they come. `onApplied` runs after each pool applied.
   * Rejects when the primary does not answer in time, or there is no primary.
   */
  follow(pools: Iterable<{ pool: Pool; passive: boolean }>, onApplied: (pool: Pool) => void): Promise<void> {
    // Called again by a config reload, with the new set: a pool it keeps keeps what it knew.
    const before = new Map(this.byPool);
    this.byName.clear();
    this.byPool.clear();
    for (const { pool, passive } of pools) {
      const f: Followed = { pool, passive, failing: passive ? (before.get(pool)?.failing ?? new Set()) : new Set() };
      this.byName.set(pool.name, f);
      this.byPool.set(pool, f);
    }
    this.onApplied = onApplied;
    if (!process.send || !process.connected) return Promise.reject(new Error('no cluster primary to take pool state from'));
    if (!this.listening) {
      this.listening = true;
      process.on('message', this.onPrimaryMessage);
    }
    const timeout = this.opts.timeout ?? 10_000;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.synced = undefined;
        reject(new Error(`no pool state from the cluster primary within ${timeout}ms`));
      }, timeout);
      this.synced = { resolve, reject, timer };
      this.send({ homing: 'pools?' }, (err) => {
        clearTimeout(timer);
        this.synced = undefined;
        reject(new Error(`cannot ask the cluster primary for pool state: ${err.message}`));
      });
    });
  }

  /** A request to `member` of `pool` succeeded (hot path: a map look-up unless it is failing). */
  success(pool: Pool, member: Member): void {
    const f = this.byPool.get(pool);
    if (f && f.failing.size !== 0 && f.failing.delete(member.id)) this.report(pool.name, member.id, true);
  }

  /** A request to `member` of `pool` failed (connect error, reset, timeout). */
  failure(pool: Pool, member: Member): void {
    const f = this.byPool.get(pool);
    if (!f?.passive) return;
    f.failing.add(member.id);
    this.report(pool.name, member.id, false);
  }

  private report(pool: string, member: string, ok: boolean): void {
    const msg: PassiveReport = { homing: 'passive', pool, member, ok };
    this.send(msg);
  }

  private send(msg: object, onError?: (err: Error) => void): void {
    sendToPrimary(msg, this.opts.log, onError);
  }


  private readonly onPrimaryMessage = (msg: unknown): void => {
    const k = kind(msg);
    if (k === 'pools') this.apply(msg as PoolsMessage);
    else if (k === 'failing') {
      const n = msg as FailingNotice;
      const f = this.byName.get(n.pool);
      if (f?.passive && typeof n.member === 'string') f.failing.add(n.member);
    }
  };

  private apply(msg: PoolsMessage): void {
    if (!Array.isArray(msg.pools)) return;
    for (const s of msg.pools) {
      const f = this.byName.get(s?.pool);
      if (!f || !Array.isArray(s.members) || !Array.isArray(s.down)) continue;
      f.pool.mirror(s.members, s.down);
      for (const id of f.failing) if (!f.pool.members.has(id)) f.failing.delete(id);
      try {
        this.onApplied?.(f.pool);
      } catch (err) {
        this.opts.log?.error({ pool: f.pool.name, err }, 'applying pool state from the primary failed');
      }
    }
    if (msg.all && this.synced) {
      const missing = [...this.byName.keys()].filter((name) => !msg.pools.some((s) => s?.pool === name));
      if (missing.length) this.opts.log?.warn({ pools: missing }, 'the cluster primary has no state for these pools: they stay empty until it has');
      clearTimeout(this.synced.timer);
      this.synced.resolve();
      this.synced = undefined;
    }
  }

  /** Stop following (a pending `follow` rejects). */
  close(): void {
    if (this.synced) {
      clearTimeout(this.synced.timer);
      this.synced.reject(new Error('closed before the cluster primary sent the pool state'));
      this.synced = undefined;
    }
    if (!this.listening) return;
    this.listening = false;
    process.off('message', this.onPrimaryMessage);
  }
}
