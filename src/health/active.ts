/**
 * Active HTTP health checks for one pool (`health.active`): every `interval`, GET `path` on each
 * member with a `timeout`; `fall` consecutive failures mark it down, `rise` consecutive successes
 * mark it up again. Healthy = 2xx/3xx, or one of `expectStatus` when given.
 *
 * Each check opens its own connection and closes it (`agent: false`, `Connection: close`): a
 * check must never borrow or hold one of the pool's keep-alive connections, and a check that
 * found a half-dead socket in the pool would say nothing about the member's health anyway.
 * A member has at most one check in flight; a check slower than `interval` skips rounds rather
 * than piling up.
 *
 * Nothing a round runs into may escape from the timer (it would be an unhandled rejection, which
 * ends the process): whatever throws while a check's outcome is applied (a listener, `onCheck`)
 * is logged, and the other members' checks and the next rounds go on.
 */
import { request, type ClientRequest } from 'node:http';
import type { Logger } from 'pino';
import type { HealthConfig } from '../config/schema.js';
import type { Member } from '../members/member.js';
import type { HealthTracker } from './tracker.js';

export type ActiveCheckConfig = NonNullable<HealthConfig['active']>;

/** Outcome of one check, for logs/metrics. */
export interface CheckResult {
  member: Member;
  healthy: boolean;
  /** `HTTP 200`, `timed out after 1000ms`, `ECONNREFUSED`, … */
  detail: string;
}

interface MemberState {
  successes: number;
  failures: number;
  running: boolean;
}

export interface ActiveHealthCheckOptions {
  /** Every check's outcome (not only transitions): for metrics. */
  onCheck?: (result: CheckResult) => void;
  /** Where a failure of the checker itself is reported. */
  log?: Logger;
}

export class ActiveHealthCheck {
  private readonly state = new Map<string, MemberState>();
  private readonly requests = new Set<ClientRequest>();
  private readonly pending = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly tracker: HealthTracker,
    private readonly cfg: ActiveCheckConfig,
    private readonly opts: ActiveHealthCheckOptions = {},
  ) {
    if (!(cfg.interval > 0)) throw new Error(`health.active.interval must be > 0, got ${cfg.interval}`);
    if (!(cfg.timeout > 0)) throw new Error(`health.active.timeout must be > 0, got ${cfg.timeout}`);
    if (!(cfg.rise >= 1) || !(cfg.fall >= 1)) throw new Error('health.active.rise and fall must be >= 1');
    tracker.onForget((id) => this.state.delete(id));
  }

  /** First round now (so a dead member is found within `fall` rounds of start), then every interval. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(this.timedRound, this.cfg.interval);
    this.timer.unref();
    this.timedRound();
  }

  private readonly timedRound = (): void => {
    this.round().catch((err: unknown) => this.opts.log?.error({ err }, 'health check round failed'));
  };

  /**
   * Check every member that has no check in flight; resolves when the checks started by this
   * round have finished and been counted (a check whose outcome could not be applied is logged,
   * not rejected).
   */
  async round(): Promise<void> {
    if (this.stopped) return;
    this.tracker.sync();
    const members = this.tracker.pool.members.members;
    const started: Promise<void>[] = [];
    for (const m of members) {
      let s = this.state.get(m.id);
      if (!s) {
        s = { successes: 0, failures: 0, running: false };
        this.state.set(m.id, s);
      }
      if (s.running) continue;
      s.running = true;
      const p = this.checkOne(m, s);
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
      started.push(p);
    }
    await Promise.all(started);
  }

  /** Never rejects: a failure to apply the outcome is logged. */
  private async checkOne(m: Member, s: MemberState): Promise<void> {
    let healthy: boolean;
    let detail: string;
    try {
      const status = await this.probe(m);
      healthy = this.cfg.expectStatus ? this.cfg.expectStatus.includes(status) : status >= 200 && status < 400;
      detail = `HTTP ${status}`;
    } catch (e) {
      healthy = false;
      const err = e as NodeJS.ErrnoException;
      detail = err.code && !err.message.includes(err.code) ? `${err.code} ${err.message}` : err.message;
    } finally {
      s.running = false;
    }
    // A member that left the pool (or a stopped checker) has nothing more to say.
    if (this.stopped || this.state.get(m.id) !== s) return;
    try {
      this.record(m, s, healthy, detail);
    } catch (err) {
      this.opts.log?.error({ member: m.id, err }, 'health check outcome could not be applied');
    }
  }

  private record(m: Member, s: MemberState, healthy: boolean, detail: string): void {
    if (healthy) {
      s.failures = 0;
      s.successes = Math.min(s.successes + 1, this.cfg.rise);
      if (s.successes >= this.cfg.rise && this.tracker.isDown('active', m.id)) {
        this.tracker.set('active', m.id, false, `active: ${this.cfg.rise} consecutive successful checks (${detail})`);
      }
    } else {
      s.successes = 0;
      s.failures = Math.min(s.failures + 1, this.cfg.fall);
      if (s.failures >= this.cfg.fall && !this.tracker.isDown('active', m.id)) {
        this.tracker.set('active', m.id, true, `active: ${this.cfg.fall} consecutive failed checks (last: ${detail})`);
      }
    }
    this.opts.onCheck?.({ member: m, healthy, detail });
  }

  /** One GET on its own connection; resolves with the status once the head arrives. */
  private probe(m: Member): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const req = request({
        host: m.host,
        port: m.port,
        path: this.cfg.path,
        method: 'GET',
        agent: false,
        headers: { host: m.id, 'user-agent': 'homing-health-check', accept: '*/*', connection: 'close' },
      });
      this.requests.add(req);
      const timeoutMs = this.cfg.timeout;
      // One deadline for connect + head (+ draining the body): a member that accepts and never
      // answers counts as a failure, like one that refuses.
      const timer = setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs}ms`)), timeoutMs);
      timer.unref();
      const done = (): void => {
        clearTimeout(timer);
        this.requests.delete(req);
      };
      req.on('response', (res) => {
        resolve(res.statusCode ?? 0);
        // Drain the (small) body so the connection closes cleanly; the deadline still applies.
        res.on('error', () => {});
        res.on('end', done);
        res.resume();
      });
      req.on('error', (err) => {
        done();
        reject(err);
      });
      req.on('close', done);
      req.end();
    });
  }

  /** Stop the timer, abort checks in flight, and wait for them to settle. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const req of this.requests) req.destroy(new Error('health checker stopped'));
    await Promise.allSettled([...this.pending]);
  }
}
