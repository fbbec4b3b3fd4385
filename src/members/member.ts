/** A backend member and the immutable snapshot of a pool's members. */
import { formatHostPort } from '../config/units.js';

export class Member {
  /** Canonical `host:port` (IPv6 in brackets); the identity used by every table and by RESP answers. */
  readonly id: string;
  /** Requests in flight to this member right now: read by least-connections, p2c and bounded load. */
  inflight = 0;
  constructor(
    readonly host: string,
    readonly port: number,
    readonly weight = 1,
  ) {
    this.id = formatHostPort(host, port);
  }
}

/** An immutable, ordered set of members. Order is by id, so every instance builds the same set. */
export class MemberSet {
  static readonly EMPTY = new MemberSet([]);
  readonly members: readonly Member[];
  private readonly byId: ReadonlyMap<string, Member>;

  constructor(members: readonly Member[]) {
    const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.members = Object.freeze(sorted);
    this.byId = new Map(sorted.map((m) => [m.id, m]));
  }

  get size(): number {
    return this.members.length;
  }

  get(id: string): Member | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Same ids and weights as `other` (so no strategy needs rebuilding). */
  sameAs(other: MemberSet): boolean {
    if (other.size !== this.size) return false;
    for (let i = 0; i < this.members.length; i++) {
      const a = this.members[i]!;
      const b = other.members[i]!;
      if (a.id !== b.id || a.weight !== b.weight) return false;
    }
    return true;
  }
}
