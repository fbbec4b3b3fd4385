/**
 * Passive ejection (`health.passive`): the proxy reports each request's outcome; after `failures`
 * consecutive failures a member is ejected (marked down) for `ejectFor`, then re-admitted with a
 * clean count. Cheap on the hot path: `success` is one Map look-up when nothing is failing.
 *
 * Time comes from an injected Clock. Re-admission happens in `tick()`, which compares the clock
 * with each ejection's end; an unref'd timer calls it when the earliest ejection is due, and
 * tests move a ManualClock and call `tick()` themselves instead of sleeping.
 *
 * What counts as a failure is the caller's choice; the proxy should report connect errors,
 * resets and timeouts (not a 5xx that the backend answered on purpose).
 */
import { systemClock, type Clock } from '../clock.js';
import type { HealthConfig } from '../config/schema.js';
import type { Member } from '../members/member.js';
import type { HealthTracker } from './tracker.js';

export type PassiveConfig = NonNullable<HealthConfig['passive']>;

export class PassiveHealth {
  /** Consecutive failures of members not ejected; absent = 0. */
  private readonly failures = new Map<string, number>();
  /** Ejected members → clock time (ms) at which they come back. */
  private readonly ejected = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly tracker: HealthTracker,
    private readonly cfg: PassiveConfig,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(cfg.failures >= 1)) throw new Error(`health.passive.failures must be >= 1, got ${cfg.failures}`);
    if (!(cfg.ejectFor >= 0)) throw new Error(`health.passive.ejectFor must be >= 0, got ${cfg.ejectFor}`);
    tracker.onForget((id) => {
      this.failures.delete(id);
      this.ejected.delete(id);
    });
  }

  /** A request to `member` failed (connect error, reset, timeout). */
  failure(member: Member, reason = 'request failed'): void {
    const id = member.id;
    // Requests already in flight when the member was ejected may still fail: that is not news.
    if (this.stopped || this.ejected.has(id)) return;
    const n = (this.failures.get(id) ?? 0) + 1;
    if (n < this.cfg.failures) {
      this.failures.set(id, n);
      return;
    }
    this.failures.delete(id);
    if (!this.tracker.pool.members.has(id)) return;
    this.ejected.set(id, this.clock.now() + this.cfg.ejectFor);
    this.tracker.set('passive', id, true, `passive: ${n} consecutive failed requests (last: ${reason}); ejected for ${this.cfg.ejectFor}ms`);
    this.arm();
  }

  /** A request to `member` succeeded: its failure count starts again from zero. */
  success(member: Member): void {
    if (this.failures.size !== 0) this.failures.delete(member.id);
  }

  /** Consecutive failures counted for `id` so far (0 when ejected or healthy). */
  failureCount(id: string): number {
    return this.failures.get(id) ?? 0;
  }

  isEjected(id: string): boolean {
    return this.ejected.has(id);
  }

  /** Re-admit every member whose ejection has ended by the clock. */
  tick(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    for (const [id, until] of this.ejected) {
      if (now < until) continue;
      this.ejected.delete(id);
      this.tracker.set('passive', id, false, `passive: ejection of ${this.cfg.ejectFor}ms ended`);
    }
    this.arm();
  }

  /** One unref'd timer for the earliest ejection end (re-armed on every tick). */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || this.ejected.size === 0) return;
    let next = Infinity;
    for (const until of this.ejected.values()) if (until < next) next = until;
    // With a clock that stands still (tests), this fires after the remaining time, finds nothing
    // due and re-arms: harmless, unref'd, and never a busy loop since the wait is the remainder.
    const wait = Math.max(next - this.clock.now(), 1);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tick();
    }, wait);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
