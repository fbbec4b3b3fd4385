/**
 * A pool: its configured members (from static config or discovery) and which of them are live
 * (health). Both are immutable snapshots swapped atomically; routes rebuild their strategies off
 * the hot path when `live` changes (listeners), and look-ups read the frozen snapshot.
 *
 * Listeners are isolated from each other and from whoever changed the pool: one that throws is
 * logged, and the others still run (a health check or a discovery reload that changed the pool
 * must not fail because of a listener).
 */
import type { Logger } from 'pino';
import { Member, MemberSet } from './member.js';

export interface MemberSpec {
  host: string;
  port: number;
  weight: number;
}

export type PoolListener = (pool: Pool) => void;

export class Pool {
  private _members = MemberSet.EMPTY;
  private _live = MemberSet.EMPTY;
  /** Ids currently marked down by health checks or passive ejection. */
  private readonly down = new Set<string>();
  private readonly listeners: PoolListener[] = [];
  /** Bumped on every change of `live`; useful to tell a rebuilt snapshot. */
  version = 0;

  constructor(
    readonly name: string,
    specs: readonly MemberSpec[] = [],
    private readonly log?: Logger,
  ) {
    if (specs.length) this.setMembers(specs);
  }

  /** All configured members, up or down. */
  get members(): MemberSet {
    return this._members;
  }

  /** Members that are up: what every strategy is built from. */
  get live(): MemberSet {
    return this._live;
  }

  isUp(id: string): boolean {
    return this._members.has(id) && !this.down.has(id);
  }

  onChange(l: PoolListener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Replace the member list (discovery). Existing Member objects are kept for unchanged ids. */
  setMembers(specs: readonly MemberSpec[]): void {
    const set = this.memberSet(specs);
    if (set.sameAs(this._members)) return;
    this._members = set;
    for (const id of [...this.down]) if (!set.has(id)) this.down.delete(id);
    this.recompute();
  }

  /**
   * Take another process's view of the pool as it is: these members, of which `down` are down,
   * in one step (one change event at most). A node:cluster worker follows the primary's
   * discovery and health this way.
   */
  mirror(specs: readonly MemberSpec[], down: Iterable<string>): void {
    const set = this.memberSet(specs);
    if (!set.sameAs(this._members)) this._members = set;
    this.down.clear();
    for (const id of down) if (set.has(id)) this.down.add(id);
    this.recompute();
  }

  /** The set `specs` make, duplicates dropped, reusing this pool's Member objects that did not change. */
  private memberSet(specs: readonly MemberSpec[]): MemberSet {
    const next: Member[] = [];
    const seen = new Set<string>();
    for (const s of specs) {
      const m = new Member(s.host, s.port, s.weight);
      if (seen.has(m.id)) continue;
      seen.add(m.id);
      const old = this._members.get(m.id);
      next.push(old && old.weight === m.weight ? old : m);
    }
    return new MemberSet(next);
  }

  /** Mark a member up or down (health). No-op if unchanged or unknown. */
  setUp(id: string, up: boolean): void {
    if (!this._members.has(id)) return;
    if (up === !this.down.has(id)) return;
    if (up) this.down.delete(id);
    else this.down.add(id);
    this.recompute();
  }

  private recompute(): void {
    const live = new MemberSet(this._members.members.filter((m) => !this.down.has(m.id)));
    if (live.sameAs(this._live) && this._live.members.every((m, i) => m === live.members[i])) return;
    this._live = live;
    this.version++;
    for (const l of [...this.listeners]) {
      try {
        l(this);
      } catch (err) {
        this.log?.error({ pool: this.name, err }, 'pool change listener failed');
      }
    }
  }
}
