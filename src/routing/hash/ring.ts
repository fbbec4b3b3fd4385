/**
 * Ketama-style consistent hash ring, looked up with two probes.
 *
 * Each member gets `vnodes × weight` points; point j of a member is `hash32(id + "-" + j)`, so a
 * member's points depend on nothing but its own id (adding or removing a member never moves
 * another member's points, and raising a weight only adds points). The points are kept in one
 * sorted `Int32Array` (each stored as `point ^ 0x80000000`, which orders unsigned values as
 * signed ones, so the search stays in int32 arithmetic) with a parallel array of member indices,
 * and a bucket index on the top bits narrows the binary search to a point or two.
 * Two points with equal hashes are ordered by member id, so the order is the same on every
 * instance.
 *
 * Why two probes. With one probe (classic ketama: the owner is the member of the first point ≥
 * the key's hash) a member's share is the sum of the arcs before its points, which varies by
 * about 1/√vnodes: with 5 members and 160 vnodes the busiest member gets 1.09× the mean on
 * average and more than 1.10× for a third of member lists. Multi-probe consistent hashing
 * (Appleton & O'Reilly, 2015) looks the key up at `probes` positions (`hash`, then
 * `combine32(hash, k)`) and takes the point nearest clockwise to any of them: a point behind a
 * long arc is hit more often but wins less often, which evens the shares out (2 probes: 1.05×
 * on average, under 1.10× in every list we tried). It stays consistent: removing a member only
 * lengthens the distances that ended on its points, so only its keys move, and they move back
 * when it returns. `probes: 1` is classic ketama.
 *
 * Fallback attempt n is the n-th distinct member met walking clockwise from the chosen point
 * (the walk is capped at one lap).
 *
 * With `compat: 'nginx'` the ring is nginx's `hash … consistent` instead (nginx.ts): nginx's
 * points, equal points kept once, one probe, and keys hashed with CRC-32.
 */
import type { MemberSet } from '../../members/member.js';
import { combine32, hash32 } from './hash.js';
import { NGINX_POINTS_PER_WEIGHT, nginxPoints } from './nginx.js';
import { HashPicker, totalWeight, weightOf } from './picker.js';

/** Default points per unit of weight: ketama's 160 (40 MD5 digests × 4 points). */
export const DEFAULT_VNODES = 160;
/** Default look-up probes (1 = classic ketama). */
export const DEFAULT_RING_PROBES = 2;
/** Most probes accepted (each one is a ring search). */
export const MAX_RING_PROBES = 8;
/** Most points a ring may have (8 Mi: 64 MiB of points and owners). vnodes × total weight above this throws. */
export const MAX_RING_POINTS = 1 << 23;
/** Another ring's mapping to reproduce: `nginx` is nginx's `hash … consistent`. */
export type RingCompat = 'nginx';
/** Most members a ring may have (the build packs a member index into 21 bits). */
const MAX_RING_MEMBERS = 1 << 21;
const SIGN = 0x80000000;

export class RingPicker extends HashPicker {
  /** Sorted points, each `point ^ 0x80000000` as int32. */
  private readonly points: Int32Array;
  /** `owners[i]` is the member index of `points[i]`. */
  private readonly owners: Int32Array;
  /** `buckets[b]`: index of the first point whose top bits are ≥ b; one more entry at the end. */
  private readonly buckets: Int32Array;
  /** 32 − bucket bits: `h >>> shift` is h's bucket. */
  private readonly shift: number;
  /** Generation marks for the fallback walk (`seen[m] === gen` ⇒ already taken). */
  private readonly seen: Uint32Array;
  private gen = 0;

  /** Look-up positions per key (1 with `compat: 'nginx'`). */
  readonly probes: number;

  /**
   * `vnodes`: points per unit of weight (an integer ≥ 1; default 160). `probes`: look-up
   * positions per key (1..8, default 2; 1 is classic ketama). `compat: 'nginx'` builds nginx's
   * ring instead: vnodes must then be 160, and probes is ignored (nginx looks a key up once).
   */
  constructor(
    live: MemberSet,
    readonly vnodes = DEFAULT_VNODES,
    probes = DEFAULT_RING_PROBES,
    readonly compat?: RingCompat,
  ) {
    super(live, compat === 'nginx' ? 'crc32' : 'murmur3');
    if (!Number.isInteger(vnodes) || vnodes < 1) throw new RangeError(`hash.vnodes must be an integer ≥ 1 (got ${vnodes})`);
    if (!Number.isInteger(probes) || probes < 1 || probes > MAX_RING_PROBES) {
      throw new RangeError(`hash.probes must be an integer from 1 to ${MAX_RING_PROBES} (got ${probes})`);
    }
    const nginx = compat === 'nginx';
    if (compat !== undefined && !nginx) throw new RangeError(`hash.compat must be nginx (got ${String(compat)})`);
    if (nginx && vnodes !== NGINX_POINTS_PER_WEIGHT) {
      throw new RangeError(`hash.vnodes must be ${NGINX_POINTS_PER_WEIGHT} with hash.compat nginx, nginx's fixed points per unit of weight (got ${vnodes})`);
    }
    this.probes = nginx ? 1 : probes;
    const ms = this.members;
    if (ms.length > MAX_RING_MEMBERS) throw new RangeError(`a ring holds at most ${MAX_RING_MEMBERS} members (got ${ms.length})`);
    const all = vnodes * totalWeight(ms);
    if (all > MAX_RING_POINTS) {
      throw new RangeError(`hash.vnodes × total weight is ${all} ring points, above the limit of ${MAX_RING_POINTS}; lower hash.vnodes or the weights`);
    }
    // Pack (point, member index) into one exact double so a typed-array sort orders by point,
    // then by member index (= by id): (2^32 − 1) · 2^21 + (2^21 − 1) = 2^53 − 1, still exact.
    const packed = new Float64Array(all);
    let p = 0;
    for (let i = 0; i < ms.length; i++) {
      const m = ms[i]!;
      const count = vnodes * weightOf(m);
      if (nginx) {
        for (const point of nginxPoints(m.id, count)) packed[p++] = point * MAX_RING_MEMBERS + i;
        continue;
      }
      const prefix = `${m.id}-`;
      for (let j = 0; j < count; j++) packed[p++] = hash32(prefix + j) * MAX_RING_MEMBERS + i;
    }
    packed.sort();
    // nginx keeps one of equal points (the first); homing's own ring keeps them all.
    let points = new Int32Array(all);
    let owners = new Int32Array(all);
    let total = 0;
    for (let k = 0; k < all; k++) {
      const v = packed[k]!;
      const point = Math.floor(v / MAX_RING_MEMBERS);
      const x = (point ^ SIGN) | 0;
      if (nginx && total > 0 && points[total - 1] === x) continue;
      points[total] = x;
      owners[total++] = v - point * MAX_RING_MEMBERS;
    }
    if (total < all) {
      points = points.slice(0, total);
      owners = owners.slice(0, total);
    }
    this.points = points;
    this.owners = owners;
    // About one point per bucket, at most 2^16 buckets (256 KiB).
    const bits = Math.min(16, Math.max(1, Math.ceil(Math.log2(Math.max(2, total)))));
    this.shift = 32 - bits;
    const nb = 1 << bits;
    this.buckets = new Int32Array(nb + 1);
    let k = 0;
    for (let b = 0; b <= nb; b++) {
      while (k < total && ((this.points[k]! ^ SIGN) >>> this.shift) < b) k++;
      this.buckets[b] = k;
    }
    this.seen = new Uint32Array(Math.max(1, ms.length));
  }

  /** How many points the ring has. */
  get size(): number {
    return this.points.length;
  }

  /** The ring's points (unsigned, ascending) and their owners' ids; for the admin dashboard. */
  *entries(): IterableIterator<{ point: number; member: string }> {
    for (let k = 0; k < this.points.length; k++) {
      yield { point: (this.points[k]! ^ SIGN) >>> 0, member: this.members[this.owners[k]!]!.id };
    }
  }

  /**
   * Index of the point a key with hash h lands on: for each probe, the first point ≥ the probe
   * (wrapping past the top), and of those the nearest. One loop with the search written out, no
   * call: a 32-bit value passed to a call V8 does not inline is boxed into a heap number.
   */
  private position(h: number): number {
    const pts = this.points;
    const buckets = this.buckets;
    const len = pts.length;
    let best = 0;
    let bestDistance = 4294967296;
    for (let k = 0; k < this.probes; k++) {
      const p = k === 0 ? h >>> 0 : combine32(h, k);
      const x = (p ^ SIGN) | 0;
      const b = p >>> this.shift;
      let lo = buckets[b]!;
      let hi = buckets[b + 1]!;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (pts[mid]! < x) lo = mid + 1;
        else hi = mid;
      }
      if (lo === len) lo = 0;
      const d = ((pts[lo]! ^ SIGN) - p) >>> 0;
      if (d < bestDistance) {
        bestDistance = d;
        best = lo;
      }
    }
    return best;
  }

  override ownerIndex(h: number): number {
    return this.owners[this.position(h)]!;
  }

  override order(h: number, out: Int32Array, limit: number): number {
    const len = this.points.length;
    const want = Math.min(limit, this.members.length);
    let gen = (this.gen + 1) >>> 0;
    if (gen === 0) {
      this.seen.fill(0);
      gen = 1;
    }
    this.gen = gen;
    let pos = this.position(h);
    let got = 0;
    for (let step = 0; step < len && got < want; step++) {
      const m = this.owners[pos]!;
      if (this.seen[m] !== gen) {
        this.seen[m] = gen;
        out[got++] = m;
      }
      if (++pos === len) pos = 0;
    }
    return got;
  }
}
