/**
 * Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, 2017; Envoy's
 * `hash_balance_factor`), as a decorator over any hash algorithm (which key stays apart from where it lands).
 *
 * With balance factor c ≥ 1, a member may take a request only while
 *
 *     inflight + 1 ≤ ceil(c × (totalInflight + 1) × weight / totalWeight)
 *
 * where `inflight` is read from the live members (the proxy counts requests in flight) and
 * `totalInflight` is their sum: no member goes above c times its weighted share of the load,
 * counting the request being placed. With equal weights that is `ceil(c × (total + 1) / n)`.
 * Some member always qualifies (the caps add up to at least total + 1), so the walk over the
 * wrapped algorithm's fallback order (attempt 0, 1, 2, …) ends by n steps. While nobody is
 * loaded beyond the cap, every key goes to its owner exactly as without the decorator.
 *
 * Attempt n of the decorator skips n qualifying members; past the last qualifying member it goes
 * on with the others in the wrapped algorithm's order, so attempts stay distinct.
 */
import { HashPicker, totalWeight, weightOf } from './picker.js';

/** Guard against float error turning an exact integer cap into the next one up. */
const EPSILON = 1e-9;

export class BoundedLoadPicker extends HashPicker {
  /** `c × weight_i / totalWeight` per member: the cap is `ceil(share × (total + 1))`. */
  private readonly share: Float64Array;
  /** The wrapped algorithm's fallback order, filled lazily. */
  private readonly walk: Int32Array;

  /** `balanceFactor` (c): how far above its weighted share of the load a member may go, ≥ 1. */
  constructor(
    readonly inner: HashPicker,
    readonly balanceFactor: number,
  ) {
    super(inner.members, inner.keyHash);
    if (!(balanceFactor >= 1) || !Number.isFinite(balanceFactor)) {
      throw new RangeError(`hash.boundedLoad must be a number ≥ 1 (got ${balanceFactor})`);
    }
    const ms = this.members;
    const tw = totalWeight(ms);
    this.share = new Float64Array(ms.length);
    for (let i = 0; i < ms.length; i++) this.share[i] = (balanceFactor * weightOf(ms[i]!)) / tw;
    this.walk = new Int32Array(Math.max(1, ms.length));
  }

  /** Requests in flight over the snapshot's members. */
  private totalInflight(): number {
    const ms = this.members;
    let t = 0;
    for (let i = 0; i < ms.length; i++) t += ms[i]!.inflight;
    return t;
  }

  /** The most requests member i may have in flight, counting the one being placed. */
  capOf(i: number, totalInflight = this.totalInflight()): number {
    return Math.ceil(this.share[i]! * (totalInflight + 1) - EPSILON);
  }

  private accepts(i: number, total: number): boolean {
    return this.members[i]!.inflight + 1 <= Math.ceil(this.share[i]! * (total + 1) - EPSILON);
  }

  override ownerIndex(h: number): number {
    const total = this.totalInflight();
    const owner = this.inner.ownerIndex(h);
    if (this.accepts(owner, total)) return owner;
    // The owner is full: walk the fallback order in growing chunks (a short order is a prefix
    // of a longer one), so the usual case — the next member or two qualify — stays cheap.
    const n = this.members.length;
    let checked = 1;
    let limit = Math.min(n, 4);
    for (;;) {
      const got = this.inner.order(h, this.walk, limit);
      for (let k = checked; k < got; k++) {
        const m = this.walk[k]!;
        if (this.accepts(m, total)) return m;
      }
      if (got < limit || limit >= n) return owner; // unreachable: some member always qualifies
      checked = got;
      limit = Math.min(n, limit * 4);
    }
  }

  override order(h: number, out: Int32Array, limit: number): number {
    const n = this.members.length;
    const want = Math.min(limit, n);
    const total = this.totalInflight();
    const got = this.inner.order(h, this.walk, n);
    let k = 0;
    for (let j = 0; j < got && k < want; j++) {
      if (this.accepts(this.walk[j]!, total)) out[k++] = this.walk[j]!;
    }
    for (let j = 0; j < got && k < want; j++) {
      if (!this.accepts(this.walk[j]!, total)) out[k++] = this.walk[j]!;
    }
    return k;
  }
}
