/**
 * Weighted rendezvous (highest random weight) hashing with the logarithmic method of
 * Schindelhauer & Schomaker ("Weighted distributed hash tables", 2005): every member scores the
 * key `−weight / ln(u)` with `u ∈ (0, 1)` from `combine32(hash(key), hash32(id))`, and the
 * highest score wins. Member i then owns a share weight_i / Σ weight of the keys, and only the
 * keys of a member that leaves move.
 *
 * O(members) per look-up, with no table to build: best for small pools or frequent changes.
 * When all weights are equal the score is monotonic in the mixed hash, so the look-up compares
 * integers and skips the logarithm (same answers).
 *
 * Fallback attempt n is the member with the (n+1)-th highest score. Equal scores are ordered by
 * member id.
 */
import type { MemberSet } from '../../members/member.js';
import { combine32, hash32 } from './hash.js';
import { HashPicker, weightOf } from './picker.js';

const INV_2_32 = 1 / 4294967296;

export class RendezvousPicker extends HashPicker {
  /** `hash32(id)` per member, computed once. */
  private readonly memberHash: Int32Array;
  private readonly weight: Float64Array;
  /** All weights equal: compare mixed hashes, no logarithm. */
  private readonly uniform: boolean;
  private readonly scores: Float64Array;
  private readonly taken: Uint8Array;

  constructor(live: MemberSet) {
    super(live);
    const ms = this.members;
    const n = ms.length;
    this.memberHash = new Int32Array(n);
    this.weight = new Float64Array(n);
    this.scores = new Float64Array(Math.max(1, n));
    this.taken = new Uint8Array(Math.max(1, n));
    let uniform = true;
    for (let i = 0; i < n; i++) {
      this.memberHash[i] = hash32(ms[i]!.id) | 0;
      this.weight[i] = weightOf(ms[i]!);
      if (this.weight[i] !== this.weight[0]) uniform = false;
    }
    this.uniform = uniform;
  }

  // The score is computed inline in both loops below (no helper): a double returned from a call
  // V8 does not inline is boxed into a heap number, one per member per look-up.

  override ownerIndex(h: number): number {
    const n = this.members.length;
    const mh = this.memberHash;
    let best = 0;
    if (this.uniform) {
      let bestScore = -1;
      for (let i = 0; i < n; i++) {
        const s = combine32(h, mh[i]!);
        if (s > bestScore) {
          bestScore = s;
          best = i;
        }
      }
      return best;
    }
    const w = this.weight;
    let bestScore = -1;
    for (let i = 0; i < n; i++) {
      const s = -w[i]! / Math.log((combine32(h, mh[i]!) + 0.5) * INV_2_32);
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    return best;
  }

  override order(h: number, out: Int32Array, limit: number): number {
    const n = this.members.length;
    const want = Math.min(limit, n);
    const scores = this.scores;
    const taken = this.taken;
    const mh = this.memberHash;
    const w = this.weight;
    for (let i = 0; i < n; i++) {
      const x = combine32(h, mh[i]!);
      scores[i] = this.uniform ? x : -w[i]! / Math.log((x + 0.5) * INV_2_32);
      taken[i] = 0;
    }
    // Selection of the `want` best: `want` is small (attempt + 1) on every path that matters.
    for (let got = 0; got < want; got++) {
      let best = -1;
      let bestScore = -Infinity;
      for (let i = 0; i < n; i++) {
        if (taken[i] === 0 && (best < 0 || scores[i]! > bestScore)) {
          best = i;
          bestScore = scores[i]!;
        }
      }
      taken[best] = 1;
      out[got] = best;
    }
    return want;
  }
}
