/**
 * Health for one pool: the tracker plus whichever of active checks and passive ejection the
 * config asks for. The wiring needs only this:
 *
 *   const health = new PoolHealth(pool, poolConfig.health, { onTransition });
 *   health.start();                       // after the pool has its first member list
 *   health.success(member) / health.failure(member, reason)   // per proxied request
 *   await health.stop();                  // on shutdown or when the pool is dropped
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import type { HealthConfig } from '../config/schema.js';
import type { Member } from '../members/member.js';
import type { Pool } from '../members/pool.js';
import { ActiveHealthCheck, type CheckResult } from './active.js';
import { PassiveHealth } from './passive.js';
import { HealthTracker, type TransitionListener } from './tracker.js';

export { HealthTracker, type HealthSource, type TransitionListener } from './tracker.js';
export { ActiveHealthCheck, type ActiveCheckConfig, type ActiveHealthCheckOptions, type CheckResult } from './active.js';
export { PassiveHealth, type PassiveConfig } from './passive.js';

export interface PoolHealthOptions {
  /** Time for passive ejection; default the system clock. */
  clock?: Clock;
  /** Combined liveness flips (for logs and metrics). */
  onTransition?: TransitionListener;
  /** Every active check's outcome (for metrics). */
  onCheck?: (result: CheckResult) => void;
  /** Where a failure of the checker itself is reported. */
  log?: Logger;
}

export class PoolHealth {
  readonly tracker: HealthTracker;
  readonly active: ActiveHealthCheck | undefined;
  readonly passive: PassiveHealth | undefined;

  constructor(pool: Pool, cfg: HealthConfig | undefined, opts: PoolHealthOptions = {}) {
    this.tracker = new HealthTracker(pool, opts.onTransition);
    this.active = cfg?.active ? new ActiveHealthCheck(this.tracker, cfg.active, { onCheck: opts.onCheck, log: opts.log }) : undefined;
    this.passive = cfg?.passive ? new PassiveHealth(this.tracker, cfg.passive, opts.clock ?? systemClock) : undefined;
  }

  /** Start active checks (first round runs at once). Passive ejection needs no start. */
  start(): void {
    this.active?.start();
  }

  /** Per request, on the hot path: no-ops when passive ejection is not configured. */
  success(member: Member): void {
    this.passive?.success(member);
  }

  failure(member: Member, reason?: string): void {
    this.passive?.failure(member, reason);
  }

  async stop(): Promise<void> {
    this.passive?.stop();
    await this.active?.stop();
    this.tracker.close();
  }
}
