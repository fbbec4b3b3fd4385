/**
 * A timeout moved forward on every request (or body chunk) at the cost of reading the clock: the
 * timer under it is armed only when the deadline comes before the time it already fires, and when
 * it fires early (the deadline moved on since) it is armed again for what is left. Refreshing a
 * Node timer instead re-links it in the timer lists each time, several times per request.
 */
import { performance } from 'node:perf_hooks';
export class Deadline {
  /** performance.now() by which `expire` runs; 0: none. */
  private at = 0;
  /** performance.now() at which the armed timer fires; 0: none armed. */
  private fires = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly expire: () => void) {}

  /** `expire` runs `ms` from now (and not at any earlier deadline). */
  set(ms: number): void {
    const now = performance.now();
    this.at = now + ms;
    if (this.fires !== 0 && this.fires <= this.at) return;
    this.arm(now, ms);
  }

  /** No deadline (the armed timer, if any, finds nothing to do when it fires). */
  clear(): void {
    this.at = 0;
  }

  /** No deadline and no timer. */
  dispose(): void {
    this.at = 0;
    this.fires = 0;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(now: number, ms: number): void {
    clearTimeout(this.timer);
    this.fires = now + ms;
    this.timer = setTimeout(this.fire, ms);
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.fires = 0;
    this.timer = undefined;
    if (this.at === 0) return;
    const now = performance.now();
    // The loop's clock (the timer's) may trail performance.now() by a little: armed again for the rest.
    if (now < this.at) return this.arm(now, Math.max(1, Math.ceil(this.at - now)));
    this.at = 0;
    this.expire();
  };
}
