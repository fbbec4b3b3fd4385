/** Time source for everything with a TTL, so tests move a fake clock instead of sleeping. */
export interface Clock {
  /** Milliseconds, monotonic within a process. */
  now(): number;
}

export const systemClock: Clock = { now: () => performance.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private t = 0) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
