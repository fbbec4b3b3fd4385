/**
 * Balancers: where a request goes when no key decides (the affinity "guess", a route without a
 * hash). Each picker is built for one frozen snapshot of live members and keeps its own small
 * state (round-robin weights); a route builds a new one when the live set changes, which
 * restarts the rotation, as nginx does on reload.
 *
 * Weights: a member with weight 2 gets twice the requests of a member with weight 1 (round-robin
 * exactly, random and power-of-two-choices on average, least-connections in the ratio
 * inflight / weight it balances).
 *
 * Retries: a balancer has no key, so it cannot work out for attempt n which members attempt 0..n−1
 * chose for the same request. The caller passes them instead, as `exclude` (a set it builds only
 * when it retries, so the first attempt allocates nothing): the picker then chooses by its policy
 * among the other members, and among all of them once every member has been excluded. Without
 * `exclude` every attempt is chosen by the policy alone. (`exclude` is an optional third
 * argument, so a `BalancePicker` is still a `Picker`.)
 *
 * No closure, allocation or promise per pick.
 */
import type { BalanceName } from '../config/schema.js';
import type { Member, MemberSet } from '../members/member.js';
import type { Picker } from './strategy.js';

export interface BalancePicker extends Picker {
  /**
   * The member for a request (`key` is ignored). `exclude`: members earlier attempts of the same
   * request chose; the answer is another member while there is one.
   */
  pick(key: string | undefined, attempt: number, exclude?: ReadonlySet<Member>): Member | undefined;
  /**
   * The member the next `pick` without `exclude` will answer, without moving the rotation: what a
   * look-up (RESP, admin) answers, so it tells where the next request goes and never shifts it.
   */
  peek(): Member | undefined;
}

export type BalancerFactory = (live: MemberSet) => BalancePicker;

const TWO_POW_MINUS_32 = 1 / 4294967296;

/** A balancer's weight for a member: its weight when positive and finite, else 1. */
function weightOf(m: Member): number {
  const w = m.weight;
  return w > 0 && Number.isFinite(w) ? w : 1;
}

abstract class Balancer implements BalancePicker {
  readonly members: readonly Member[];
  protected readonly weights: Float64Array;
  protected readonly totalWeight: number;

  constructor(live: MemberSet) {
    this.members = live.members;
    this.weights = new Float64Array(this.members.length);
    let t = 0;
    for (let i = 0; i < this.members.length; i++) {
      this.weights[i] = weightOf(this.members[i]!);
      t += this.weights[i]!;
    }
    this.totalWeight = t;
  }

  pick(_key: string | undefined, _attempt: number, exclude?: ReadonlySet<Member>): Member | undefined {
    const n = this.members.length;
    if (n === 0) return undefined;
    if (n === 1) return this.members[0];
    const i = exclude !== undefined && exclude.size > 0 && this.anyAllowed(exclude) ? this.choose(exclude) : this.choose(undefined);
    return this.members[i];
  }

  peek(): Member | undefined {
    const n = this.members.length;
    if (n <= 1) return this.members[0];
    return this.members[this.next()];
  }

  /** Index `choose(undefined)` will answer next; no state moves (a random policy draws ahead once). */
  protected abstract next(): number;

  /** Whether some member is not in `exclude`. */
  private anyAllowed(exclude: ReadonlySet<Member>): boolean {
    for (const m of this.members) if (!exclude.has(m)) return true;
    return false;
  }

  /** Index of the chosen member; `exclude`, when given, leaves at least one member allowed. */
  protected abstract choose(exclude: ReadonlySet<Member> | undefined): number;

  /** Whether member i may be chosen. */
  protected allowed(i: number, exclude: ReadonlySet<Member> | undefined): boolean {
    return exclude === undefined || !exclude.has(this.members[i]!);
  }

  /** Load of a over load of b, weighted: −1, 0 or 1 as inflight_a / w_a <, =, > inflight_b / w_b. */
  protected compareLoad(a: number, b: number): number {
    const la = this.members[a]!.inflight * this.weights[b]!;
    const lb = this.members[b]!.inflight * this.weights[a]!;
    return la < lb ? -1 : la > lb ? 1 : 0;
  }
}

/**
 * Smooth weighted round-robin, as nginx's `ngx_http_upstream_get_peer`: every pick adds each
 * member's weight to its `current`, takes the highest `current` (the first on a tie) and
 * subtracts the total from it. Weights 5, 1, 1 give a a b a c a a, spreading the heavy member
 * out instead of sending it five in a row. Excluded members sit the pick out, as nginx's tried peers.
 */
class RoundRobin extends Balancer {
  private readonly current: Float64Array;

  constructor(live: MemberSet) {
    super(live);
    this.current = new Float64Array(this.members.length);
  }

  protected override next(): number {
    const cur = this.current;
    const w = this.weights;
    let best = 0;
    for (let i = 1; i < cur.length; i++) if (cur[i]! + w[i]! > cur[best]! + w[best]!) best = i;
    return best;
  }

  protected override choose(exclude: ReadonlySet<Member> | undefined): number {
    const cur = this.current;
    const w = this.weights;
    let best = -1;
    let total = 0;
    for (let i = 0; i < cur.length; i++) {
      if (exclude !== undefined && exclude.has(this.members[i]!)) continue;
      cur[i] = cur[i]! + w[i]!;
      total += w[i]!;
      if (best < 0 || cur[i]! > cur[best]!) best = i;
    }
    cur[best] = cur[best]! - total;
    return best;
  }
}

/**
 * Helpers for weighted random choice, shared by random and power-of-two-choices. Without an
 * injected source the picker draws from its own mulberry32 generator (seeded from `Math.random`
 * when built; plenty for spreading load, not for anything secret): on Node 20 every
 * `Math.random()` call allocates a heap number, and this keeps the pick allocation-free.
 */
abstract class RandomBalancer extends Balancer {
  /** `prefix[i]` = weights[0] + … + weights[i]. */
  private readonly prefix: Float64Array;
  /** mulberry32 state. */
  private readonly state = new Int32Array(1);

  constructor(
    live: MemberSet,
    private readonly source: (() => number) | undefined,
  ) {
    super(live);
    this.prefix = new Float64Array(this.members.length);
    let t = 0;
    for (let i = 0; i < this.members.length; i++) {
      t += this.weights[i]!;
      this.prefix[i] = t;
    }
    this.state[0] = Math.floor(Math.random() * 4294967296) | 0;
  }

  /**
   * 32 random bits as an int32 (callers take `(bits >>> 0) * 2^-32` for a number in [0, 1)). An
   * int32, not a double, so that nothing is boxed into a heap number even when V8 does not inline
   * this call.
   */
  protected randomBits(): number {
    if (this.source !== undefined) return (this.source() * 4294967296) | 0;
    // mulberry32: one 32-bit word of state, small enough for V8 to inline twice per pick.
    const a = (this.state[0]! + 0x6d2b79f5) | 0;
    this.state[0] = a;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return t ^ (t >>> 14);
  }

  /**
   * A weighted random member (member i with probability w_i / Σw), other than `skip` when
   * skip ≥ 0 (then there must be two members). The binary search over the prefix sums is written
   * out here: a double passed to a call V8 does not inline is boxed into a heap number.
   */
  protected weighted(skip: number): number {
    const p = this.prefix;
    let r = (this.randomBits() >>> 0) * TWO_POW_MINUS_32;
    if (skip < 0) r *= this.totalWeight;
    else {
      const ws = this.weights[skip]!;
      r *= this.totalWeight - ws;
      if (r >= p[skip]! - ws) r += ws; // jump over skip's stretch of [0, total)
    }
    let lo = 0;
    let hi = p.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (p[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    return lo === skip ? (lo + 1) % p.length : lo;
  }

  /**
   * A weighted random member among those allowed by `exclude` and other than `skip` (−1: none);
   * −1 when there is none. Linear: only retries come here.
   */
  protected weightedAllowed(exclude: ReadonlySet<Member>, skip: number): number {
    let total = 0;
    let last = -1;
    for (let i = 0; i < this.members.length; i++) {
      if (i === skip || !this.allowed(i, exclude)) continue;
      total += this.weights[i]!;
      last = i;
    }
    if (last < 0) return -1;
    let r = (this.randomBits() >>> 0) * TWO_POW_MINUS_32 * total;
    for (let i = 0; i < last; i++) {
      if (i === skip || !this.allowed(i, exclude)) continue;
      r -= this.weights[i]!;
      if (r < 0) return i;
    }
    return last;
  }
}

/** Weighted random: member i with probability w_i / Σw. */
class RandomPick extends RandomBalancer {
  /** A draw made by `peek`, answered by the next plain pick (−1: none). */
  private ahead = -1;

  protected override next(): number {
    if (this.ahead < 0) this.ahead = this.weighted(-1);
    return this.ahead;
  }

  protected override choose(exclude: ReadonlySet<Member> | undefined): number {
    if (exclude !== undefined) return this.weightedAllowed(exclude, -1);
    const i = this.ahead >= 0 ? this.ahead : this.weighted(-1);
    this.ahead = -1;
    return i;
  }
}

/**
 * Power of two choices (Mitzenmacher): two different members drawn by weight, and the one with
 * the lower inflight / weight wins (the first drawn on a tie).
 */
class PowerOfTwo extends RandomBalancer {
  /** The two candidates drawn by `peek`, used by the next plain pick (−1: none). */
  private aheadA = -1;
  private aheadB = -1;

  protected override next(): number {
    if (this.aheadA < 0) {
      this.aheadA = this.weighted(-1);
      this.aheadB = this.weighted(this.aheadA);
    }
    return this.compareLoad(this.aheadB, this.aheadA) < 0 ? this.aheadB : this.aheadA;
  }

  protected override choose(exclude: ReadonlySet<Member> | undefined): number {
    let a: number;
    let b: number;
    if (exclude === undefined) {
      if (this.aheadA >= 0) {
        a = this.aheadA;
        b = this.aheadB;
        this.aheadA = -1;
      } else {
        a = this.weighted(-1);
        b = this.weighted(a);
      }
    } else {
      a = this.weightedAllowed(exclude, -1);
      b = this.weightedAllowed(exclude, a);
      if (b < 0) return a;
    }
    return this.compareLoad(b, a) < 0 ? b : a;
  }
}

/**
 * Weighted least-connections, as nginx's `least_conn`: the member with the lowest
 * inflight / weight; several tied members take turns by smooth weighted round-robin among
 * themselves (so an idle pool is served round-robin, by weight).
 */
class LeastConnections extends Balancer {
  private readonly current: Float64Array;

  constructor(live: MemberSet) {
    super(live);
    this.current = new Float64Array(this.members.length);
  }

  protected override next(): number {
    return this.leastLoaded(undefined, false);
  }

  protected override choose(exclude: ReadonlySet<Member> | undefined): number {
    return this.leastLoaded(exclude, true);
  }

  /**
   * The least loaded allowed member; among several tied, the one smooth weighted round-robin
   * takes (highest current + weight, the first on a tie). `commit` moves the rotation (a pick);
   * without it nothing changes (a peek).
   */
  private leastLoaded(exclude: ReadonlySet<Member> | undefined, commit: boolean): number {
    const n = this.members.length;
    let least = -1;
    let ties = 0;
    for (let i = 0; i < n; i++) {
      if (!this.allowed(i, exclude)) continue;
      const c = least < 0 ? -1 : this.compareLoad(i, least);
      if (c < 0) {
        least = i;
        ties = 1;
      } else if (c === 0) ties++;
    }
    if (ties === 1) return least;
    const cur = this.current;
    const w = this.weights;
    let best = -1;
    let total = 0;
    for (let i = least; i < n; i++) {
      if (!this.allowed(i, exclude) || this.compareLoad(i, least) !== 0) continue;
      total += w[i]!;
      if (best < 0 || cur[i]! + w[i]! > cur[best]! + w[best]!) best = i;
    }
    if (commit) {
      for (let i = least; i < n; i++) if (this.allowed(i, exclude) && this.compareLoad(i, least) === 0) cur[i] = cur[i]! + w[i]!;
      cur[best] = cur[best]! - total;
    }
    return best;
  }
}

/**
 * A factory of balancers for a route's `balance:`. `random` (answers in [0, 1))
 * drives random and power-of-two-choices; tests inject a seeded one. Without it each picker uses
 * its own fast generator, seeded from `Math.random`.
 */
export function createBalancerFactory(name: BalanceName, random?: () => number): BalancerFactory {
  switch (name) {
    case 'round-robin':
      return (live) => new RoundRobin(live);
    case 'random':
      return (live) => new RandomPick(live, random);
    case 'least-connections':
      return (live) => new LeastConnections(live);
    case 'power-of-two-choices':
      return (live) => new PowerOfTwo(live, random);
    default:
      throw new RangeError(`balance must be round-robin, random, least-connections or power-of-two-choices (got ${String(name)})`);
  }
}
