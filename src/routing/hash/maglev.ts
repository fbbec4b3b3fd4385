/**
 * Maglev hashing (Eisenbud et al., NSDI 2016), weighted like Envoy's `MaglevTable`.
 *
 * Each member has a permutation of the table's slots given by `offset = hash32(id, 0) mod M` and
 * `skip = hash32(id, 1) mod (M − 1) + 1` (M prime, so every skip walks all slots). Members take
 * turns claiming their next free slot until the table is full; with weights, a member takes a turn
 * in iteration t only while `t × weight ≥ target` and then raises its target by the largest
 * weight (Envoy's weighted population, in integers here so every platform builds the same table).
 * A key's owner is `table[hash mod M]`: one array read.
 *
 * Maglev trades a little disruption for an even spread and O(1) look-ups: when a member leaves,
 * its slots move, and a small share of other slots move too (well under 1% of keys for a few
 * members and M = 65537), unlike the ring and rendezvous which move only the leaver's keys.
 *
 * Fallback attempt n: probe `table[combine32(hash, j) mod M]` for j = 1, 2, … and take the n-th
 * distinct member met; if the probes (capped) do not find enough, continue with the members in id
 * order after the owner. Deterministic, and distinct while there are members left.
 */
import type { MemberSet } from '../../members/member.js';
import { combine32, hash32 } from './hash.js';
import { HashPicker, weightOf } from './picker.js';

/** Default table size: the prime the Maglev paper and Envoy use. */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** Largest table accepted (4 bytes a slot: 64 MiB). */
export const MAX_MAGLEV_TABLE_SIZE = 1 << 24;

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** Throws naming `hash.tableSize` unless it is a prime in [7, 2^24]. */
export function validateTableSize(tableSize: number): void {
  if (!isPrime(tableSize) || tableSize < 7 || tableSize > MAX_MAGLEV_TABLE_SIZE) {
    throw new RangeError(`hash.tableSize must be a prime between 7 and ${MAX_MAGLEV_TABLE_SIZE} (got ${tableSize}); 65537 is the usual choice`);
  }
}

export class MaglevPicker extends HashPicker {
  private readonly table: Int32Array;
  private readonly seen: Uint32Array;
  private gen = 0;

  /**
   * `tableSize`: a prime larger than the member count (default 65537; keep it above 100 × members
   * for an even spread). Throws a RangeError naming `hash.tableSize` otherwise.
   */
  constructor(live: MemberSet, readonly tableSize = DEFAULT_MAGLEV_TABLE_SIZE) {
    super(live);
    validateTableSize(tableSize);
    const ms = this.members;
    const n = ms.length;
    if (n > 0 && tableSize <= n) {
      throw new RangeError(`hash.tableSize (${tableSize}) must be larger than the number of members (${n})`);
    }
    const M = tableSize;
    this.table = new Int32Array(n === 0 ? 0 : M);
    this.seen = new Uint32Array(Math.max(1, n));
    if (n === 0) return;

    const pos = new Float64Array(n); // next slot in each member's permutation
    const skip = new Float64Array(n);
    const weight = new Float64Array(n);
    const target = new Float64Array(n);
    let maxWeight = 0;
    for (let i = 0; i < n; i++) {
      const id = ms[i]!.id;
      pos[i] = hash32(id, 0) % M;
      skip[i] = (hash32(id, 1) % (M - 1)) + 1;
      weight[i] = weightOf(ms[i]!);
      if (weight[i]! > maxWeight) maxWeight = weight[i]!;
    }
    const table = this.table;
    table.fill(-1);
    let filled = 0;
    for (let iteration = 1; filled < M; iteration++) {
      for (let i = 0; i < n && filled < M; i++) {
        if (iteration * weight[i]! < target[i]!) continue;
        target[i] = target[i]! + maxWeight;
        const s = skip[i]!;
        let c = pos[i]!;
        // Each member's permutation visits every slot once, so this finds a free one within M steps.
        while (table[c] !== -1) {
          c += s;
          if (c >= M) c -= M;
        }
        table[c] = i;
        c += s;
        if (c >= M) c -= M;
        pos[i] = c;
        filled++;
      }
    }
  }

  /** How many table slots each member holds (index-aligned with `members`). */
  slotCounts(): number[] {
    const counts = new Array<number>(this.members.length).fill(0);
    for (let k = 0; k < this.table.length; k++) counts[this.table[k]!]!++;
    return counts;
  }

  override ownerIndex(h: number): number {
    return this.table[(h >>> 0) % this.tableSize]!;
  }

  override order(h: number, out: Int32Array, limit: number): number {
    const n = this.members.length;
    const want = Math.min(limit, n);
    let gen = (this.gen + 1) >>> 0;
    if (gen === 0) {
      this.seen.fill(0);
      gen = 1;
    }
    this.gen = gen;
    const M = this.tableSize;
    const owner = this.table[(h >>> 0) % M]!;
    this.seen[owner] = gen;
    out[0] = owner;
    let got = 1;
    // Re-hash the key with the probe number as salt; capped so a member holding most of the
    // table (heavy weights) cannot make this loop long. The cap depends on the member count only,
    // never on `limit`, so a shorter order is always a prefix of a longer one.
    const maxProbes = 32 + 2 * n;
    for (let j = 1; got < want && j <= maxProbes; j++) {
      const m = this.table[combine32(h, j) % M]!;
      if (this.seen[m] !== gen) {
        this.seen[m] = gen;
        out[got++] = m;
      }
    }
    for (let s = 1; got < want && s < n; s++) {
      const m = (owner + s) % n;
      if (this.seen[m] !== gen) {
        this.seen[m] = gen;
        out[got++] = m;
      }
    }
    return got;
  }
}
