/**
 * The one place that decides whether a member is live. Active checks and passive ejection each
 * give a verdict; a member is live only when neither says "down", and this tracker is the only
 * caller of `pool.setUp`, so the two can never overwrite each other (an active "up" does not
 * re-admit a member that passive ejection took out, and the end of an ejection does not re-admit
 * a member that fails its health checks).
 *
 * New members start up: that is the Pool's own rule (a member discovery adds is live at once), so
 * a pool serves as soon as it starts instead of answering 503 until a first check round passes.
 * A dead member is then found by passive ejection on the first failed requests (the proxy retries
 * connect failures on another member) and by active checks after `fall` rounds.
 */
import type { Member } from '../members/member.js';
import type { MemberSet } from '../members/member.js';
import type { Pool } from '../members/pool.js';

export type HealthSource = 'active' | 'passive';

/** Called when a member's combined liveness flips; `reason` says which check and why. */
export type TransitionListener = (member: Member, up: boolean, reason: string) => void;

/** The "down" verdicts of one member, each with its reason; absent = that source says up. */
interface Downs {
  active?: string;
  passive?: string;
}

export class HealthTracker {
  /** Only members with at least one "down" verdict are here: the common case costs nothing. */
  private readonly downs = new Map<string, Downs>();
  private readonly forgetListeners: ((id: string) => void)[] = [];
  private known: MemberSet;
  private readonly unsubscribe: () => void;

  constructor(
    readonly pool: Pool,
    private readonly onTransition?: TransitionListener,
  ) {
    this.known = pool.members;
    // Down marks left by an earlier tracker (a config reload replaced the health config) have no
    // owner any more and nothing would ever lift them: start from the Pool's rule, everyone up,
    // and let the checks find the dead again. (Stop the old tracker's checks first.)
    for (const m of pool.members.members) {
      if (pool.isUp(m.id)) continue;
      pool.setUp(m.id, true);
      onTransition?.(m, true, 'health tracking (re)started');
    }
    this.unsubscribe = pool.onChange(() => this.sync());
  }

  /** Whether `source` currently says `id` is down. */
  isDown(source: HealthSource, id: string): boolean {
    return this.downs.get(id)?.[source] !== undefined;
  }

  /** Whether any source says `id` is down. */
  isAnyDown(id: string): boolean {
    return this.downs.has(id);
  }

  /**
   * Record `source`'s verdict on member `id`. When the combined verdict flips, the pool is told
   * and `onTransition` runs. Unknown ids (a member that has just left the pool) are ignored.
   */
  set(source: HealthSource, id: string, down: boolean, reason: string): void {
    const member = this.pool.members.get(id);
    if (!member) return;
    let d = this.downs.get(id);
    const wasDown = d !== undefined;
    if (down) {
      if (d?.[source] !== undefined) return;
      if (!d) {
        d = {};
        this.downs.set(id, d);
      }
      d[source] = reason;
    } else {
      if (d?.[source] === undefined) return;
      delete d[source];
      if (d.active === undefined && d.passive === undefined) this.downs.delete(id);
    }
    const isDown = this.downs.has(id);
    if (isDown === wasDown) return;
    this.pool.setUp(id, !isDown);
    this.onTransition?.(member, !isDown, reason);
  }

  /** Register for "forget this member's state" (it left the pool, or came back as a new one). */
  onForget(fn: (id: string) => void): void {
    this.forgetListeners.push(fn);
  }

  /**
   * Bring the tracker in line with the pool's member list. Runs on every pool change and on every
   * active round (removing a member that is down does not change `live`, so no change event).
   * A member that left, or left and came back (the pool then has it up while we hold a "down"
   * verdict), starts afresh, as the Pool does.
   */
  sync(): void {
    const now = this.pool.members;
    const forget: string[] = [];
    if (now !== this.known) {
      for (const m of this.known.members) if (!now.has(m.id)) forget.push(m.id);
      this.known = now;
    }
    for (const id of this.downs.keys()) {
      if (!now.has(id) || this.pool.isUp(id)) forget.push(id);
    }
    for (const id of new Set(forget)) {
      this.downs.delete(id);
      for (const fn of this.forgetListeners) fn(id);
    }
  }

  /** Stop listening to the pool. */
  close(): void {
    this.unsubscribe();
  }
}
